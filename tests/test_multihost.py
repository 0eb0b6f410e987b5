"""Two `robust_jax.main` processes (`jax.distributed` on CPU, gloo collectives, one device each):
in a shared workdir they train like one process with two devices; with a workdir per process they
fail fast, together, with a one-line message instead of hanging at the first checkpoint."""
import json
import os
import socket
import subprocess

import jax
import numpy as np
import pytest

from robust_jax.training import loop as train
from tests import helpers
from tests.training.test_preemption import REPO, final_params, subprocess_env, train_command, \
    write_config_file

TRAIN = dict(num_steps=6, log_every_steps=2, checkpoint_every_minutes=0.0)


def _start_two_processes(config_file, workdirs):
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  env = subprocess_env(JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo', JAX_NUM_CPU_DEVICES='1')
  return [subprocess.Popen(
      train_command(config_file, workdir, '--config.distributed.initialize=True',
                    f'--config.distributed.coordinator_address=127.0.0.1:{port}',
                    '--config.distributed.num_processes=2',
                    f'--config.distributed.process_id={index}'),
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
          for index, workdir in enumerate(workdirs)]


def _finish(processes, timeout):
  """[(return code, output)] of each process; kills all if one has not ended after `timeout` s."""
  try:
    outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    return [(p.returncode, output) for p, output in zip(processes, outputs)]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()


@pytest.mark.long
def test_two_processes_in_a_shared_workdir_equal_one_process_with_two_devices(
    tiny_npz, tmp_path, eight_devices):
  config_file = write_config_file(tmp_path / 'config.py', tiny_npz, **TRAIN)
  shared = str(tmp_path / 'shared')
  processes = _start_two_processes(config_file, [shared, shared])
  single = str(tmp_path / 'single')
  train.train_and_evaluate(helpers.tiny_config(tiny_npz, **TRAIN), single,
                           devices=eight_devices[:2])
  for code, output in _finish(processes, timeout=120):
    assert code == 0, output
  # gloo's cross-process all-reduce may round differently from the in-process one (seen: 1 ulp).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               final_params(single), final_params(shared))
  with open(f'{single}/results.json') as f, open(f'{shared}/results.json') as g:
    shared_results, single_results = json.load(g), json.load(f)
  selected, single_selected = shared_results.pop('selected'), single_results.pop('selected')
  assert selected['step'] == single_selected['step']
  assert selected['value'] == pytest.approx(single_selected['value'], rel=1e-5)
  assert helpers.without_timings(shared_results) == pytest.approx(
      helpers.without_timings(single_results), rel=1e-5)
  assert not os.path.exists(f'{shared}/.shared_storage_check')


def test_a_workdir_per_process_fails_fast_on_every_process(tiny_npz, tmp_path):
  config_file = write_config_file(tmp_path / 'config.py', tiny_npz, **TRAIN)
  workdirs = [str(tmp_path / 'host0'), str(tmp_path / 'host1')]
  for index, (code, output) in enumerate(_finish(_start_two_processes(config_file, workdirs),
                                                 timeout=60)):
    assert code != 0, output
    assert (f'error: workdir {workdirs[index]}: process(es) 1 cannot see the files process 0 '
            'writes there; the workdir must be on storage all 2 processes share') in output
  assert os.listdir(workdirs[0]) == os.listdir(workdirs[1]) == []
