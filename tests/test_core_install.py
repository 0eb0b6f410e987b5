"""A core-only install (an accelerator host with jax/flax/optax/orbax/numpy and ml-collections, no
TensorFlow, TensorFlow Datasets or PyTorch) imports robust_jax and trains on npz data.

The run happens in a fresh process whose path finder finds no `tensorflow*` or `torch*` module
(tensorflow, tensorflow_datasets, tensorflow_metadata, torch, torchvision, ...), exactly as if they
were not installed: imports raise ModuleNotFoundError and `importlib.util.find_spec` (orbax probes
for TensorFlow that way) returns None."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.training.test_preemption import REPO, subprocess_env, write_config_file

BLOCKED_PREFIXES = ('tensorflow', 'torch')

# Runs in the child: hide the modules, import robust_jax, then `python -m robust_jax.main ARGS...`.
CHILD = f'''
import atexit, importlib.machinery, json, runpy, sys

asked_for = []


class PathFinderWithoutOptionalFrameworks(importlib.machinery.PathFinder):
  @classmethod
  def find_spec(cls, name, path=None, target=None):
    if name.startswith({BLOCKED_PREFIXES!r}):
      asked_for.append(name)
      return None
    return super().find_spec(name, path, target)


def check_none_loaded():
  loaded = [m for m in sys.modules if m.startswith({BLOCKED_PREFIXES!r})]
  print('LOADED ' + json.dumps(loaded), flush=True)


sys.meta_path = [PathFinderWithoutOptionalFrameworks if f is importlib.machinery.PathFinder else f
                 for f in sys.meta_path]
atexit.register(check_none_loaded)
import robust_jax
print('ASKED_FOR_ON_IMPORT ' + json.dumps(asked_for), flush=True)
runpy.run_module('robust_jax.main', run_name='__main__', alter_sys=True)
'''


def _printed(stdout: str, marker: str):
  return json.loads(next(line for line in stdout.splitlines()
                         if line.startswith(marker + ' ')).split(' ', 1)[1])


def test_import_and_training_need_no_tensorflow_tfds_or_torch(tiny_npz, tmp_path):
  config_file = write_config_file(tmp_path / 'config.py', tiny_npz, num_steps=3)
  completed = subprocess.run(
      [sys.executable, '-c', CHILD, f'--config={config_file}', f'--workdir={tmp_path / "w"}'],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert _printed(completed.stdout, 'ASKED_FOR_ON_IMPORT') == []  # not even probed
  assert _printed(completed.stdout, 'LOADED') == []  # the finder hid them all
  assert 'test accuracy:' in completed.stdout and '(3 steps)' in completed.stdout
  with open(tmp_path / 'w' / 'metrics.jsonl') as f:
    assert any('train/loss' in json.loads(line) for line in f)
