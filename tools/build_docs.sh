#!/usr/bin/env bash
# Builds the API reference (HTML) from the docstrings with pdoc, and fails on any pdoc warning
# (an annotation or `__all__` entry that does not resolve, a module that does not import):
#
#   python3 -m pip install pdoc==16.0.0
#   bash tools/build_docs.sh [OUTPUT_DIR]          # default docs/api; open OUTPUT_DIR/index.html
#
# `robust_jax` is the library its `__all__` lists (attacks, losses, the methods' pure functions,
# models, data, objectives); the trainer's modules and packages (config, training, evaluation,
# kernels) follow it. robust_jax.main and
# robust_jax.evaluate, the command lines, are left out: both define the absl flag --workdir, so one
# process cannot import both (their usage is in README.md and `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
output="${1:-docs/api}"
modules=$(python3 -c '
import glob, os, robust_jax
names = sorted(os.path.basename(f)[:-3] for f in glob.glob("robust_jax/*.py"))
names += sorted(os.path.basename(os.path.dirname(f)) for f in glob.glob("robust_jax/*/__init__.py"))
skip = {"__init__", "main", "evaluate", *robust_jax.__all__}
print(" ".join("robust_jax." + n for n in names if n not in skip))')
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! python3 -m pdoc -o "$output" robust_jax $modules 2> "$log"; then
  cat "$log" >&2
  echo "build_docs.sh: pdoc failed" >&2
  exit 1
fi
if grep -q 'Warn' "$log"; then
  cat "$log" >&2
  echo "build_docs.sh: pdoc warnings above; fix the reference they name" >&2
  exit 1
fi
echo "API reference in $output/index.html ($(find "$output" -name '*.html' | wc -l) pages)"
