#!/usr/bin/env bash
# The accelerator check (issue #11), offline, on a host with jax/flax/optax/orbax/numpy (and torch
# for the PyTorch column) plus wheels/ for what it lacks (tools/fetch_wheels.sh fills
# wheels/ on a machine with registry access; this installs from it only what is missing, into the
# environment of $PYTHON, default python3). Within --budget_s (default 480 s) on one GPU it
#   (a) prints the device and the versions;
#   (b) runs the tests' fast subset (FAST_TESTS below) on the device;
#   (c) times every method's train step, PreActResNet-18 on CIFAR-10-shaped synthetic data,
#       batch 512 (50 for AMP and DropAttack, as their recipes), bfloat16 (not AMP and
#       DropAttack, whose weight perturbations bfloat16 cannot hold) then float32, against
#       the hand-written JAX step, plus ERM and PGD-10 AT without augmentation;
#   (d) and the PyTorch twin where one exists (ERM, FGSM-AT, PGD-10 AT, AMP): channels_last,
#       autocast in bfloat16, torch.compile with --torch_compile;
#   (e) writes accelerator.json and accelerator.md (the table), environment.json, tests.log and
#       benchmark.log into OUT_DIR, default experiments/results/accelerator/<device name>/.
#
#     bash tools/fetch_wheels.sh 3.12          # where pip can reach a registry
#     bash tools/accelerator_check.sh [--tiny] [--budget_s=480] [--torch_compile] [OUT_DIR]
#
# A benchmark group that would start after the budget is spent is skipped, one still running then
# is stopped; the table lists what was not measured and why. --tiny (or ACCELERATOR_CHECK_TINY=1)
# runs the same path on the CPU in about a minute: one quick test, ERM (both dtypes) and AMP
# (float32) on a small CNN
# (PreActResNet-18 has no width setting), batch 8, 1 round of 1 step, OUT_DIR default a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
tiny=${ACCELERATOR_CHECK_TINY:-0}
budget_s=480
torch_compile=''
out=''
for arg in "$@"; do
  case $arg in
    --tiny) tiny=1 ;;
    --budget_s=*) budget_s=${arg#*=} ;;
    --torch_compile) torch_compile=--torch_compile ;;
    -*) echo "error: $arg: unknown option; usage: $0 [--tiny] [--budget_s=S] [--torch_compile]" \
             '[OUT_DIR]' >&2
        exit 2 ;;
    *) out=$arg ;;
  esac
done
if [[ ! $budget_s =~ ^[0-9]+$ ]]; then
  echo "error: --budget_s=$budget_s: must be a whole number of seconds" >&2
  exit 2
fi
deadline=$((SECONDS + budget_s))

FAST_TESTS=(tests/attacks/test_attacks.py tests/methods/test_methods.py tests/models/test_models.py
            tests/test_mixed_precision.py tests/test_core_install.py)
TESTS_TIMEOUT_S=150
# label|config|batch (the recipes' batch for AMP and DropAttack)
METHODS=('ERM|configs/erm.py:cifar10_preact_resnet18|512'
         'FGSM-AT|configs/cifar_adversarial.py:cifar10_fgsm|512'
         'PGD-10 AT|configs/cifar_adversarial.py:cifar10_pgd|512'
         'TRADES|configs/cifar_adversarial.py:cifar10_trades|512'
         'MDL|configs/mdl.py:cifar10|512'
         'LFM|configs/lfm.py:cifar10|512'
         'class similarity|configs/class_similarity.py:cifar10|512'
         'AMP|configs/amp.py:cifar10_preact_resnet18|50'
         'DropAttack|configs/dropattack.py:cifar10|50')
NO_AUGMENT_METHODS=('ERM' 'PGD-10 AT')
# Weight perturbations below bfloat16's resolution: robust_jax refuses them in bfloat16
# (objectives.require_float32_weights), so these are timed in float32 only.
FLOAT32_ONLY_METHODS=('AMP' 'DropAttack')
rounds=5 steps=10 extra_set=''
if ((tiny)); then
  FAST_TESTS=(tests/attacks/test_attacks.py -k closed_form)
  METHODS=('ERM|configs/erm.py:cifar10_preact_resnet18|8'
           'AMP|configs/amp.py:cifar10_preact_resnet18|8')
  NO_AUGMENT_METHODS=()
  rounds=1 steps=1 extra_set=',model.name=cnn,model.widths=(4, 8),model.hidden_size=16'
fi

# --- what the core path and the tests need, from wheels/ where missing ---
missing=$("$python" - <<'EOF'
import importlib.util
needed = {'ml_collections': 'ml-collections', 'tensorboardX': 'tensorboardX', 'tqdm': 'tqdm',
          'absl': 'absl-py', 'chex': 'chex', 'pytest': 'pytest', 'hypothesis': 'hypothesis'}
print(' '.join(dist for module, dist in needed.items() if importlib.util.find_spec(module) is None))
EOF
)
if [[ -n $missing ]]; then
  if ! compgen -G 'wheels/*.whl' >/dev/null; then
    echo "error: $python lacks $missing and there is no wheels/ folder; run" \
         "'bash tools/fetch_wheels.sh PYTHON_VERSION' where pip reaches a registry and" \
         'copy wheels/ here' >&2
    exit 1
  fi
  "$python" -m pip install -q --no-index --find-links wheels $missing
