"""The complete default experiment config; files in `configs/` start from it and change what differs.

Every key is listed here with its default, so `config.json` in a workdir shows every value a run
used, and a typo in an override is an 'unknown key' error rather than a silent no-op.
"""
from __future__ import annotations

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = dict(name='fashion_mnist', source='idx', path='/usr/share/datasets/fashion-mnist',
                   download=False, augmentation='default', crop_padding=4)
  c.model = dict(name='cnn', dropout_rate=0.0, dropout_sites=(), widths=(32, 64), kernel_size=3,
                 hidden_size=256, batch_norm=False)
  c.targets = dict(name='one_hot')
  c.loss = dict(name='cross_entropy')
  c.adversary = dict(name='none')
  c.weight_perturbation = dict(name='none')
  c.feature_mask = dict(name='none', sites=())
  c.optimizer = dict(name='adam', learning_rate=1e-3, momentum=0.9, nesterov=False,
                     weight_decay=0.0, grad_clip_norm=0.0, schedule='cosine', warmup_epochs=0.0,
                     boundaries_epochs=(), decay_factor=0.1)
  c.train = dict(batch_size=128, num_epochs=3, num_steps=0, log_every_steps=50, eval_every_epochs=1,
                 checkpoint_every_steps=1000, checkpoint_every_minutes=10.0,
                 max_checkpoints_to_keep=2, log_grad_norm=False)
  c.eval = dict(batch_size=1000)
  c.robustness = dict(norm='linf', epsilons=('0', '0.1'), attacks=('fgsm', 'pgd', 'apgd_ce', 'apgd_dlr'),
                      pgd_steps=20, pgd_relative_step_size=0.25, pgd_restarts=1, apgd_steps=100,
                      apgd_restarts=1, num_examples=0, batch_size=500, model_mode='eval',
                      large_epsilon='0.5', seed=0)
  c.distributed = dict(initialize=False, coordinator_address='', num_processes=1, process_id=0)
  return c


def cnn_model(**overrides) -> dict:
  """The `cnn` model section with the papers' LeNet-like defaults, then `overrides`."""
  return dict(name='cnn', dropout_rate=0.0, dropout_sites=(), widths=(32, 64), kernel_size=5,
              hidden_size=1024, batch_norm=False) | overrides


def plain_model(name: str, **overrides) -> dict:
  """A model section for the CIFAR models (vgg16, preact_resnet18, wrn*): the common keys, plus
  `shortcut_input` for preact_resnet18 ('preactivated', as the AMP code)."""
  extra = {'shortcut_input': 'preactivated'} if name == 'preact_resnet18' else {}
  return dict(name=name, dropout_rate=0.0, dropout_sites=(), **extra) | overrides


def cifar_config(dataset: str, model: str, **model_overrides) -> ml_collections.ConfigDict:
  """The standard CIFAR recipe: TFDS data, SGD 0.1 (momentum 0.9, Nesterov, weight decay 5e-4),
  batch 128, 200 epochs, learning rate ×0.1 at epochs 100 and 150; L∞ evaluation up to 8/255."""
  c = default_config()
  c.dataset = dict(name=dataset, source='tfds', path='', download=False, augmentation='default',
                   crop_padding=4)
  c.model = plain_model(model, **model_overrides)
  c.optimizer = dict(name='sgd', learning_rate=0.1, momentum=0.9, nesterov=True,
                     weight_decay=5e-4, grad_clip_norm=0.0, schedule='piecewise',
                     warmup_epochs=0.0, boundaries_epochs=(100.0, 150.0), decay_factor=0.1)
  c.train = dict(batch_size=128, num_epochs=200, num_steps=0, log_every_steps=100,
                 eval_every_epochs=10, checkpoint_every_steps=2000, checkpoint_every_minutes=10.0,
                 max_checkpoints_to_keep=2, log_grad_norm=False)
  c.robustness.epsilons = ('0', '2/255', '4/255', '8/255')
  c.robustness.large_epsilon = '64/255'
  return c


def parse_variant(arg, known: tuple[str, ...], default: str) -> str:
  """The config variant named by `arg` (default when None); a clear error for unknown names."""
  variant = arg or default
  if variant not in known:
    raise ValueError(f'unknown config variant {variant!r}; known: {", ".join(known)}')
  return variant
