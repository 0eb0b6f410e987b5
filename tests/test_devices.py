"""Which devices a run uses and says it uses (issue #24): `train.require_accelerator` refuses the
paper-scale recipes on CPUs before anything is written, `train.num_devices` picks the first N
devices of each process, a batch the devices do not divide names the counts that would, and every
run prints its backend and devices and writes them to results.json."""
import json
import os
import types

import jax
import pytest

from robust_jax import sharding
from robust_jax.config import defaults as config_defaults, files as config_files
from robust_jax.config import overrides as config_overrides
from robust_jax.config.schema import ConfigError
from robust_jax.training import loop as train, workdir
from tests import helpers
from tests.config import test_configs
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
REFUSED = (
    'config.train.require_accelerator=True: this cifar10 preact_resnet18 config is paper-scale, '
    'but JAX sees only CPU devices; install the CUDA build with \'python3 -m pip install -c '
    'constraints.txt -c constraints-cuda.txt -e ".[cuda12]"\' (README.md: GPU and TPU hosts), or '
    'set --config.train.require_accelerator=False to train on the CPU anyway')


def _all_variants():
  """(spec, config) of every variant of every config file."""
  for path in test_configs.CONFIG_FILES:
    for variant in test_configs._variants(path)[1]:  # pylint: disable=protected-access
      spec = os.path.relpath(f'{path}:{variant}' if variant else path, ROOT)
      yield spec, config_files.load_config_file(os.path.join(ROOT, spec))


def test_the_tfds_recipes_but_mnist_require_an_accelerator_and_the_offline_ones_do_not():
  configs = dict(_all_variants())
  flags = {spec: config.train.require_accelerator for spec, config in configs.items()}
  assert {spec for spec, required in flags.items() if required} == {
      spec for spec, config in configs.items()  # MNIST's small CNN trains on a CPU
      if config.dataset.source == 'tfds' and config.dataset.name != 'mnist'}
  assert flags['configs/amp.py:cifar10_preact_resnet18'] and flags['configs/text.py:imdb_lstm_erm']
  assert not flags['configs/text.py:offline_ag_news_gru_amp']
  assert not flags['configs/fashion_mnist_cnn.py:full']
  assert not config_defaults.default_config().train.require_accelerator


def test_a_recipe_on_cpus_is_refused_in_one_line_before_anything_is_written(tmp_path):
  config = config_files.load_config_file(os.path.join(ROOT, 'configs/amp.py:cifar10_preact_resnet18'))
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert str(error.value) == REFUSED
  assert not os.path.exists(tmp_path / 'run')


def test_the_override_the_message_names_trains_the_recipe_on_the_cpu(tmp_path, capsys):
  """The flag quoted in the refusal, given on the command line, lets the AMP recipe (model made
  tiny) train on TFDS mock data on the CPU; the run states its devices first."""
  override = REFUSED.split('set ')[-1].split(' ')[0]
  assert override == '--config.train.require_accelerator=False'
  _, overrides = config_overrides.split_argv(
      ['main.py', '--config=configs/amp.py:cifar10_preact_resnet18', override,
       '--config.train.num_steps=1', '--config.train.batch_size=8', '--config.eval.batch_size=8'])
  config = config_overrides.apply_overrides(
      config_files.load_config_file(os.path.join(ROOT, 'configs/amp.py:cifar10_preact_resnet18')),
      overrides)
  config.model = helpers.tiny_config('').model
  with helpers.mock_tfds(16):
    results = train.train_and_evaluate(config, str(tmp_path / 'run'), devices=jax.devices()[:1])
  assert results['steps'] == 1 and results['backend'] == 'cpu'
  first_line = capsys.readouterr().out.splitlines()[0]
  assert first_line == f'training on 1 of 8 devices: cpu ({jax.devices()[0]}); jax {jax.__version__}'


