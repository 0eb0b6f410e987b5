"""Model registry: `config.model.name` -> a Flax `Classifier`, with each model's own options.

A model's config defaults are its module's own field defaults (`_defaults`); an entry writes a
value only where the config's default deliberately differs from the module's, and says why.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from robust_jax.config import schema as cs
from robust_jax.data.specs import DatasetSpec
from robust_jax.models import preact_resnet
from robust_jax.models.base import Classifier, FeatureTransform
from robust_jax.models.cnn import CNN
from robust_jax.models.mlp import MLP
from robust_jax.models.model_fns import ModelFns, ModelState, Params
from robust_jax.models.preact_resnet import PreActResNet18
from robust_jax.models.text_models import (PerturbedTokens, RecurrentClassifier, TextClassifier,
                                           TextCNN)
from robust_jax.config.registry import Registry
from robust_jax.models.vgg import VGG16
from robust_jax.models.wide_resnet import WideResNet

MODELS: Registry = Registry('model')
# `config.train.compute_dtype`: what convolutions and hidden matmuls compute in (`base.Classifier`).
# No float16: its range needs loss scaling, which the train step does not do.
COMPUTE_DTYPES = ('float32', 'bfloat16')

_COMMON: cs.Schema = {
    # > 0 only with a site to drop at (`check_dropout`)
    'dropout_rate': cs.real(0.0, 1.0, exclusive_maximum=True,
                            note='a rate of 1 drops every unit: the model trains at chance'),
    'dropout_sites': cs.sequence_of(cs.text(), unique=True),
}


def _defaults(module: type[Classifier], *fields: str, **renamed: str) -> dict[str, Any]:
  """The defaults of `module`'s dataclass fields: `dropout_rate`, `dropout_sites` and each of
  `fields` under its own name, each ``config_key='field_name'`` of `renamed` under the key."""
  defaults = {field.name: field.default for field in dataclasses.fields(module)}
  keys = {'dropout_rate': 'dropout_rate', 'dropout_sites': 'dropout_sites',
          **{field: field for field in fields}, **renamed}
  return {key: defaults[field] for key, field in keys.items()}


@MODELS.register('mlp', {**_COMMON, 'hidden_sizes': cs.sequence_of(cs.integer(1), min_length=1)},
                 defaults=_defaults(MLP, 'hidden_sizes'))
def _mlp(config, **common):
  return MLP(hidden_sizes=tuple(config.hidden_sizes), **common)


@MODELS.register('cnn', {**_COMMON,
                         'widths': cs.sequence_of(cs.integer(1), min_length=2, max_length=2),
                         'kernel_size': cs.integer(1, 11), 'hidden_size': cs.integer(1),
                         'batch_norm': cs.boolean()},
                 # The module's defaults are the papers' LeNet-like CNN
                 # (`config_defaults.cnn_model()`); the offline default config's smaller kernel and
                 # hidden layer train about 1.6x faster on CPU.
                 defaults={**_defaults(CNN, 'widths', batch_norm='use_batch_norm'),
                           'kernel_size': 3, 'hidden_size': 256})
def _cnn(config, **common):
  return CNN(widths=tuple(config.widths), kernel_size=config.kernel_size,
             hidden_size=config.hidden_size, use_batch_norm=config.batch_norm, **common)


@MODELS.register('vgg16', _COMMON, defaults=_defaults(VGG16))
def _vgg16(config, **common):
  del config
  return VGG16(**common)


@MODELS.register('preact_resnet18',
                 {**_COMMON, 'shortcut_input': cs.one_of(*preact_resnet.SHORTCUT_INPUTS)},
                 defaults=_defaults(PreActResNet18, 'shortcut_input'))
def _preact_resnet18(config, **common):
  return PreActResNet18(shortcut_input=config.shortcut_input, **common)


@MODELS.register('wrn28_10', _COMMON, defaults=_defaults(WideResNet))
def _wrn28_10(config, **common):
  del config
  return WideResNet(depth=28, widen_factor=10, **common)


@MODELS.register('wrn34_10', _COMMON, defaults=_defaults(WideResNet))
def _wrn34_10(config, **common):
  del config
  return WideResNet(depth=34, widen_factor=10, **common)


_TEXT: cs.Schema = {**_COMMON, 'embedding_size': cs.integer(1)}
_RECURRENT: cs.Schema = {**_TEXT, 'hidden_size': cs.integer(1), 'num_layers': cs.integer(1),
                         'bidirectional': cs.boolean()}


def _recurrent(cell: str):
  """The registry's builder of a `RecurrentClassifier` with `cell` ('lstm' or 'gru')."""
  def build(config, **common):
    return RecurrentClassifier(cell=cell, embedding_size=config.embedding_size,
                               hidden_size=config.hidden_size, num_layers=config.num_layers,
                               bidirectional=config.bidirectional, **common)
  return build


