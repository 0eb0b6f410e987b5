"""Replicas (`robust_jax.training.replicas`): R runs in one program equal R separate runs."""
import json
import os

import chex
import jax
import numpy as np
import pytest

from robust_jax.config import defaults, overrides, schema as cs, validation
from robust_jax.training import loop, replicas
from robust_jax.training.runs import RunNotFoundError, load_run
from tests import helpers


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
  path = tmp_path_factory.mktemp('data') / 'tiny.npz'
  helpers.write_quadrant_npz(str(path), num_train=256, num_test=64)
  return str(path)


@pytest.fixture
def tiny(tiny_data):
  def make(**train):
    return helpers.tiny_config(tiny_data, num_epochs=1, log_every_steps=2,
                               checkpoint_every_steps=3, **train)
  return make


def _separate(config, seed, values, workdir):
  run = config.copy_and_resolve_references()
  run.seed = seed
  run.train.update(seeds=(), sweep=(), sweep_values=())
  for key, value in values.items():
    section, name = key.split('.')
    run[section][name] = value
  return loop.train_and_evaluate(run, workdir)


def _records(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _params(workdir, folder='checkpoints'):
  return load_run(workdir, folder=folder)[2]


_SWEPT = [(0, 0.1), (1, 0.4)]  # two of the four replicas: each replica is independent


def _amp_sweep(tiny, **train):
  config = tiny(seeds=(0, 1), sweep=('weight_perturbation.epsilon',), sweep_values=(0.1, 0.4),
                num_steps=4, **train)
  config.weight_perturbation = defaults.registered('weight_perturbation', 'amp')
  return config


@pytest.fixture(scope='module')
def separate_amp_runs(tiny_data, tmp_path_factory):
  """{name: (workdir, results)} of the separate runs that `_SWEPT`'s replicas stand for."""
  config = _amp_sweep(lambda **train: helpers.tiny_config(
      tiny_data, num_epochs=1, log_every_steps=2, checkpoint_every_steps=3, **train))
  runs = {}
  for seed, epsilon in _SWEPT:
    workdir = str(tmp_path_factory.mktemp(f'seed{seed}'))
    runs[f'seed{seed}-epsilon{epsilon:g}'] = (workdir, _separate(
        config, seed, {'weight_perturbation.epsilon': epsilon}, workdir))
  return runs


@pytest.mark.parametrize('batching', ['sequential', 'unroll', 'vmap'])
def test_replicas_equal_separate_runs(tmp_path, tiny, separate_amp_runs, batching):
  """Seeds × an AMP ε sweep: each replica's parameters and metrics are its separate run's
  (bit for bit sequential and unrolled; vmapped, XLA batches the convolutions differently, and
  Adam at learning rate 1e-2 magnifies a last-bit difference: within 1e-4)."""
  results = loop.train_and_evaluate(_amp_sweep(tiny, replica_batching=batching),
                                    str(tmp_path / 'replicas'))
  assert results['num_replicas'] == 4
  assert [p['values'] for p in results['points']] == [{'weight_perturbation.epsilon': 0.1},
                                                       {'weight_perturbation.epsilon': 0.4}]
  for name, (workdir, separate) in separate_amp_runs.items():
    folder = str(tmp_path / 'replicas' / 'replicas' / name)
    replica = results['replicas'][name]
    tolerance = 1e-4 if batching == 'vmap' else 0
    chex.assert_trees_all_close(_params(folder), _params(workdir), atol=tolerance, rtol=0)
    np.testing.assert_allclose(replica['test_loss'], separate['test_loss'], atol=tolerance)
    logged = _records(os.path.join(folder, 'metrics.jsonl'))
    alone = _records(os.path.join(workdir, 'metrics.jsonl'))
    assert [r['step'] for r in logged] == [r['step'] for r in alone]
    for a, b in zip(logged, alone):
      np.testing.assert_allclose(a.get('train/loss', 0), b.get('train/loss', 0), atol=tolerance)
  with open(tmp_path / 'replicas' / 'results.json') as f:
    summary = json.load(f)
  point = summary['points'][0]
  accuracies = [results['replicas'][f'seed{s}-epsilon0.1']['test_accuracy'] for s in (0, 1)]
  assert point['seeds'] == [0, 1]
  np.testing.assert_allclose(point['test_accuracy_mean'], np.mean(accuracies))


def test_a_weight_decay_sweep_from_a_config_without_one(tmp_path, tiny):
  """The config's weight decay is 0 (no decay step), each replica's positive: every replica
  state has the decay step's structure, and a replica equals its separate run (to a few ulps:
  the separate run compiles its decay as a constant, the replica's is an array; the two programs
  agree here and were 1 ulp apart on the CI host)."""
  config = tiny(sweep=('optimizer.weight_decay',), sweep_values=(1e-3, 1e-1), num_steps=2)
  assert config.optimizer.weight_decay == 0
  results = loop.train_and_evaluate(config, str(tmp_path / 'replicas'))
  separate = _separate(config, 0, {'optimizer.weight_decay': 1e-1}, str(tmp_path / 'alone'))
  np.testing.assert_allclose(results['replicas']['seed0-weight_decay0.1']['test_loss'],
                             separate['test_loss'], rtol=1e-6)
  assert abs(results['replicas']['seed0-weight_decay0.001']['test_loss']
             - separate['test_loss']) > 1e-2


@pytest.mark.long
def test_resumed_replicas_equal_uninterrupted(tmp_path, tiny):
  config = tiny(seeds=(3, 4), num_steps=5)
  whole = loop.train_and_evaluate(config, str(tmp_path / 'whole'))
  assert loop.train_and_evaluate(config, str(tmp_path / 'parts'), stop_after_steps=3) == {
      'stopped_at_step': 3}
  resumed = loop.train_and_evaluate(config, str(tmp_path / 'parts'))
  for name in ('seed3', 'seed4'):
    assert resumed['replicas'][name]['test_loss'] == whole['replicas'][name]['test_loss']
    chex.assert_trees_all_equal(_params(str(tmp_path / 'parts/replicas' / name)),
                                _params(str(tmp_path / 'whole/replicas' / name)))
    records = _records(tmp_path / 'parts/replicas' / name / 'metrics.jsonl')
    assert [r['step'] for r in records if 'train/loss' in r] == [2, 3, 4, 5]  # each once
    assert [r['step'] for r in records if 'test/accuracy' in r] == [5]


def test_replica_folder_is_a_workdir_and_the_top_is_refused(tmp_path, tiny):
  config = tiny(seeds=(0, 1))
  loop.train_and_evaluate(config, str(tmp_path))
  loaded = load_run(str(tmp_path / 'replicas' / 'seed1'))
  assert loaded[0].seed == 1 and tuple(loaded[0].train.seeds) == ()
  assert os.listdir(tmp_path / 'replicas' / 'seed1' / 'best') == ['8']
  with pytest.raises(RunNotFoundError, match=r'2 replicas.*replicas/seed0'):
    load_run(str(tmp_path))


def test_replicas_on_eight_devices_equal_one(tmp_path, tiny):
  config = tiny(seeds=(0, 2), num_steps=3)
  eight = loop.train_and_evaluate(config, str(tmp_path / 'eight'), devices=jax.devices()[:8])
  one = loop.train_and_evaluate(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  for name in ('seed0', 'seed2'):
    np.testing.assert_allclose(eight['replicas'][name]['test_loss'],
                               one['replicas'][name]['test_loss'], rtol=1e-5)


@pytest.mark.parametrize('section, name, key, value', [
    ('optimizer', None, 'learning_rate', 0.003), ('optimizer', None, 'weight_decay', 0.01),
    ('targets', 'label_smoothing', 'smoothing', 0.2), ('loss', 'trades', 'beta', 3.0),
    ('loss', 'trades', 'epsilon', 0.2), ('loss', 'trades', 'step_size', 0.05),
    ('loss', 'mdl', 'orthogonality_weight', 0.5), ('adversary', 'pgd', 'epsilon', 0.2),
    ('adversary', 'fgsm', 'step_size', 0.05), ('weight_perturbation', 'amp', 'inner_lr', 0.5),
    ('weight_perturbation', 'dropattack', 'input_epsilon', 0.5),
    ('weight_perturbation', 'dropattack', 'weight_epsilon', 0.01)])
def test_every_sweepable_key_traced_equals_its_constant(tiny, section, name, key, value):
  """The step built from the config at its default value with `value` traced in equals the step
  built with `value` as a constant, and differs from the step at the default (so the traced
  value is the one used)."""
  from robust_jax import data, objectives
  from robust_jax.models import build_model
  from robust_jax.training import state as train_state, step as train_step, optim
  config = tiny()
  if name:
    config[section] = defaults.registered(section, name)
  if name == 'mdl':
    config.model.update(dropout_rate=0.3, dropout_sites=('classifier',))
  validation.validate_config(config)
  assert f'{section}.{key}' in replicas.sweepable_keys(config)
  at_default = config.copy_and_resolve_references()
  config[section][key] = value
  spec = data.spec_for(config.dataset)
  model = build_model(config.model, spec, objectives.build_feature_transforms(config))

  def build(run_config):
    optimizer, _ = optim.make_optimizer(run_config.optimizer, 10, 10, validate_steps=False)
    return train_step.step_function(objectives.build_loss_fn(run_config, model, 10), optimizer,
                                    lambda images, key: images.astype(np.float32) / 255)
  def state_for(run_config):  # the same parameters; the optimizer state of `run_config`
    optimizer, _ = optim.make_optimizer(run_config.optimizer, 10, 10)
    return train_state.init_train_state(model, optimizer, jax.random.key(0), spec.image_shape)
  state = state_for(config)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (8, 28, 28, 1), np.uint8),
           'label': rng.integers(0, 10, (8,), np.int32)}
  constant, _ = jax.jit(build(config))(state, batch, jax.random.key(1))
  traced, _ = jax.jit(lambda v: build(replicas.traced_config(at_default, {f'{section}.{key}': v}))(
      state, batch, jax.random.key(1)))(np.float32(value))
  chex.assert_trees_all_close(traced.params, constant.params, atol=2e-6, rtol=1e-5)
  default, _ = jax.jit(build(at_default))(state_for(at_default), batch, jax.random.key(1))
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(default.params),
                                                            jax.tree.leaves(constant.params)))
  assert moved > 1e-4, f'{section}.{key}: {value} and the default give the same step'


