"""The complete default experiment config; files in `configs/` start from it and change what differs.

Every key is listed here with its default, so `config.json` in a workdir shows every value a run
used, and a typo in an override is an 'unknown key' error rather than a silent no-op. Each default
is written once: the sections resolved in a registry (model, targets, loss, adversary,
weight_perturbation, feature_mask) are the chosen component's registered defaults (`registered`;
a model's are its module's field defaults, `robust_jax.models`), the other sections are written
here, and the recipes below set only what differs.
"""
from __future__ import annotations

import ml_collections

from robust_jax.config.overrides import SWITCHABLE
from robust_jax.models.cnn import CNN

__all__ = ['AMP_TABLE_DATASETS', 'AMP_TABLE_MODELS', 'AMP_TABLE_VARIANTS', 'CUTOUT_LENGTH',
           'TEXT_DATASET_DEFAULTS', 'WRN_AUGMENTATIONS', 'amp_recipe', 'amp_table_variant',
           'cifar_config', 'cnn_model', 'default_config', 'parse_variant', 'plain_model',
           'registered']

# The dataset keys that only text datasets read (`robust_jax.data`): the notebooks' length 256,
# no stop-word removal, the cache in `robust_jax.data.text.default_cache_dir()`.
TEXT_DATASET_DEFAULTS = dict(max_length=256, vocab_size=50_000, min_count=1,
                             remove_stop_words=False, csv_files=('train.csv', 'test.csv'),
                             cache_dir='')


def registered(section: str, name: str, **overrides) -> dict:
  """The `section` config section ('model', 'adversary', ...) of component `name`: its registered
  defaults, then `overrides` (each a key of that component; another key is a ValueError)."""
  values = SWITCHABLE[section].default_section(f'config.{section}.name', name)
  known = sorted(set(values) - {'name'})
  unknown = sorted(set(overrides) - set(known))
  if unknown:
    raise ValueError(f'config.{section}.{unknown[0]}: not a key of {section} {name!r}; known '
                     f'keys: {", ".join(known) or "none"}')
  return values | overrides


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = dict(name='fashion_mnist', source='idx', path='/usr/share/datasets/fashion-mnist',
                   download=False, augmentation='default', crop_padding=4, crop_fill=0,
                   autoaugment='none', cutout_length=0, validation_examples=0,
                   **TEXT_DATASET_DEFAULTS)
  c.model = registered('model', 'cnn')
  c.targets = registered('targets', 'one_hot')
  c.loss = registered('loss', 'cross_entropy')
  c.adversary = registered('adversary', 'none')
  c.weight_perturbation = registered('weight_perturbation', 'none')
  c.feature_mask = registered('feature_mask', 'none')
  c.optimizer = dict(name='adam', learning_rate=1e-3, momentum=0.9, nesterov=False,
                     weight_decay=0.0, grad_clip_norm=0.0, schedule='cosine', warmup_epochs=0.0,
                     boundaries_epochs=(), decay_factor=0.1)
  c.train = dict(batch_size=128, num_epochs=3, num_steps=0, log_every_steps=50, eval_every_epochs=1,
                 checkpoint_every_steps=1000, checkpoint_every_minutes=10.0,
                 max_checkpoints_to_keep=2, log_grad_norm=False, compute_dtype='float32',
                 num_devices=0, require_accelerator=False, select_by='clean', seeds=(),
                 sweep=(), sweep_values=(), replica_batching='auto')
  c.eval = dict(batch_size=1000, num_examples=0, robust_examples=0)
  c.robustness = dict(norm='linf', epsilons=('0', '0.1'), attacks=('fgsm', 'pgd', 'apgd_ce', 'apgd_dlr'),
                      pgd_steps=20, pgd_relative_step_size=0.25, pgd_restarts=1, apgd_steps=100,
                      apgd_restarts=1, num_examples=0, batch_size=500, model_mode='eval',
                      large_epsilon='0.5', seed=0)
  c.distributed = dict(initialize=False, coordinator_address='', num_processes=1, process_id=0)
  return c


def cnn_model(**overrides) -> dict:
  """The `cnn` model section of the papers' LeNet-like CNN, then `overrides`: the registered
  section with the `CNN` module's own kernel and hidden size instead of the offline default's."""
  paper = {'kernel_size': CNN.kernel_size, 'hidden_size': CNN.hidden_size}
  return registered('model', 'cnn', **(paper | overrides))


def plain_model(name: str, **overrides) -> dict:
  """The model section of model `name` with its registered defaults, then `overrides`."""
  return registered('model', name, **overrides)


