r"""The accelerator check: what a user runs, on the device, within one time budget.

    python3 tools/fetch_wheels.sh 3.12                 # where pip reaches a registry (wheels/)
    python3 tools/accelerator_check.py [--budget_s=480] [--torch_compile] \
        [--fashion_mnist_dir=DIR] [--out_dir=DIR]      # on the GPU/TPU host, offline
    python3 tools/accelerator_check.py --tiny          # the same path on a CPU in ~2 minutes (CI)

In order, each part skipped (and listed as such) once `--budget_s` is spent:
  1. the device and the versions (environment.json);
  2. the tests that meet the device: FAST_TESTS plus `tests/test_platform_lowering.py` (the GPU
     programs' conditionals), with float32 matmuls at full precision, as on the CPU (tests.log);
  3. end to end on the device: Fashion-MNIST (the real IDX files, which travel with the check:
     `--fashion_mnist_dir`) trained with checkpoints, killed with SIGTERM after its first checkpoint,
     resumed to the end of the `:quick` epoch, held to the quickstart's accuracy and evaluated under
     FGSM and PGD (`robust_jax.evaluate`); then a CIFAR-shaped run on mock data (an npz the check
     writes) through AutoAugment and Cutout, the AMP table's heaviest augmentation;
  4. the per-step host overhead of the training loop: its time per step (the difference of two runs
     of N and N' steps, so compilation, data loading and the final evaluation cancel) minus the
     compiled step's time (`experiments/benchmark.py`'s `benchmark`);
  5. step time and examples/s of every model (CNN, PreActResNet-18, VGG-16, WRN-28-10, BiGRU,
     TextCNN) × ERM / AMP / DropAttack / adversarial training (PGD-10; FGM for the text models, as
     their papers), float32 and bfloat16 (AMP and DropAttack in float32 only: bfloat16 cannot hold
     their weight perturbations, `objectives.require_float32_weights`), each at its config's batch,
     against the hand-written JAX step and, where one exists, the PyTorch twin; PreActResNet-18 ERM
     and PGD-10 AT also at batch 512 in bfloat16, issue #24's targets;
  6. GPU-hours per row of the AMP table (ERM and AMP, 3 seeds), from the measured steps;
  7. (before 5, at most 150 s, not with --tiny) the step time of 1 and 8 replicas
     (`robust_jax.training.replicas`) of the CNN (ERM, PGD-10 AT) and PreActResNet-18 (ERM) in
     each batching, `experiments/benchmark.py --replicas`.
It writes accelerator.json and accelerator.md (`tools/accelerator_report.py`) into `--out_dir`
(default experiments/results/accelerator/<device>/; --tiny: a temporary folder).
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tools import accelerator_report  # noqa: E402

FAST_TESTS = ('tests/attacks/test_attacks.py', 'tests/methods', 'tests/models/test_models.py',
              'tests/test_mixed_precision.py', 'tests/test_platform_lowering.py')
TINY_TESTS = ('tests/attacks/test_attacks.py', '-k', 'closed_form')
# model label -> (its ERM config, and the configs whose method sections the other cells use)
MODELS = {
    'CNN': ('configs/erm.py:fashion_mnist', {
        'AMP': 'configs/amp.py:fashion_mnist', 'DropAttack': 'configs/dropattack.py:fashion_mnist',
        'PGD-10 AT': 'configs/fashion_mnist_adversarial.py:pgd'}),
    'PreActResNet-18': ('configs/erm.py:cifar10_preact_resnet18', {
        'AMP': 'configs/amp.py:cifar10_preact_resnet18', 'DropAttack': 'configs/dropattack.py:cifar10',
        'PGD-10 AT': 'configs/cifar_adversarial.py:cifar10_pgd'}),
    'VGG-16': ('configs/erm.py:cifar10_vgg16', {
        'AMP': 'configs/amp.py:cifar10_vgg16', 'DropAttack': 'configs/dropattack.py:cifar10',
        'PGD-10 AT': 'configs/cifar_adversarial.py:cifar10_pgd'}),
    'WRN-28-10': ('configs/erm.py:cifar10_wrn28_10_vanilla', {
        'AMP': 'configs/amp.py:cifar10_wrn28_10_vanilla', 'DropAttack': 'configs/dropattack.py:cifar10',
        'PGD-10 AT': 'configs/cifar_adversarial.py:cifar10_pgd'}),
    'BiGRU': ('configs/text.py:offline_ag_news_gru_erm', {
        'AMP': 'configs/text.py:offline_ag_news_gru_amp',
        'DropAttack': 'configs/text.py:offline_ag_news_gru_dropattack',
        'FGM AT': 'configs/text.py:offline_ag_news_gru_fgm'}),
    'TextCNN': ('configs/text.py:imdb_textcnn_erm', {
        'AMP': 'configs/text.py:imdb_textcnn_amp',
        'DropAttack': 'configs/text.py:offline_ag_news_gru_dropattack',
        'FGM AT': 'configs/text.py:offline_ag_news_gru_fgm'}),
}
FLOAT32_ONLY = ('AMP', 'DropAttack')
TARGET_BATCH = 512  # issue #24's PreActResNet-18 targets
# issue #26: R = 1 and 8 replicas, each batching; its target: 8 CNN replicas in at most 2× one's time
REPLICA_CELLS = (('CNN', 'ERM'), ('CNN', 'PGD-10 AT'), ('PreActResNet-18', 'ERM'))
# The check's own settings per mode: timed rounds × steps; host-overhead runs of N and N' steps;
# the Fashion-MNIST run's steps (0: the `:quick` epoch), checkpoint cadence, accuracy floor and
# test examples (0: all).  The budget is --budget_s's default.
SETTINGS = {
    'full': dict(budget_s=480, rounds=3, steps=5, overhead_steps=(200, 2200), overhead_rounds=5,
                 e2e_steps=0, e2e_checkpoint=100, e2e_accuracy=0.87, e2e_test_examples=0,
                 e2e_eval_examples=1000, cifar_steps=20),
    'tiny': dict(budget_s=900, rounds=1, steps=1, overhead_steps=(10, 60), overhead_rounds=1,
                 e2e_steps=120, e2e_checkpoint=20, e2e_accuracy=0.6, e2e_test_examples=1000,
                 e2e_eval_examples=100, cifar_steps=2),
}
TINY_MODELS = ('CNN',)
TINY_METHODS = ('ERM', 'AMP')  # --tiny times these only: the path, not the table
TINY_SET = 'model.widths=(4, 8),model.hidden_size=16'
NEEDED = {'ml_collections': 'ml-collections', 'tensorboardX': 'tensorboardX', 'tqdm': 'tqdm',
          'absl': 'absl-py', 'chex': 'chex', 'pytest': 'pytest', 'hypothesis': 'hypothesis'}


class Budget:
  """Seconds left of --budget_s; parts that would start with less than `minimum` are skipped."""

  def __init__(self, seconds: float):
    self.deadline = time.monotonic() + seconds
    self.seconds = seconds

  def left(self) -> float:
    return self.deadline - time.monotonic()

  def skip_reason(self, minimum: float = 20) -> str | None:
    return (f'skipped, the time budget (--budget_s={self.seconds:g}) was spent'
            if self.left() < minimum else None)


def install_missing(python: str) -> None:
  """Installs from wheels/ what the check needs and the host lacks (offline hosts)."""
  missing = [dist for module, dist in NEEDED.items() if importlib.util.find_spec(module) is None]
  if not missing:
    return
  wheels = os.path.join(REPO, 'wheels')
  if not glob.glob(os.path.join(wheels, '*.whl')):
    sys.exit(f'error: {python} lacks {" ".join(missing)} and there is no wheels/ folder; run '
             "'bash tools/fetch_wheels.sh PYTHON_VERSION' where pip reaches a registry and copy "
             'wheels/ here')
  subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-index', '--find-links', wheels,
                  *missing], check=True)


def _run(argv, budget: Budget, log_path: str, env=None, cwd=REPO) -> tuple[int, str]:
  """Runs `argv` within the budget; returns (exit status, its output), also written to log_path.
  Status 124: stopped at the budget."""
  try:
    completed = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=max(budget.left(), 1))
    status, output = completed.returncode, completed.stdout + completed.stderr
  except subprocess.TimeoutExpired as e:
    status = 124
    output = ((e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes)
              else e.stdout or '') + '\n[stopped at the time budget]'
  with open(log_path, 'a') as f:
    f.write(f'$ {" ".join(argv)}\n{output}\n')
  return status, output


def cell_config(path: str, model: str, method: str, batch: int | None) -> str:
  """Writes the config of one cell: the model's ERM config with the method's sections and batch.
  Returns its spec; `config_name` of it is the cell's result name."""
  erm, methods = MODELS[model]
  name = f'{model}_{method}'.lower().replace('-', '').replace(' ', '_').replace('.', '')
  source = methods.get(method)
  lines = ['from robust_jax import objectives',
           'from robust_jax.config.files import load_config_file', '',
           '', 'def get_config(arg=None):',
           f'  config = load_config_file({os.path.join(REPO, erm)!r})']
  if source:
    lines += [f'  method = load_config_file({os.path.join(REPO, source)!r})',
              '  for section in objectives.SECTIONS:',
              '    config[section] = method[section]',
              '  config.train.batch_size = method.train.batch_size']
  if batch:
    lines.append(f'  config.train.batch_size = {batch}')
  lines.append('  config.train.require_accelerator = False\n  return config\n')
  file = os.path.join(path, f'{name}{"_batch" + str(batch) if batch else ""}.py')
  with open(file, 'w') as f:
    f.write('\n'.join(lines))
  return file