@pytest.mark.parametrize('train, message', [
    (dict(sweep=('model.hidden_size',), sweep_values=(64, 128)),
     r"config.train.sweep: 'model.hidden_size' cannot be swept.*this config sweeps: "
     r'optimizer.learning_rate, optimizer.weight_decay$'),
    (dict(sweep=('optimizer.learning_rate',)),
     r'config.train.sweep=.*give the values of each replica in config.train.sweep_values'),
    (dict(sweep_values=(0.1,)), r'set config.train.sweep to the keys'),
    (dict(sweep=('optimizer.learning_rate', 'optimizer.weight_decay'), sweep_values=(0.1, 0.2)),
     r'each point must be 2 number\(s\)'),
    (dict(sweep=('optimizer.learning_rate',), sweep_values=(0.1, 0.1)), r'a point is repeated'),
    (dict(sweep=('optimizer.weight_decay',), sweep_values=(0.0, 1e-4)),
     r'weight_decay 0 beside 0.0001 \(0 removes the decay step'),
    (dict(sweep=('optimizer.learning_rate',), sweep_values=(0.1, -0.1)),
     r'^replica seed0-learning_rate-0.1: config.optimizer.learning_rate=-0.1: must be > 0'),
    (dict(seeds=(1, 1)), r'config.train.seeds=\(1, 1\)'),
    (dict(sweep=('optimizer.learning_rate',), sweep_values=(0.1, 0.1000001)),
     r"two points share the folder name 'seed0-learning_rate0.1'"),
])
def test_bad_replica_configs_are_refused_in_one_line(train, message):
  config = defaults.default_config()
  config.train.update(**train)
  with pytest.raises(cs.ConfigError, match=message) as error:
    validation.validate_config(config)
  assert '\n' not in str(error.value)