def test_num_devices_takes_the_first_devices_and_results_name_them(tiny_npz, tmp_path, capsys,
                                                                   eight_devices):
  config = helpers.tiny_config(tiny_npz, num_steps=2, num_devices=2)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert capsys.readouterr().out.splitlines()[0] == (
      f'training on 2 of 8 devices: cpu ({eight_devices[0]} … {eight_devices[1]}); '
      f'jax {jax.__version__}')
  with open(tmp_path / 'run' / 'results.json') as f:
    written = json.load(f)
  facts = {'devices': 2, 'backend': 'cpu', 'device_kind': 'cpu', 'jax_version': jax.__version__}
  assert facts.items() <= written.items() and facts.items() <= results.items()


def test_more_devices_than_the_process_has_is_refused_before_anything_is_written(tiny_npz,
                                                                                 tmp_path):
  config = helpers.tiny_config(tiny_npz, num_devices=9)
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert str(error.value) == ('config.train.num_devices=9: more than the 8 devices JAX sees in '
                              'this process (cpu); use 0 (all of them) or at most 8')
  assert not os.path.exists(tmp_path / 'run')


def test_a_batch_the_devices_do_not_divide_names_the_counts_that_do(tiny_npz, tmp_path):
  config = helpers.tiny_config(tiny_npz, batch_size=50, num_steps=1)
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert str(error.value) == (
      'config.train.batch_size=50: must be divisible by the 8 devices the run uses; set '
      '--config.train.num_devices=5 (or 2, 1: the device counts that divide 50), or a batch '
      'that 8 divides')
  assert not os.path.exists(tmp_path / 'run')
  config.train.num_devices = 5
  assert train.train_and_evaluate(config, str(tmp_path / 'run'))['devices'] == 5


def test_explicit_devices_win_and_a_different_num_devices_is_refused(eight_devices):
  assert sharding.select_devices(0, eight_devices[:3]) == eight_devices[:3]
  assert sharding.select_devices(3, eight_devices[:3]) == eight_devices[:3]
  with pytest.raises(ConfigError) as error:
    sharding.select_devices(2, eight_devices[:3])
  assert str(error.value) == ('config.train.num_devices=2: the caller passed 3 devices; use 0 '
                              '(those devices) or 3')


@pytest.fixture
def two_processes(monkeypatch):
  """jax as process 0 of 2 processes with 4 devices each sees it (device ids 0-7)."""
  fake = [types.SimpleNamespace(id=i, process_index=i // 4) for i in range(8)]
  monkeypatch.setattr(jax, 'devices', lambda: fake)
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  monkeypatch.setattr(jax, 'local_device_count', lambda: 4)
  return fake


def test_num_devices_counts_per_process_on_several_hosts(two_processes):
  assert [d.id for d in sharding.select_devices(2)] == [0, 1, 4, 5]
  assert sharding.select_devices(0) == two_processes
  with pytest.raises(ConfigError, match='num_devices=5: more than the 4 devices JAX sees in '):
    sharding.select_devices(5)


def test_a_batch_several_hosts_do_not_divide_names_the_counts_per_process(two_processes):
  del two_processes
  with pytest.raises(ConfigError) as error:
    sharding.check_batch(50, types.SimpleNamespace(size=8))
  assert str(error.value) == (
      'config.train.batch_size=50: must be divisible by the 8 devices the run uses (4 on each of '
      '2 processes); set --config.train.num_devices=1, or a batch that 8 divides')
  with pytest.raises(ConfigError) as error:
    sharding.check_batch(12, types.SimpleNamespace(size=8))
  assert str(error.value).endswith('set --config.train.num_devices=3 (or 2, 1: the counts per '
                                   'process whose total divides 12), or a batch that 8 divides')
  sharding.check_batch(48, types.SimpleNamespace(size=8))


def test_the_device_keys_are_neutral_and_absent_from_old_workdirs_as_before():
  assert workdir.ADDED_KEYS['train.num_devices'] == 0
  assert workdir.ADDED_KEYS['train.require_accelerator'] is False
  stored = config_defaults.default_config().to_dict()
  new = config_defaults.default_config()
  new.train.update(num_devices=2, require_accelerator=True)
  assert workdir.config_changes(stored, new.to_dict()) == []
