"""Model registry: `config.model.name` -> a Flax `Classifier`, with each model's own options."""
from __future__ import annotations

from robust_jax import config_schema as cs
from robust_jax.data.specs import DatasetSpec
from robust_jax.models import preact_resnet
from robust_jax.models.base import Classifier, FeatureTransform
from robust_jax.models.cnn import CNN
from robust_jax.models.mlp import MLP
from robust_jax.models.model_fns import ModelFns, ModelState, Params
from robust_jax.models.preact_resnet import PreActResNet18
from robust_jax.models.vgg import VGG16
from robust_jax.models.wide_resnet import WideResNet
from robust_jax.registry import Registry

MODELS: Registry = Registry('model')

_COMMON: cs.Schema = {
    'dropout_rate': cs.real(0.0, 1.0),
    'dropout_sites': cs.sequence_of(cs.text()),
}
_COMMON_DEFAULTS = {'dropout_rate': 0.0, 'dropout_sites': ()}


@MODELS.register('mlp', {**_COMMON, 'hidden_sizes': cs.sequence_of(cs.integer(1), min_length=1)},
                 defaults={**_COMMON_DEFAULTS, 'hidden_sizes': (256, 256)})
def _mlp(config, **common):
  return MLP(hidden_sizes=tuple(config.hidden_sizes), **common)


@MODELS.register('cnn', {**_COMMON, 'widths': cs.sequence_of(cs.integer(1), min_length=2),
                         'kernel_size': cs.integer(1, 11), 'hidden_size': cs.integer(1),
                         'batch_norm': cs.boolean()},
                 defaults={**_COMMON_DEFAULTS, 'widths': (32, 64), 'kernel_size': 3,
                           'hidden_size': 256, 'batch_norm': False})
def _cnn(config, **common):
  return CNN(widths=tuple(config.widths), kernel_size=config.kernel_size,
             hidden_size=config.hidden_size, use_batch_norm=config.batch_norm, **common)


@MODELS.register('vgg16', _COMMON, defaults=_COMMON_DEFAULTS)
def _vgg16(config, **common):
  del config
  return VGG16(**common)


@MODELS.register('preact_resnet18',
                 {**_COMMON, 'shortcut_input': cs.one_of(*preact_resnet.SHORTCUT_INPUTS)},
                 defaults={**_COMMON_DEFAULTS, 'shortcut_input': 'preactivated'})
def _preact_resnet18(config, **common):
  return PreActResNet18(shortcut_input=config.shortcut_input, **common)


@MODELS.register('wrn28_10', _COMMON, defaults=_COMMON_DEFAULTS)
def _wrn28_10(config, **common):
  del config
  return WideResNet(depth=28, widen_factor=10, **common)


@MODELS.register('wrn34_10', _COMMON, defaults=_COMMON_DEFAULTS)
def _wrn34_10(config, **common):
  del config
  return WideResNet(depth=34, widen_factor=10, **common)


def model_sites(model_config) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(dropout sites, feature-hook sites) of the model `model_config` names."""
  module = MODELS.lookup('config.model.name', model_config.name).build(model_config)
  return type(module).DROPOUT_SITES, type(module).FEATURE_SITES


def validate(model_config) -> None:
  """Checks the model section, including that dropout sites exist in the chosen model."""
  MODELS.validate('config.model', model_config)
  sites, _ = model_sites(model_config)
  for site in model_config.dropout_sites:
    if site not in sites:
      raise cs.ConfigError(f'config.model.dropout_sites={tuple(model_config.dropout_sites)!r}: '
                           f'{model_config.name} has dropout sites {", ".join(sites) or "none"}')


def build_model(model_config, spec: DatasetSpec,
                feature_transforms: tuple[tuple[str, FeatureTransform], ...] = ()) -> ModelFns:
  entry = MODELS.lookup('config.model.name', model_config.name)
  module = entry.build(model_config, num_classes=spec.num_classes, mean=spec.mean, std=spec.std,
                       dropout_rate=float(model_config.dropout_rate),
                       dropout_sites=tuple(model_config.dropout_sites),
                       feature_transforms=tuple(feature_transforms))
  return ModelFns(module)


__all__ = ['Classifier', 'MODELS', 'ModelFns', 'ModelState', 'Params', 'build_model',
           'model_sites', 'validate']
