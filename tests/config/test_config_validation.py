"""Every bad config value is one clear line naming the key, the value and what is allowed."""
import math

import pytest

from robust_jax import models, objectives
from robust_jax.config import defaults as config_defaults, registry, schema as cs, validation
from robust_jax.config.schema import ConfigError

BAD_CONFIGS = [
    # (mutation, expected fragment of the one-line message)
    (lambda c: setattr(c.optimizer, 'name', 'sgdd'),
     "config.optimizer.name='sgdd': must be one of: sgd, adam, adamw"),
    (lambda c: setattr(c.optimizer, 'learning_rate', -0.1),
     'config.optimizer.learning_rate=-0.1: must be > 0'),
    (lambda c: setattr(c.model, 'name', 'resnet50'),
     "config.model.name='resnet50': unknown model; choose one of: cnn, gru, lstm, mlp, "
     'preact_resnet18, textcnn'),
    (lambda c: setattr(c.model, 'dropout_rate', 1.5),
     'config.model.dropout_rate=1.5: must be >= 0.0 and < 1.0'),
    (lambda c: setattr(c.model, 'dropout_sites', ('conv9',)),
     "config.model.dropout_sites=('conv9',): cnn has dropout sites features, classifier"),
    (lambda c: setattr(c.train, 'batch_size', 0), 'config.train.batch_size=0: must be >= 1'),
    (lambda c: setattr(c.model, 'widths', (8, 16, 32)),  # the CNN has two conv layers
     'config.model.widths=(8, 16, 32): a sequence of exactly 2 items, each must be >= 1'),
    (lambda c: setattr(c.optimizer, 'boundaries_epochs', (50.0, -1.0)),
     'config.optimizer.boundaries_epochs=(50.0, -1.0): a sequence, each must be > 0.0'),
    (lambda c: setattr(c.dataset, 'name', 'imagenet'),
     "config.dataset.name='imagenet': must be one of: mnist, fashion_mnist, cifar10, cifar100"),
    (lambda c: setattr(c.dataset, 'source', 'hdf5'),
     "config.dataset.source='hdf5': must be one of: idx, tfds, npz, csv"),
    (lambda c: setattr(c.targets, 'name', 'label_smoothing'),
     'config.targets.smoothing: missing required key'),
    (lambda c: c.loss.update({'lamda': 1.0}),
     'config.loss.lamda: unknown key; known keys: '),
    (lambda c: setattr(c.dataset, 'crop_padding', 40),
     'config.dataset.crop_padding=40: must be >= 0 and <= 16'),
    (lambda c: setattr(c.feature_mask, 'sites', ('stem',)),
     "config.feature_mask.sites=('stem',): cnn has feature sites conv1, conv2"),
    (lambda c: setattr(c, 'seed', -1), 'config.seed=-1: must be >= 0'),
    (lambda c: setattr(c.weight_perturbation, 'name', 'sam'),
     "config.weight_perturbation.name='sam': unknown weight perturbation; choose one of:"),
    (lambda c: setattr(c.optimizer, 'learning_rate', math.nan),
     'config.optimizer.learning_rate=nan: must be > 0.0 (finite)'),
    (lambda c: setattr(c.optimizer, 'learning_rate', math.inf),
     'config.optimizer.learning_rate=inf: must be > 0.0 (finite)'),
    (lambda c: setattr(c.model, 'dropout_rate', -math.inf),
     'config.model.dropout_rate=-inf: must be >= 0.0 and < 1.0 (finite)'),
    (lambda c: setattr(c.optimizer, 'boundaries_epochs', (50.0, math.nan)),
     'config.optimizer.boundaries_epochs=(50.0, nan): a sequence, each must be > 0.0 (finite)'),
]


def test_default_config_is_valid():
  validation.validate_config(config_defaults.default_config())


@pytest.mark.parametrize('mutate,expected', BAD_CONFIGS)
def test_bad_config_gives_one_clear_line(mutate, expected):
  config = config_defaults.default_config()
  mutate(config)
  with pytest.raises(ConfigError) as error:
    validation.validate_config(config)
  message = str(error.value)
  assert expected in message
  assert '\n' not in message


def test_unknown_top_level_section():
  config = config_defaults.default_config()
  config.optimiser = dict(name='adam')
  with pytest.raises(ConfigError, match=r'^config.optimiser: unknown section'):
    validation.validate_config(config)


def test_bad_values_are_all_distinct():
  assert len({expected for _, expected in BAD_CONFIGS}) == len(BAD_CONFIGS) >= 10


def _every_schema():
  """(section, schema) of every plain section and every registered component."""
  sections = list(validation.PLAIN_SECTIONS.items())
  for section, components in {'model': models.MODELS, **objectives.SECTIONS}.items():
    sections += [(f'{section}:{name}', components.lookup(section, name).schema)
                 for name in components.names()]
  return sections


def test_every_real_valued_key_rejects_nan_and_inf():
  real_fields = [(f'{section}.{key}', field) for section, schema in _every_schema()
                 for key, field in schema.items() if float in field.types]
  assert len(real_fields) >= 20  # learning rates, epsilons, probabilities, ...
  for key, field in real_fields:
    for value in (math.nan, math.inf, -math.inf):
      with pytest.raises(ConfigError, match='finite'):
        field.check(key, value)
  assert cs.real().allowed == 'must be a finite number'


def test_registration_needs_a_default_for_every_schema_key():
  components = registry.Registry('test component')
  with pytest.raises(ValueError, match=r"test component 'x': defaults must give exactly the "
                     r"schema keys \['a', 'b'\], got \['a'\]"):
    components.register('x', {'a': cs.integer(), 'b': cs.integer()}, defaults={'a': 1})