def plan_step_groups(config_dir: str, tiny: bool) -> list[dict]:
  """Benchmark groups, most wanted first: the targets, then float32 (every method, the paper
  rows' dtype), then bfloat16. One benchmark.py process per group (model × dtype)."""
  groups = []
  if not tiny:
    groups.append(dict(name='targets_bfloat16', dtype='bfloat16', model='PreActResNet-18', cells=[
        ('ERM', cell_config(config_dir, 'PreActResNet-18', 'ERM', TARGET_BATCH)),
        ('PGD-10 AT', cell_config(config_dir, 'PreActResNet-18', 'PGD-10 AT', TARGET_BATCH))]))
  models = TINY_MODELS if tiny else tuple(MODELS)
  for dtype in ('float32', 'bfloat16'):
    for model in models:
      methods = TINY_METHODS if tiny else ('ERM', *MODELS[model][1])
      cells = [(method, cell_config(config_dir, model, method, None)) for method in methods
               if dtype == 'float32' or method not in FLOAT32_ONLY]
      groups.append(dict(name=f'{model}_{dtype}'.lower().replace('-', ''), dtype=dtype,
                         model=model, cells=cells))
  return groups


def run_step_groups(groups, settings, tiny: bool, torch_flags, budget, raw: str, out: str):
  """Times every group with experiments/benchmark.py; writes raw/plan.tsv and raw/GROUP.*"""
  with open(os.path.join(raw, 'plan.tsv'), 'w') as plan:
    for group in groups:
      for method, spec in group['cells']:
        plan.write(f'{group["name"]}\t{group["model"]}\t{method}\t{spec}\t{group["dtype"]}\n')
  for group in groups:
    reason = budget.skip_reason()
    if reason:
      _write(os.path.join(raw, f'{group["name"]}.status'), reason)
      continue
    overrides = f'train.compute_dtype={group["dtype"]}' + (f',{TINY_SET},train.batch_size=8'
                                                           if tiny else '')
    status, _ = _run([sys.executable, 'experiments/benchmark.py',
                      f'--configs={",".join(spec for _, spec in group["cells"])}',
                      f'--rounds={settings["rounds"]}', f'--steps={settings["steps"]}',
                      f'--set={overrides}', *torch_flags,
                      f'--json_out={os.path.join(raw, group["name"] + ".json")}'],
                     budget, os.path.join(out, 'benchmark.log'))
    if status:
      _write(os.path.join(raw, f'{group["name"]}.status'),
             'stopped at the time budget' if status == 124
             else f'benchmark.py failed (exit {status}), see benchmark.log')


