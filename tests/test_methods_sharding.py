"""Every method's train step gives the same losses, parameters and batch-norm statistics on 1 and 8
devices."""
import jax
import numpy as np
import pytest

from robust_jax import data, objectives, sharding
from robust_jax.config import validation
from robust_jax.data import pipeline
from robust_jax.models import build_model
from robust_jax.training import optim, state as train_state, step as train_step
from tests import helpers


def _method_configs():
  from configs import (amp, class_similarity, dropattack, fashion_mnist_adversarial, lfm, mdl)
  def base():
    config = helpers.tiny_config('unused.npz')
    config.model.batch_norm = True  # batch statistics over the global batch, on 1 or 8 devices
    # SGD, not Adam: Adam divides each update by the gradient's own magnitude, so where a gradient
    # is at rounding level (1 and 8 devices sum in another order) the two updates differ by up to
    # the learning rate itself, and which element that hits depends on the CPU's kernels (one of
    # 6,272 on one machine, none on another). SGD's update differs by lr × the rounding.
    config.optimizer.update(name='sgd', learning_rate=0.01, momentum=0.9)
    return config

  configs = {'erm_dropout': base()}
  configs['erm_dropout'].model.update(dropout_rate=0.3, dropout_sites=('classifier',))
  for name, module, variant in (('pgd_at', fashion_mnist_adversarial, 'pgd'),
                                ('fgsm_at', fashion_mnist_adversarial, 'fgsm'),
                                ('trades', fashion_mnist_adversarial, 'trades'),
                                ('amp', amp, 'fashion_mnist'),
                                ('dropattack', dropattack, 'fashion_mnist'),
                                ('mdl', mdl, 'fashion_mnist'), ('lfm', lfm, 'fashion_mnist'),
                                ('class_similarity', class_similarity, 'fashion_mnist')):
    config = base()
    method = module.get_config(variant)
    for section in ('loss', 'targets', 'adversary', 'weight_perturbation', 'feature_mask'):
      config[section] = method[section]
    config.model.update(dropout_rate=method.model.dropout_rate,
                        dropout_sites=method.model.dropout_sites)
    if 'num_steps' in config.adversary:
      config.adversary.num_steps = 3
    if config.loss.name == 'trades':
      config.loss.num_steps = 3
    if config.feature_mask.name == 'lfm':
      config.feature_mask.probability = 1.0
    configs[name] = config
  return configs


CONFIGS = _method_configs()


def _run_steps(config, devices, num_steps=3):
  validation.validate_config(config)
  mesh = sharding.make_mesh(devices)
  spec = data.SPECS['fashion_mnist']
  model = build_model(config.model, spec, objectives.build_feature_transforms(config))
  optimizer, _ = optim.make_optimizer(config.optimizer, 10, 100)
  step = train_step.make_train_step(objectives.build_loss_fn(config, model, spec.num_classes),
                                    optimizer, pipeline.make_augment_fn('none', 0),
                                    jax.random.key(5), mesh)
  state = jax.jit(lambda k: train_state.init_train_state(model, optimizer, k, spec.image_shape),
                  out_shardings=sharding.replicated(mesh))(jax.random.key(0))
  images, labels = helpers.quadrant_images(16, seed=3)
  batch = jax.device_put({'image': images, 'label': labels}, sharding.batch_sharded(mesh))
  losses = []
  for _ in range(num_steps):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  return losses, jax.device_get((state.params, state.model_state))


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_one_and_eight_devices_agree(name, eight_devices):
  losses_1, variables_1 = _run_steps(CONFIGS[name], eight_devices[:1])
  losses_8, variables_8 = _run_steps(CONFIGS[name], eight_devices)
  np.testing.assert_allclose(losses_1, losses_8, rtol=2e-5)
  # atol: 3 Adam steps; summation order differs across devices (~1e-5 on a few entries with
  # jax 0.10.2, 4.1e-5 on one with jax 0.12).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=5e-5),
               variables_1, variables_8)
  assert losses_1[0] != losses_1[-1]  # the steps did train
  assert np.abs(variables_1[1]['batch_stats']['BatchNorm_0']['mean']).max() > 0  # and updated BN