fi

# --- (a) the device and the versions ---
if ((tiny)); then
  export JAX_PLATFORMS=cpu
  platform=cpu
  out=${out:-$(mktemp -d)}
else
  read -r platform device < <(env -u JAX_PLATFORMS "$python" -c 'import jax, re
print(jax.default_backend(), re.sub("[^a-z0-9]+", "-", jax.devices()[0].device_kind.lower()))')
  if [[ $platform == cpu ]]; then
    echo "error: JAX finds no accelerator here (jax.default_backend() is 'cpu');" \
         '--tiny runs the check on the CPU' >&2
    exit 1
  fi
  export JAX_PLATFORMS=$platform  # tests/conftest.py defaults JAX_PLATFORMS to cpu, not over this
  out=${out:-experiments/results/accelerator/${device%-}}
fi
raw=$(mktemp -d)
mkdir -p "$out"
: > "$out/benchmark.log"
"$python" tools/accelerator_report.py --environment --out_dir="$out"

# --- (b) the fast subset of the tests, on the device (full float32 matmul precision, as on CPU) ---
export JAX_DEFAULT_MATMUL_PRECISION=highest
echo "JAX_PLATFORMS=$platform JAX_DEFAULT_MATMUL_PRECISION=highest $python -m pytest -q" \
     "${FAST_TESTS[*]}" > "$raw/tests.command"
set +e
timeout -k 10 "$TESTS_TIMEOUT_S" \
  "$python" -m pytest -q -p no:cacheprovider "${FAST_TESTS[@]}" 2>&1 | tee "$out/tests.log"
echo "${PIPESTATUS[0]}" > "$raw/tests.status"
set -e
unset JAX_DEFAULT_MATMUL_PRECISION

# --- (c, d) train-step throughput, one benchmark.py process per group ---
torch_flags=()
if "$python" -c 'import torch' 2>/dev/null; then
  torch_flags=(--torch --torch_channels_last $torch_compile)
  export XLA_PYTHON_CLIENT_MEM_FRACTION=0.5  # leave the PyTorch twin half of the GPU's memory
fi

run_group() {  # GROUP DTYPE BATCH AUGMENTATION LABEL...: the METHODS of those labels at BATCH
  local group=$1 dtype=$2 batch=$3 augmentation=$4 specs=() entry label method spec method_batch rc
  shift 4
  for label in "$@"; do
    for entry in "${METHODS[@]}"; do
      IFS='|' read -r method spec method_batch <<< "$entry"
      [[ $method == "$label" ]] || continue
      specs+=("$spec")
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$group" "$label" "$spec" "$dtype" "$batch" \
        "$augmentation" >> "$raw/plan.tsv"
    done
  done
  local remaining=$((deadline - SECONDS))
  if ((remaining < 20)); then
    echo "skipped, the time budget (--budget_s=$budget_s) was spent" > "$raw/$group.status"
    return
  fi
  local flags=()
  [[ $augmentation == none ]] && flags=(--no_augment)
  set +e
  timeout -k 10 "$remaining" "$python" experiments/benchmark.py \
    --configs="$(IFS=,; echo "${specs[*]}")" --rounds="$rounds" --steps="$steps" \
    --set="train.batch_size=$batch,train.compute_dtype=$dtype$extra_set" \
    "${torch_flags[@]}" "${flags[@]}" --json_out="$raw/$group.json" 2>&1 |
    tee "$raw/$group.log" | tee -a "$out/benchmark.log"
  rc=${PIPESTATUS[0]}
  set -e
  case $rc in
    0) ;;
    124|137) echo "stopped at the time budget (--budget_s=$budget_s)" > "$raw/$group.status" ;;
    *) echo "benchmark.py failed (exit $rc), see benchmark.log" > "$raw/$group.status" ;;
  esac
}

labels_at() {  # BATCH: the labels of METHODS at that batch
  local entry method spec batch
  for entry in "${METHODS[@]}"; do
    IFS='|' read -r method spec batch <<< "$entry"
    [[ $batch == "$1" ]] && echo "$method"
  done
  return 0
}

run_dtype() {  # DTYPE: every method, one group per batch size (bfloat16: not FLOAT32_ONLY_METHODS)
  local batch labels label kept
  for batch in $(printf '%s\n' "${METHODS[@]}" | cut -d'|' -f3 | sort -rnu); do
    mapfile -t labels < <(labels_at "$batch")
    kept=()
    for label in "${labels[@]}"; do
      [[ $1 == bfloat16 && " ${FLOAT32_ONLY_METHODS[*]} " == *" $label "* ]] || kept+=("$label")
    done
    ((${#kept[@]})) && run_group "${1}_batch${batch}" "$1" "$batch" default "${kept[@]}"
  done
  return 0
}

run_dtype bfloat16  # first: the issue's targets are bfloat16 figures
if ((${#NO_AUGMENT_METHODS[@]})); then
  run_group bfloat16_batch512_no_augment bfloat16 512 none "${NO_AUGMENT_METHODS[@]}"
fi
run_dtype float32

# --- (e) the report ---
"$python" tools/accelerator_report.py --raw_dir="$raw" --out_dir="$out" \
  --check_command="bash tools/accelerator_check.sh $*"
rm -rf "$raw"
echo "wrote $out/accelerator.md and accelerator.json (platform $platform)"
