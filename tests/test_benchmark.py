"""The benchmark compares like with like: hand-written steps match the library's objectives."""
import jax
import numpy as np
import pytest

from experiments import benchmark, reference_steps
from robust_jax import data, objectives, optim, sharding, train_state, train_step
from robust_jax.data import pipeline
from robust_jax.models import build_model
from robust_jax.runs import load_config_file

METHOD_CONFIGS = ['configs/erm.py:fashion_mnist', 'configs/amp.py:fashion_mnist',
                  'configs/dropattack.py:fashion_mnist', 'configs/mdl.py:fashion_mnist',
                  'configs/lfm.py:fashion_mnist', 'configs/class_similarity.py:fashion_mnist',
                  'configs/fashion_mnist_adversarial.py:pgd',
                  'configs/fashion_mnist_adversarial.py:fgsm',
                  'configs/fashion_mnist_adversarial.py:trades']


def _tiny(spec):
  config = load_config_file(spec)
  config.model.update(widths=(4, 8), hidden_size=16)
  config.train.batch_size = 16
  return config


def _first_losses(config, devices):
  mesh = sharding.make_mesh(devices)
  spec = data.SPECS['fashion_mnist']
  model = build_model(config.model, spec, objectives.build_feature_transforms(config))
  optimizer, _ = optim.make_optimizer(config.optimizer, 10, 100)
  augment = pipeline.make_augment_fn('none', 0)
  state = train_state.init_train_state(model, optimizer, jax.random.key(0), spec.image_shape)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 28, 28, 1), np.uint8)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  general = train_step.make_train_step(objectives.build_loss_fn(config, model, 10), optimizer,
                                       augment, jax.random.key(1), mesh)
  _, metrics = general(state, {'image': images, 'label': labels})
  hand = jax.jit(reference_steps.for_config(config)(model.module, optimizer, augment, config))
  state = train_state.init_train_state(model, optimizer, jax.random.key(0), spec.image_shape)
  *_, hand_loss = hand(state.params, state.model_state, state.opt_state, images, labels,
                       jax.random.key(1))
  return float(metrics['loss']), float(hand_loss)


@pytest.mark.parametrize('spec', METHOD_CONFIGS)
def test_reference_step_exists_and_trains(spec, eight_devices):
  general, hand = _first_losses(_tiny(spec), eight_devices[:1])
  assert np.isfinite(general) and np.isfinite(hand)
  if spec.split(':')[0] in ('configs/erm.py', 'configs/amp.py', 'configs/class_similarity.py'):
    np.testing.assert_allclose(general, hand, rtol=1e-5)  # deterministic objectives agree exactly


def test_benchmark_reports_both_steps(eight_devices):
  del eight_devices
  result = benchmark.benchmark(_tiny('configs/erm.py:fashion_mnist'), rounds=2, steps=1)
  general, hand = result['robust_jax_round_s'], result['hand_written_round_s']
  assert len(general) == len(hand) == 2 and min(general + hand) > 0
  assert result['robust_jax_step_s'] == pytest.approx(np.median(general))
  assert result['ratio_time_general_over_hand'] == pytest.approx(
      np.median(np.array(general) / np.array(hand)))  # paired per round, not median / median
