"""What a robustness evaluation runs, as its config section and its results name it: the ε values
(text such as '8/255' or '0.1', parsed exactly and reported as given), the section's schema
(`SCHEMA`), the attacks (`ATTACKS`), their display labels and the settings the results record.
"""
from __future__ import annotations

import fractions

from robust_jax import arguments, attacks
from robust_jax.config import schema as cs
from robust_jax.methods.adversarial_training import MODEL_MODES

__all__ = ['ATTACKS', 'AUTOATTACK_LABELS', 'SCHEMA', 'WORST_CASE', 'attack_labels',
           'attack_settings', 'parse_epsilon']

ATTACKS = ('fgsm', 'pgd', 'apgd_ce', 'apgd_dlr')
WORST_CASE = 'worst case'
AUTOATTACK_LABELS = {'apgd-ce': 'APGD-CE', 'apgd-dlr': 'APGD-DLR', 'apgd-t': 'APGD-T',
                     'fab': 'FAB', 'fab-t': 'FAB-T', 'square': 'Square'}


def parse_epsilon(text: str) -> float:
  """'8/255' -> 8/255; '0.1' -> 0.1. Raises ValueError on anything else, and on a number no float
  holds ('1e400', which would be inf; '1e-400', which would be 0 although it is not)."""
  problem = _epsilon_problem(text)
  if problem:
    raise ValueError(f'{text!r}: {problem}')
  return float(fractions.Fraction(text))


def _epsilon_problem(text) -> str:
  """'' when `text` is an ε: a finite number >= 0 as text that float32 holds; else why not."""
  if not isinstance(text, str):
    return "must be text, e.g. '0.1' or '8/255' (each ε is reported as written)"
  try:
    value = fractions.Fraction(text)
  except (ValueError, ZeroDivisionError):
    return "must be a finite number as text, e.g. '8/255' or '0.1'"
  if value < 0:
    return 'must be >= 0'
  try:
    number = float(value)
  except OverflowError:
    return 'must be a finite number (a float would be inf)'
  if value and not number:
    return 'must be 0 or a number a float holds (this one would be 0.0)'
  return arguments.float32_problem(number)  # the attacks compute ε in float32


def _epsilons_problem(texts) -> str:
  """'' when `texts` is a non-empty sequence of distinct ε values; else the first problem."""
  if not texts:
    return "must hold at least one ε as text, e.g. ('0', '8/255')"
  seen = {}
  for text in texts:
    problem = _epsilon_problem(text)
    if problem:
      return f'{text!r} {problem}'
    value = fractions.Fraction(text)
    if value in seen:
      return f'{text!r} repeats the ε of {seen[value]!r}; give each ε once'
    seen[value] = text
  return ''


SCHEMA: cs.Schema = {
    'norm': cs.one_of(*attacks.NORMS),
    # finite numbers >= 0 as text, each once; reported as given
    'epsilons': cs.Field((tuple, list), lambda v: not _epsilons_problem(v),
                         "a sequence of ε as text, each a finite number >= 0, e.g. ('0', '8/255')",
                         _epsilons_problem),
    'attacks': cs.sequence_of(cs.one_of(*ATTACKS), min_length=1, unique=True),
    'pgd_steps': cs.integer(1),
    'pgd_relative_step_size': cs.positive_real(),  # PGD step = this × ε
    'pgd_restarts': cs.integer(1),
    'apgd_steps': cs.integer(1),
    'apgd_restarts': cs.integer(1),
    'num_examples': cs.integer(0),  # 0 = the full test set; else the first N test examples
    'batch_size': cs.integer(1),
    'model_mode': cs.one_of(*MODEL_MODES),
    # > 0: the sanity check that a large ε drives accuracy to chance
    'large_epsilon': cs.Field(
        (str,), lambda v: not _epsilon_problem(v) and fractions.Fraction(v) > 0,
        "must be a number > 0 as text, e.g. '0.5'",
        lambda v: _epsilon_problem(v) or 'must be > 0 (the sanity check that a large ε drives '
        'accuracy to chance needs an ε > 0)'),
    'seed': cs.seed(),
}


def attack_labels(config) -> dict[str, str]:
  """Display names, e.g. {'pgd': 'PGD-20×5', 'apgd_ce': 'APGD-CE-100'}."""
  restarts = lambda n: f'×{n}' if n > 1 else ''
  return {'fgsm': 'FGSM', 'pgd': f'PGD-{config.pgd_steps}{restarts(config.pgd_restarts)}',
          'apgd_ce': f'APGD-CE-{config.apgd_steps}{restarts(config.apgd_restarts)}',
          'apgd_dlr': f'APGD-DLR-{config.apgd_steps}{restarts(config.apgd_restarts)}'}


def attack_settings(config) -> dict[str, dict]:
  """{display name: settings} of each attack in `config.attacks`, seed included where random.

  Example b of evaluation batch i starts from keys split from fold_in(key(seed), i).
  """
  settings = {
      'fgsm': dict(attack='fgsm', step_size='ε', random_start=False),
      'pgd': dict(attack='pgd', loss='ce', num_steps=config.pgd_steps,
                  step_size=f'{config.pgd_relative_step_size:g} × ε', restarts=config.pgd_restarts,
                  random_start=True, seed=config.seed),
      'apgd_ce': dict(attack='apgd', loss='ce', num_steps=config.apgd_steps,
                      restarts=config.apgd_restarts, seed=config.seed),
      'apgd_dlr': dict(attack='apgd', loss='dlr', num_steps=config.apgd_steps,
                       restarts=config.apgd_restarts, seed=config.seed),
  }
  labels = attack_labels(config)
  return {labels[name]: dict(settings[name], norm=config.norm, model_mode=config.model_mode)
          for name in config.attacks}
