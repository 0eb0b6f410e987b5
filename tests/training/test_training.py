"""End-to-end training: 1 vs 8 devices, interrupt/resume, non-finite loss, TFDS mock data; the
step's optional gradient-norm metric; `train.num_steps`; no step logged twice after a crash."""
import json
import os

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from robust_jax import data, objectives, sharding
from robust_jax.config.files import load_config_file
from robust_jax.data import pipeline
from robust_jax.models import build_model
from robust_jax.training import checkpointing, loop as train, optim, state as train_state
from robust_jax.training import step as train_step
from tests import helpers


def _final_params(workdir):
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  restored = manager.restore(manager.latest_step())
  return restored['params']


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_one_and_eight_devices_agree(tiny_npz, tmp_path, eight_devices):
  config = helpers.tiny_config(tiny_npz, num_epochs=1)
  config.model.update(dropout_rate=0.3, dropout_sites=('classifier',))
  results = {}
  for count in (1, 8):
    workdir = str(tmp_path / f'd{count}')
    results[count] = train.train_and_evaluate(config, workdir, devices=eight_devices[:count])
    results[count]['params'] = _final_params(workdir)
    results[count]['losses'] = [m['train/loss'] for m in _metrics(workdir) if 'train/loss' in m]
  assert results[8]['devices'] == 8
  np.testing.assert_allclose(results[1]['losses'], results[8]['losses'], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               results[1]['params'], results[8]['params'])


@pytest.mark.long
def test_interrupted_and_resumed_equals_uninterrupted(tiny_npz, tmp_path, eight_devices):
  config = helpers.tiny_config(tiny_npz)  # 2 epochs of 8 steps
  devices = eight_devices[:1]
  whole = train.train_and_evaluate(config, str(tmp_path / 'whole'), devices=devices)
  resumed_dir = str(tmp_path / 'resumed')
  stopped = train.train_and_evaluate(config, resumed_dir, stop_after_steps=11, devices=devices)
  assert stopped == {'stopped_at_step': 11}
  resumed = train.train_and_evaluate(config, resumed_dir, devices=devices)
  assert resumed['steps'] == whole['steps'] == 16
  jax.tree.map(np.testing.assert_array_equal, _final_params(str(tmp_path / 'whole')),
               _final_params(resumed_dir))
  assert resumed['test_accuracy'] == whole['test_accuracy']
  # The best evaluation spans both parts of the resumed run (one evaluation per epoch).
  logged = [(m['step'], m['test/accuracy']) for m in _metrics(resumed_dir) if 'test/accuracy' in m]
  assert [step for step, _ in logged] == [8, 16]
  best_step, best = max(logged, key=lambda e: e[1])
  assert (resumed['best_test_step'], resumed['best_test_accuracy']) == (best_step, best)
  assert resumed['best_test_accuracy'] == whole['best_test_accuracy'] >= whole['test_accuracy']
  # Rerunning a finished run trains nothing and reports the same result.
  again = train.train_and_evaluate(config, resumed_dir, devices=devices)
  assert again['test_accuracy'] == whole['test_accuracy']
  assert again['best_test_accuracy'] == whole['best_test_accuracy']


def test_tiny_run_learns_and_writes_its_workdir(tiny_npz, tmp_path, eight_devices):
  config = helpers.tiny_config(tiny_npz, num_epochs=4)
  workdir = str(tmp_path / 'w')
  results = train.train_and_evaluate(config, workdir, devices=eight_devices[:2])
  assert results['test_accuracy'] > 0.9  # quadrant task is easy; chance is 0.25
  assert results['num_test_examples'] == 64
  for name in ('config.json', 'metrics.jsonl', 'results.json', 'tensorboard'):
    assert os.path.exists(os.path.join(workdir, name))
  logged = _metrics(workdir)
  assert {'train/loss', 'train/accuracy', 'train/images_per_s'} <= set(logged[0])
  assert sum('test/accuracy' in m for m in logged) == 4


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_npz, tmp_path, eight_devices):
  config = helpers.tiny_config(tiny_npz, log_every_steps=1, checkpoint_every_steps=1)
  config.optimizer.update(name='sgd', learning_rate=1e30, schedule='constant')
  workdir = str(tmp_path / 'nan')
  with pytest.raises(train.NonFiniteLossError, match='at step'):
    train.train_and_evaluate(config, workdir, devices=eight_devices[:1])
  steps = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')).all_steps()
  losses = [m['train/loss'] for m in _metrics(workdir)]
  assert np.all(np.isfinite(losses)) and max(steps) == len(losses)


