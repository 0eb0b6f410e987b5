"""Tests that check every method at once, so belong to no one tests/methods/test_<method>.py: each
registered component's config section, pinned (defaults, accepted ranges, sweepable keys), and the
keyword defaults of the methods' public functions and of the train step.

The shipped configs are built from the registered defaults (`config_defaults.registered`) and the
checks from the registered schemas, so a config test cannot see a default or a bound that moved:
both sides move together. The table below is the one place that says what they must be; a change
to a default or a range is made here on purpose. (It kills the mutants of every DEFAULTS, schema
bound and sweepable list: mutation.toml runs it for mutants of code run at import.)
"""
import difflib
import importlib
import inspect

from robust_jax import objectives
from tests import helpers

REGISTERED = """\
targets class_similarity
  matrix_path = '': any string
  alpha = 0.1: must be >= 0.0 and < 1.0 (finite)
targets label_smoothing
  smoothing [sweepable] = 0.1: must be >= 0.0 and < 1.0 (finite)
targets one_hot
loss cross_entropy
loss mdl
  num_subnetworks = 2: must be >= 2 (orthogonality compares K >= 2 sub-networks)
  orthogonality_weight [sweepable] = 1.0: must be >= 0.0 (finite)
loss trades
  beta [sweepable] = 6.0: must be > 0.0 (finite)
  epsilon [sweepable] = 0.1: must be > 0.0 (finite)
  step_size [sweepable] = 0.025: must be > 0.0 (finite)
  num_steps = 10: must be >= 1
  norm = 'linf': must be one of: linf, l2
  model_mode = 'eval': must be one of: eval, train
adversary embedding_fgm
  epsilon = 5.0: must be > 0.0 (finite)
  include_clean = True: must be True or False
adversary embedding_pgd
  epsilon = 5.0: must be > 0.0 (finite)
  include_clean = True: must be True or False
  step_size = 2.0: must be > 0.0 (finite)
  num_steps = 3: must be >= 1
adversary fgsm
  epsilon [sweepable] = 0.1: must be > 0.0 (finite)
  step_size [sweepable] = 0.125: must be > 0.0 (finite)
  norm = 'linf': must be one of: linf, l2
  random_start = True: must be True or False
  model_mode = 'eval': must be one of: eval, train
adversary none
adversary pgd
  epsilon [sweepable] = 0.1: must be > 0.0 (finite)
  step_size [sweepable] = 0.025: must be > 0.0 (finite)
  norm = 'linf': must be one of: linf, l2
  random_start = True: must be True or False
  model_mode = 'eval': must be one of: eval, train
  num_steps = 10: must be >= 1
weight_perturbation amp
  epsilon [sweepable] = 0.1: must be > 0.0 (finite)
  inner_lr [sweepable] = 1.0: must be > 0.0 (finite)
  inner_steps = 1: must be >= 1
  ball = 'per_tensor': must be one of: per_tensor, global
  inner_grad_clip = 0.0: must be >= 0.0 (finite)
  update_bn_on_inner_passes = True: must be True or False
weight_perturbation dropattack
  attack_probability = 0.5: must be > 0.0 and <= 1.0 (finite)
  num_steps = 1: must be >= 1
  attack_input = True: must be True or False
  input_epsilon [sweepable] = 1.0: must be >= 0.0 (finite)
  input_norm = 'per_example': must be one of: batch, per_example
  attack_weights = True: must be True or False
  weight_paths = ('Conv_0/kernel',): a sequence, each any string; duplicates rejected, one more
    accepted
  weight_epsilon [sweepable] = 0.05: must be >= 0.0 (finite)
  weight_epsilon_relative = True: must be True or False
weight_perturbation dropattack_embedding
  attack_probability = 0.7: must be > 0.0 and <= 1.0 (finite)
  num_steps = 1: must be >= 1
  attack_input = True: must be True or False
  input_epsilon [sweepable] = 5.0: must be >= 0.0 (finite)
  attack_weights = True: must be True or False
  weight_paths = ('forward_0/input_kernel',): a sequence, each any string; duplicates rejected, one
    more accepted
  weight_epsilon [sweepable] = 5.0: must be >= 0.0 (finite)
  weight_epsilon_relative = False: must be True or False
  input_paths = ('embedding/embedding',): a sequence of at least 1 items, each any string;
    duplicates rejected, one more accepted
weight_perturbation none
feature_mask lfm
  sites = ('conv1',): a sequence of at least 1 items, each any string; duplicates rejected, one
    more accepted
  probability = 0.15: must be > 0.0 and <= 1.0 (finite)
  channel_fraction = 0.5: must be > 0.0 and <= 1.0 (finite)
  area_range = (0.02, 0.4): a sequence of exactly 2 items, each must be > 0.0 and <= 1.0 (finite);
    duplicates accepted, reversed rejected, one more rejected, one fewer rejected
  aspect_range = (0.3, 3.3333333333333335): a sequence of exactly 2 items, each must be > 0.0
    (finite); duplicates accepted, reversed rejected, one more rejected, one fewer rejected
  fill = 'uniform': must be one of: uniform, zero
  mode = 'paper': must be one of: paper, official_code
  official_code_samples = 8: must be >= 1
feature_mask none
  sites = (): a sequence, each any string; duplicates accepted, one more accepted
"""