def replica_steps(settings, budget, raw: str, out: str) -> dict:
  """Step time of R = 1 and 8 replicas of `REPLICA_CELLS` in each batching
  (`experiments/benchmark.py --replicas`), within at most 150 s of the budget."""
  reason = budget.skip_reason(60)
  if reason:
    return {'status': reason}
  specs = [cell_config(raw, model, method, None) for model, method in REPLICA_CELLS]
  path = os.path.join(raw, 'replicas.json')
  status, _ = _run([sys.executable, 'experiments/benchmark.py', '--replicas=1,8',
                    f'--configs={",".join(specs)}', f'--rounds={settings["rounds"]}',
                    f'--steps={settings["steps"]}', f'--json_out={path}'],
                   Budget(min(budget.left(), 150)), os.path.join(out, 'benchmark.log'))
  if status:
    return {'status': 'stopped at the time budget' if status == 124
            else f'failed (exit {status}), see benchmark.log'}
  with open(path) as f:
    return {'status': 'ok', 'results': json.load(f)}


def _write(path: str, text: str) -> None:
  with open(path, 'w') as f:
    f.write(text + '\n')


def fashion_mnist_end_to_end(settings, fashion_mnist_dir: str, budget, out: str) -> dict:
  """Trains, kills after the first checkpoint, resumes, checks the accuracy, evaluates."""
  reason = budget.skip_reason(60)
  if reason:
    return {'status': reason}
  workdir = tempfile.mkdtemp(prefix='fashion_mnist_')
  steps = settings['e2e_steps']
  argv = [sys.executable, '-m', 'robust_jax.main', '--config=configs/fashion_mnist_cnn.py:quick',
          f'--workdir={workdir}', f'--config.dataset.path={fashion_mnist_dir}',
          f'--config.train.checkpoint_every_steps={settings["e2e_checkpoint"]}',
          f'--config.eval.num_examples={settings["e2e_test_examples"]}']
  if steps:
    argv.append(f'--config.train.num_steps={steps}')
  log = os.path.join(out, 'end_to_end.log')
  start = time.monotonic()
  with open(log, 'a') as f:
    f.write(f'$ {" ".join(argv)}  (SIGTERM after the first checkpoint)\n')
    f.flush()
    first = subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    killed_at = None
    while first.poll() is None and budget.left() > 0:
      saved = [int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints'))
               if s.isdecimal()] if os.path.isdir(os.path.join(workdir, 'checkpoints')) else []
      if saved:
        killed_at = min(saved)
        first.send_signal(signal.SIGTERM)
        break
      time.sleep(0.05)
    first_status = first.wait(timeout=max(budget.left(), 1))
  status, output = _run(argv, budget, log)
  resumed = [line for line in output.splitlines() if 'resuming from the checkpoint at step' in line]
  result = {'killed_after_checkpoint': killed_at, 'first_run_exit_status': first_status,
            'resumed': resumed[0].strip() if resumed else None, 'exit_status': status}
  results_path = os.path.join(workdir, 'results.json')
  if status == 0 and os.path.exists(results_path):
    with open(results_path) as f:
      results = json.load(f)
    result.update(test_accuracy=results.get('test_accuracy'), steps=results.get('steps'),
                  train_seconds=time.monotonic() - start)
  ok = (status == 0 and resumed and result.get('test_accuracy') is not None
        and result['test_accuracy'] >= settings['e2e_accuracy'])
  result['accuracy_floor'] = settings['e2e_accuracy']
  eval_dir = os.path.join(workdir, 'robustness')
  eval_status, _ = _run([sys.executable, '-m', 'robust_jax.evaluate', f'--workdir={workdir}',
                         f'--num_examples={settings["e2e_eval_examples"]}', '--attacks=fgsm,pgd',
                         f'--output_dir={eval_dir}'], budget, log)
  if eval_status == 0:
    with open(os.path.join(eval_dir, 'robustness.md')) as f:
      result['robustness_table'] = f.read().split('\n\n')[0]
  result['evaluate_exit_status'] = eval_status
  result['status'] = 'ok' if ok and eval_status == 0 else 'failed, see end_to_end.log'
  return result