_RECURRENT_DEFAULTS = _defaults(RecurrentClassifier, 'embedding_size', 'hidden_size',
                               'num_layers', 'bidirectional')
# DropAttack's IMDB model (papers.md 2.3): the module's defaults, embedding 300, one forward LSTM
# layer of 300.
MODELS.register('lstm', _RECURRENT, defaults=_RECURRENT_DEFAULTS)(_recurrent('lstm'))
# DropAttack's AG News model: two bidirectional GRU layers.
MODELS.register('gru', _RECURRENT, defaults={**_RECURRENT_DEFAULTS, 'num_layers': 2,
                                             'bidirectional': True})(_recurrent('gru'))


# Kim (2014): the module's defaults, widths 3, 4, 5 × 100 filters; and dropout 0.5 before the
# classifier.
@MODELS.register('textcnn', {**_TEXT, 'filter_widths': cs.sequence_of(cs.integer(1), min_length=1,
                                                                       unique=True),
                             'num_filters': cs.integer(1)},
                 defaults={**_defaults(TextCNN, 'embedding_size', 'filter_widths', 'num_filters'),
                           'dropout_rate': 0.5, 'dropout_sites': ('features',)})
def _textcnn(config, **common):
  return TextCNN(embedding_size=config.embedding_size, filter_widths=tuple(config.filter_widths),
                 num_filters=config.num_filters, **common)


def is_text_model(model_config) -> bool:
  """Whether the model `model_config` names reads token ids (a `TextClassifier`)."""
  return isinstance(MODELS.lookup('config.model.name', model_config.name).build(model_config),
                    TextClassifier)


def check_dataset(model_config, spec: DatasetSpec) -> None:
  """Raises ConfigError (one line) when the model is for text and the data are images, or the
  reverse."""
  modality = 'text' if is_text_model(model_config) else 'image'
  if modality != spec.modality:
    raise cs.ConfigError(f'config.model.name={model_config.name!r}: a model for {modality} data, '
                         f'but config.dataset.name={spec.name!r} is {spec.modality} data')


def model_sites(model_config) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(dropout sites, feature-hook sites) of the model `model_config` names."""
  module = MODELS.lookup('config.model.name', model_config.name).build(model_config)
  return type(module).DROPOUT_SITES, type(module).FEATURE_SITES


def check_dropout(model_config) -> None:
  """Raises ConfigError when a dropout rate is set but no site would apply it."""
  if model_config.dropout_rate > 0 and not model_config.dropout_sites:
    sites, _ = model_sites(model_config)
    raise cs.ConfigError(
        f'config.model.dropout_rate={model_config.dropout_rate}: drops nothing with '
        f'config.model.dropout_sites=(); {model_config.name} has dropout sites '
        f'{", ".join(sites) or "none"} (or use rate 0.0)')


def validate(model_config) -> None:
  """Checks the model section, including that dropout sites exist in the chosen model."""
  MODELS.validate('config.model', model_config)
  sites, _ = model_sites(model_config)
  for site in model_config.dropout_sites:
    if site not in sites:
      raise cs.ConfigError(f'config.model.dropout_sites={tuple(model_config.dropout_sites)!r}: '
                           f'{model_config.name} has dropout sites {", ".join(sites) or "none"}')


def build_model(model_config, spec: DatasetSpec,
                feature_transforms: tuple[tuple[str, FeatureTransform], ...] = (),
                compute_dtype: str = 'float32') -> ModelFns:
  """The model of `model_config` for `spec`'s data; `compute_dtype` (one of COMPUTE_DTYPES,
  `config.train.compute_dtype`) is what its convolutions and hidden matmuls compute in."""
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f'compute_dtype={compute_dtype!r}: must be one of '
                     f'{", ".join(map(repr, COMPUTE_DTYPES))}')
  check_dataset(model_config, spec)
  entry = MODELS.lookup('config.model.name', model_config.name)
  module = entry.build(model_config, num_classes=spec.num_classes, mean=spec.mean, std=spec.std,
                       dropout_rate=float(model_config.dropout_rate),
                       dropout_sites=tuple(model_config.dropout_sites),
                       feature_transforms=tuple(feature_transforms),
                       compute_dtype=jnp.dtype(compute_dtype))
  if isinstance(module, TextClassifier):
    module = module.clone(vocab_size=spec.vocab_size)
  return ModelFns(module)


__all__ = ['COMPUTE_DTYPES', 'Classifier', 'MODELS', 'ModelFns', 'ModelState', 'Params',
           'PerturbedTokens', 'TextClassifier', 'build_model', 'check_dataset', 'check_dropout',
           'is_text_model', 'model_sites', 'validate']