def test_replica_keys_from_the_command_line():
  config = overrides.apply_overrides(defaults.default_config(), [
      'train.seeds=(0,1,2)', "train.sweep=('optimizer.learning_rate',)",
      'train.sweep_values=(0.01,0.001)'])
  specs = replicas.replica_specs(config)
  assert [s.name for s in specs] == ['seed0-learning_rate0.01', 'seed0-learning_rate0.001',
                                     'seed1-learning_rate0.01', 'seed1-learning_rate0.001',
                                     'seed2-learning_rate0.01', 'seed2-learning_rate0.001']
  assert [s.config.optimizer.learning_rate for s in specs[:2]] == [0.01, 0.001]
  assert all(tuple(s.config.train.seeds) == () for s in specs)


def test_a_resume_cannot_change_the_replicas(tmp_path, tiny):
  from robust_jax.training import workdir as workdir_lib
  loop.train_and_evaluate(tiny(seeds=(0, 1)), str(tmp_path), stop_after_steps=3)
  with pytest.raises(workdir_lib.WorkdirError, match=r'config.train.seeds changed; it names the '
                     r'replicas this workdir trains'):
    loop.train_and_evaluate(tiny(seeds=(0, 1, 2)), str(tmp_path), allow_config_change=True)


def test_auto_batching_unrolls_on_cpus_and_vmaps_elsewhere():
  config = defaults.default_config()
  assert replicas.batching_for(config, 'cpu') == 'unroll'
  assert replicas.batching_for(config, 'gpu') == 'vmap'
  config.train.replica_batching = 'vmap'
  assert replicas.batching_for(config, 'cpu') == 'vmap'