def describe_registered() -> list[str]:
  """Each registered component and each key of its section: default, sweepable, accepted range
  (`helpers.describe_field`)."""
  lines = []
  for section, registry in objectives.SECTIONS.items():
    for name in registry.names():
      entry = registry.lookup('', name)
      lines.append(f'{section} {name}')
      for key, field in entry.schema.items():
        sweepable = ' [sweepable]' if key in entry.sweepable else ''
        lines += helpers.describe_field(key + sweepable, field, entry.defaults[key])
  return lines


def test_every_registered_section_has_the_pinned_defaults_ranges_and_sweepable_keys():
  actual = describe_registered()
  expected = REGISTERED.splitlines()
  assert actual == expected, '\n'.join(difflib.unified_diff(expected, actual, 'pinned', 'code',
                                                            lineterm=''))


_ASPECT = (0.3, 1 / 0.3)
KEYWORD_DEFAULTS = {
    'methods.amp.perturbation': dict(ball='per_tensor', inner_grad_clip=0.0, has_aux=False,
                                     key=None, state=None),
    'methods.dropattack.gradient': dict(
        input_norm='per_example', weight_paths=(), weight_epsilon=0.0,
        weight_epsilon_relative=False, attack_input=True, attack_weights=True, has_aux=False,
        state=None, input_paths=()),
    'methods.lfm.local_feature_mask': dict(area_range=(0.02, 0.4), aspect_range=_ASPECT,
                                           fill='uniform'),
    'methods.lfm.mask': dict(area_range=(0.02, 0.4), aspect_range=_ASPECT, fill='uniform',
                             mode='paper', official_code_samples=8),
    'methods.lfm.official_code_boxes': dict(area_range=(0.02, 0.4), aspect_range=_ASPECT,
                                            tries=100),
    'methods.lfm.official_code_mask': dict(area_range=(0.02, 0.4), aspect_range=_ASPECT,
                                           fill='uniform', num_samples=8),
    'methods.lfm.official_code_stripes': dict(area_range=(0.02, 0.4), aspect_range=_ASPECT),
    'methods.mdl.loss': dict(targets=None),
    'methods.mdl.terms': dict(targets=None),
    'methods.trades.adversarial_examples': dict(norm='linf'),
    'methods.trades.loss': dict(norm='linf', targets=None),
    'training.step.make_train_step': dict(log_grad_norm=False),
    'training.step.step_function': dict(log_grad_norm=False),
}


def test_public_functions_have_the_pinned_keyword_defaults():
  """Inspected, not called: no other test sees a keyword default that moved, since each passes
  its own values."""
  for name, expected in KEYWORD_DEFAULTS.items():
    module, function = name.rsplit('.', 1)
    parameters = inspect.signature(
        getattr(importlib.import_module(f'robust_jax.{module}'), function)).parameters
    actual = {key: p.default for key, p in parameters.items()
              if p.default is not inspect.Parameter.empty}
    assert actual == expected, name