def cifar_config(dataset: str, model: str, **model_overrides) -> ml_collections.ConfigDict:
  """The standard CIFAR recipe: TFDS data (crops padded with 128), SGD 0.1 (momentum 0.9,
  Nesterov, weight decay 5e-4), batch 128, 200 epochs, learning rate ×0.1 at epochs 100 and 150;
  L∞ evaluation up to 8/255. Paper-scale, so it refuses to train on CPUs
  (`train.require_accelerator`). `model` with its registered defaults, then `model_overrides`."""
  c = default_config()
  c.dataset.update(name=dataset, source='tfds', path='', crop_fill=128)
  c.model = registered('model', model, **model_overrides)
  c.optimizer.update(name='sgd', learning_rate=0.1, nesterov=True, weight_decay=5e-4,
                     schedule='piecewise', boundaries_epochs=(100.0, 150.0))
  c.train.update(num_epochs=200, log_every_steps=100, eval_every_epochs=10,
                 checkpoint_every_steps=2000, require_accelerator=True)
  c.robustness.update(epsilons=('0', '2/255', '4/255', '8/255'), large_epsilon='64/255')
  return c


# The AMP paper's result tables (papers.md 1.6): PreActResNet-18 and VGG-16 with standard
# augmentation, WRN-28-10 without (vanilla), with Cutout, and with AutoAugment + Cutout.
AMP_TABLE_DATASETS = ('svhn', 'cifar10', 'cifar100')
AMP_TABLE_MODELS = ('preact_resnet18', 'vgg16')
WRN_AUGMENTATIONS = ('vanilla', 'cutout', 'autoaugment')
AMP_TABLE_VARIANTS = tuple(
    [f'{d}_{m}' for d in AMP_TABLE_DATASETS for m in AMP_TABLE_MODELS]
    + [f'{d}_wrn28_10_{a}' for d in AMP_TABLE_DATASETS for a in WRN_AUGMENTATIONS])
CUTOUT_LENGTH = {'cifar10': 16, 'cifar100': 8, 'svhn': 20}  # the official data_utils.py


def amp_table_variant(variant: str) -> tuple[str, str, str]:
  """'cifar10_wrn28_10_cutout' -> ('cifar10', 'wrn28_10', 'cutout'); 'svhn_vgg16' -> ('svhn',
  'vgg16', 'standard')."""
  dataset, model = variant.split('_', 1)
  if model.startswith('wrn28_10_'):
    return dataset, 'wrn28_10', model.removeprefix('wrn28_10_')
  return dataset, model, 'standard'


def amp_recipe(dataset: str, model: str, augmentation: str = 'standard'
               ) -> ml_collections.ConfigDict:
  """The official AMP trainer's recipe, for ERM and AMP alike (papers.md 1.3, 1.4).

  SGD 0.1 (momentum 0.9, Nesterov, coupled weight decay 1e-4), batch 50, 200 epochs, ×0.1 at 100
  and 150, gradient clipping at global norm 50 for every method (ERM included), test accuracy every
  epoch (the code reports the best epoch; results.json keeps best and last). Data: random crop
  padded with 128 (CIFAR: 4 pixels + flip; SVHN: 2 pixels, no flip); 'vanilla' = 'standard';
  'cutout' adds Cutout (C10 16, C100 8, SVHN 20 pixels); 'autoaugment' adds the dataset's
  AutoAugment policy and Cutout (on SVHN the policy replaces the crop, as the official code).
  Differences that remain: the last partial batch of each epoch is dropped (the code keeps it).
  """
  c = cifar_config(dataset, model)
  c.train.update(batch_size=50, eval_every_epochs=1)
  c.optimizer.update(weight_decay=1e-4, grad_clip_norm=50.0)
  if dataset == 'svhn':
    c.dataset.crop_padding = 2
  if augmentation in ('cutout', 'autoaugment'):
    c.dataset.cutout_length = CUTOUT_LENGTH[dataset]
  if augmentation == 'autoaugment':
    c.dataset.autoaugment = 'svhn' if dataset == 'svhn' else 'cifar10'
    if dataset == 'svhn':
      c.dataset.augmentation = 'none'
  return c


def parse_variant(arg, known: tuple[str, ...], default: str) -> str:
  """The config variant named by `arg` (default when None); a clear error for unknown names."""
  variant = arg or default
  if variant not in known:
    raise ValueError(f'unknown config variant {variant!r}; known: {", ".join(known)}')
  return variant