def test_tfds_mock_data_end_to_end(tmp_path, eight_devices):
  config = helpers.tiny_config('', num_epochs=1)
  config.dataset.update(name='cifar10', source='tfds', path='')
  config.train.batch_size = 8
  with helpers.mock_tfds(24):
    results = train.train_and_evaluate(config, str(tmp_path / 'tfds'), devices=eight_devices[:1])
  assert results['steps'] == 3 and results['num_test_examples'] == 24
  assert 0.0 <= results['test_accuracy'] <= 1.0 and np.isfinite(results['test_loss'])


def test_an_amp_table_recipe_runs_end_to_end_on_tfds_mock_data(tmp_path, eight_devices):
  """SVHN through TFDS with the official AutoAugment + Cutout and AMP, the model made tiny."""
  config = load_config_file('configs/amp.py:svhn_wrn28_10_autoaugment')
  config.model = helpers.tiny_config('').model
  config.train.update(batch_size=8, num_epochs=1, require_accelerator=False)  # CPU on purpose
  config.eval.batch_size = 8
  with helpers.mock_tfds(16):
    results = train.train_and_evaluate(config, str(tmp_path / 'svhn'), devices=eight_devices[:1])
  assert results['steps'] == 2 and results['num_test_examples'] == 16
  assert np.isfinite(results['test_loss'])


@pytest.mark.parametrize('log_grad_norm', [False, True])
def test_grad_norm_is_logged_only_when_asked(log_grad_norm, eight_devices):
  config = helpers.tiny_config('unused.npz')
  mesh = sharding.make_mesh(eight_devices[:1])
  spec = data.SPECS['fashion_mnist']
  model = build_model(config.model, spec, ())
  loss_fn = objectives.build_loss_fn(config, model, spec.num_classes)
  optimizer, _ = optim.make_optimizer(config.optimizer, 10, 100)
  augment = pipeline.make_augment_fn('none', 0)
  step = train_step.make_train_step(loss_fn, optimizer, augment, jax.random.key(1), mesh,
                                    log_grad_norm)
  state = train_state.init_train_state(model, optimizer, jax.random.key(0), spec.image_shape)
  images, labels = helpers.quadrant_images(8, seed=0)
  inputs = {'image': augment(images, jax.random.key(2)), 'label': labels}
  grads = jax.grad(lambda p: loss_fn(p, state.model_state, inputs, jax.random.key(3))[0])(
      state.params)  # no dropout or feature masks: the gradient does not depend on the key
  _, metrics = step(state, {'image': images, 'label': labels})
  assert ('grad_norm' in metrics) == log_grad_norm
  if log_grad_norm:
    np.testing.assert_allclose(metrics['grad_norm'], optax.tree.norm(grads), rtol=1e-5)


def test_num_steps_sets_the_run_length_and_the_schedule(tiny_npz, tmp_path, eight_devices):
  config = helpers.tiny_config(tiny_npz, num_steps=5)  # 8 steps per epoch: ends mid-epoch
  workdir = str(tmp_path / 'steps')
  results = train.train_and_evaluate(config, workdir, devices=eight_devices[:1])
  assert results['steps'] == 5 and results['epochs'] == 5 / 8
  logged = _metrics(workdir)
  assert [m['step'] for m in logged] == [4, 5, 5] and 'test/accuracy' in logged[-1]
  cosine_to_zero_at_step_5 = optax.cosine_decay_schedule(1e-2, 5)
  assert logged[1]['train/learning_rate'] == pytest.approx(float(cosine_to_zero_at_step_5(4)))


def test_resume_after_a_crash_logs_each_step_once(tiny_npz, tmp_path, eight_devices, monkeypatch):
  """A run dies while saving step 10 (steps 6..10 logged, last checkpoint 5); its rerun logs
  steps 6..10 again, with the same values, and nothing twice."""
  config = helpers.tiny_config(tiny_npz, log_every_steps=1, checkpoint_every_minutes=0.0)
  workdir = str(tmp_path / 'crash')
  save = checkpointing.Checkpointer.save

  def crash_at_step_10(self, step, state):
    if step == 10:
      raise RuntimeError('simulated crash')
    save(self, step, state)

  monkeypatch.setattr(checkpointing.Checkpointer, 'save', crash_at_step_10)
  with pytest.raises(RuntimeError, match='simulated crash'):
    train.train_and_evaluate(config, workdir, devices=eight_devices[:1])
  crashed = {m['step']: m['train/loss'] for m in _metrics(workdir) if 'train/loss' in m}
  assert sorted(crashed) == list(range(1, 11))
  monkeypatch.undo()
  train.train_and_evaluate(config, workdir, devices=eight_devices[:1])
  logged = _metrics(workdir)
  train_steps = [m['step'] for m in logged if 'train/loss' in m]
  assert train_steps == list(range(1, 17))
  assert [m['step'] for m in logged if 'test/accuracy' in m] == [8, 16]
  assert {m['step']: m['train/loss'] for m in logged if m['step'] <= 10
          and 'train/loss' in m} == crashed