def cifar_mock_run(settings, tiny: bool, budget, out: str) -> dict:
  """A CIFAR-shaped run (the ERM row of the AMP table's WRN-28-10 AutoAugment + Cutout config) on
  an npz of random images: the on-device augmentation path, end to end."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  reason = budget.skip_reason(30)
  if reason:
    return {'status': reason}
  folder = tempfile.mkdtemp(prefix='cifar_mock_')
  rng = np.random.default_rng(0)
  np.savez(os.path.join(folder, 'cifar10_mock.npz'),
           x_train=rng.integers(0, 256, (256, 32, 32, 3), np.uint8),
           y_train=np.arange(256, dtype=np.int64) % 10,
           x_test=rng.integers(0, 256, (64, 32, 32, 3), np.uint8),
           y_test=np.arange(64, dtype=np.int64) % 10)
  spec = 'configs/erm.py:cifar10_wrn28_10_autoaugment'
  argv = [sys.executable, '-m', 'robust_jax.main', f'--config={spec}',
          f'--workdir={os.path.join(folder, "workdir")}', '--config.dataset.source=npz',
          f'--config.dataset.path={os.path.join(folder, "cifar10_mock.npz")}',
          f'--config.train.num_steps={settings["cifar_steps"]}', '--config.train.batch_size=32']
  if tiny:
    argv += ['--config.train.require_accelerator=False', '--config.model.name=cnn',
             '--config.model.widths=(4, 8)', '--config.model.hidden_size=16']
  start = time.monotonic()
  status, _ = _run(argv, budget, os.path.join(out, 'end_to_end.log'))
  return {'config': spec, 'steps': settings['cifar_steps'], 'exit_status': status,
          'seconds': time.monotonic() - start,
          'status': 'ok' if status == 0 else 'failed, see end_to_end.log'}


def host_overhead(settings, fashion_mnist_dir: str, budget, out: str) -> dict:
  """The training loop's time per step minus the compiled step's, on the default CNN."""
  reason = budget.skip_reason(60)
  if reason:
    return {'status': reason}
  short, long = settings['overhead_steps']
  code = f'''
import json, tempfile, time
from experiments.benchmark import benchmark
from robust_jax.config.files import load_config_file
from robust_jax.training import loop
config = load_config_file('configs/fashion_mnist_cnn.py')
config.dataset.path = {fashion_mnist_dir!r}
config.train.eval_every_epochs, config.eval.num_examples = 1000, 1000
config.train.checkpoint_every_steps, config.train.checkpoint_every_minutes = 10**9, 10.0**6
seconds = {{}}
for steps in ({short}, {long}):
  config.train.num_steps = steps
  start = time.perf_counter()
  loop.train_and_evaluate(config, tempfile.mkdtemp())
  seconds[steps] = time.perf_counter() - start
loop_step_s = (seconds[{long}] - seconds[{short}]) / ({long} - {short})
step_s = benchmark(config, rounds={settings['overhead_rounds']}, steps=20)['robust_jax_step_s']
print('HOST_OVERHEAD ' + json.dumps(dict(
    runs_s=seconds, loop_step_s=loop_step_s, compiled_step_s=step_s,
    overhead_s=loop_step_s - step_s, overhead_fraction=(loop_step_s - step_s) / step_s,
    batch=config.train.batch_size)))
'''
  status, output = _run([sys.executable, '-c', code], budget, os.path.join(out, 'host_overhead.log'))
  lines = [line for line in output.splitlines() if line.startswith('HOST_OVERHEAD ')]
  if status or not lines:
    return {'status': f'failed (exit {status}), see host_overhead.log'}
  return {'status': 'ok', 'steps': [short, long], **json.loads(lines[-1].split(' ', 1)[1])}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--tiny', action='store_true',
                      help='the same path on the CPU in about two minutes (small CNN, 1 step)')
  parser.add_argument('--budget_s', type=float, default=None,
                      help='time budget in seconds (default 480; --tiny: 900)')
  parser.add_argument('--torch_compile', action='store_true', help='torch.compile the twins')
  parser.add_argument('--fashion_mnist_dir', default='',
                      help='folder of the four Fashion-MNIST IDX files (default: data/fashion-mnist '
                           'in the repository if present, else /usr/share/datasets/fashion-mnist)')
  parser.add_argument('--out_dir', default='', help='where the report goes')
  args = parser.parse_args(argv)
  tiny = args.tiny or os.environ.get('ACCELERATOR_CHECK_TINY') == '1'
  settings = SETTINGS['tiny' if tiny else 'full']
  args.budget_s = settings['budget_s'] if args.budget_s is None else args.budget_s
  if args.budget_s <= 0:
    parser.error(f'--budget_s={args.budget_s:g}: must be positive')
  fashion_mnist_dir = args.fashion_mnist_dir or next(
      (d for d in (os.path.join(REPO, 'data', 'fashion-mnist'), '/usr/share/datasets/fashion-mnist')
       if os.path.isdir(d)), '')
  if not fashion_mnist_dir:
    parser.error('no Fashion-MNIST IDX folder: copy the four files into data/fashion-mnist/ (from '
                 '`apt-get install dataset-fashion-mnist`) or name one with --fashion_mnist_dir')
  budget = Budget(args.budget_s)
  install_missing(sys.executable)
  env = dict(os.environ)
  if tiny:
    env['JAX_PLATFORMS'] = 'cpu'
  os.environ.update(env)
  environment = accelerator_report.environment()
  if not tiny and environment['backend'] == 'cpu':
    sys.exit("error: JAX finds no accelerator here (jax.default_backend() is 'cpu'); --tiny runs "
             'the check on the CPU')
  env.setdefault('JAX_PLATFORMS', environment['backend'])  # tests/conftest.py defaults to cpu
  os.environ.update(env)
  out = args.out_dir or (tempfile.mkdtemp(prefix='accelerator_check_') if tiny else os.path.join(
      REPO, 'experiments', 'results', 'accelerator', accelerator_report.device_folder(environment)))
  os.makedirs(out, exist_ok=True)
  for name in ('benchmark.log', 'tests.log', 'end_to_end.log', 'host_overhead.log'):
    _write(os.path.join(out, name), '')
  with open(os.path.join(out, 'environment.json'), 'w') as f:
    json.dump(environment, f, indent=2)
  print(json.dumps(environment, indent=2), flush=True)
  raw = tempfile.mkdtemp(prefix='accelerator_raw_')

  tests = list(TINY_TESTS if tiny else FAST_TESTS)
  test_env = dict(env, JAX_DEFAULT_MATMUL_PRECISION='highest')
  status, output = _run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *tests],
                        Budget(min(budget.left(), 150)), os.path.join(out, 'tests.log'),
                        env=test_env)
  test_report = accelerator_report.tests_summary(
      output, status, 'JAX_DEFAULT_MATMUL_PRECISION=highest pytest -q ' + ' '.join(tests))
  print(test_report, flush=True)

  end_to_end = {'fashion_mnist': fashion_mnist_end_to_end(settings, fashion_mnist_dir, budget, out),
                'cifar_mock': cifar_mock_run(settings, tiny, budget, out)}
  print(json.dumps(end_to_end, indent=2), flush=True)
  overhead = host_overhead(settings, fashion_mnist_dir, budget, out)
  print(json.dumps(overhead), flush=True)

  torch_flags = []
  if importlib.util.find_spec('torch') is not None:
    torch_flags = ['--torch', '--torch_channels_last'] + (['--torch_compile']
                                                          if args.torch_compile else [])
    os.environ['XLA_PYTHON_CLIENT_MEM_FRACTION'] = '0.5'  # leave the twin half of the memory
  replica = ({'status': 'not run with --tiny'} if tiny
             else replica_steps(settings, budget, raw, out))
  groups = plan_step_groups(raw, tiny)
  run_step_groups(groups, settings, tiny, torch_flags, budget, raw, out)
  table = accelerator_report.rows(raw)
  report = {'environment': environment, 'tests': test_report, 'end_to_end': end_to_end,
            'host_overhead': overhead, 'rows': table, 'replicas': replica,
            'gpu_hours': accelerator_report.gpu_hours(table),
            'check_command': 'python3 tools/accelerator_check.py ' + ' '.join(argv or sys.argv[1:]),
            'budget_s': args.budget_s, 'seconds': args.budget_s - budget.left()}
  with open(os.path.join(out, 'accelerator.json'), 'w') as f:
    json.dump(report, f, indent=2)
  markdown = accelerator_report.markdown(report)
  if replica['status'] == 'ok':
    from experiments import replica_benchmark  # pylint: disable=g-import-not-at-top
    markdown += ('\n\n## Replicas (issue #26: 8 CNN replicas in at most 2× the time of one)\n\n'
                 + replica_benchmark.table(replica['results']))
  _write(os.path.join(out, 'accelerator.md'), markdown)
  print(markdown)
  print(f'wrote {out}/accelerator.md and accelerator.json ({environment["backend"]})')
  failed = [part for part, result in (('tests', test_report), *end_to_end.items(),
                                      ('host overhead', overhead))
            if str(result.get('status', 'ok')).startswith('failed')]
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
