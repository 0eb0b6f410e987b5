"""The sanity checks of an honest robustness evaluation. They flag the usual signs of gradient
masking (Carlini et al. 2019; Croce & Hein 2020): ε = 0 must give clean accuracy, accuracy must not
rise with ε, PGD must not be weaker than FGSM, APGD not weaker than PGD (within sampling noise),
and a large ε must drive accuracy towards zero; each check is made only where its attacks and ε
values were run, and the results list the checks made.

The gradient-masking flags (`gradient_masking_flags`): Square breaks more than 1 % of the examples
(fraction of all examples evaluated) that every gradient attack before it left robust (AutoAttack
results only); PGD weaker than FGSM; the worst case at the large ε above chance.
"""
from __future__ import annotations

import math

from robust_jax.evaluation.robustness_settings import (AUTOATTACK_LABELS, attack_labels,
                                                       parse_epsilon)

__all__ = ['SQUARE_TOLERANCE', 'gradient_masking_flags', 'record_checks', 'sanity_checks']

SQUARE_TOLERANCE = 0.01  # Square may break at most this fraction of the examples evaluated


def record_checks(results, config) -> dict:
  """`results` with the sanity checks made, the warnings of those that failed and the
  gradient-masking flags added (keys 'sanity_checks', 'warnings', 'gradient_masking')."""
  results['sanity_checks'], results['warnings'] = sanity_checks(results, config)
  results['gradient_masking'] = gradient_masking_flags(results, config)
  return results


def sanity_checks(results, config) -> tuple[list[str], list[str]]:
  """(the checks made, warnings for those failed); tolerance = two binomial standard errors at
  p = 0.5. A check is made only where its attacks and ε values were run. With AutoAttack's Square
  in the results, Square may break at most `SQUARE_TOLERANCE` of the examples."""
  accuracy = results['accuracy']
  noise = _noise(results)
  labels = attack_labels(config)
  square = _square_breaks(results)
  ordered = sorted(accuracy, key=parse_epsilon)
  apgd = [labels[a] for a in ('apgd_ce', 'apgd_dlr') if a in config.attacks]
  pgd_vs_fgsm = 'pgd' in config.attacks and 'fgsm' in config.attacks
  apgd_vs_pgd = 'pgd' in config.attacks and bool(apgd)
  made = {'ε = 0 gives clean accuracy': any(parse_epsilon(e) == 0 for e in ordered),
          'accuracy does not rise with ε': len(ordered) > 1, 'PGD ≤ FGSM': pgd_vs_fgsm,
          'APGD ≤ PGD': apgd_vs_pgd, f'large ε={results["large_epsilon"]} → below chance': True,
          'Square breaks ≤ 1 % after the gradient attacks': bool(square)}
  warnings = []
  for epsilon in ordered:
    row = accuracy[epsilon]
    if parse_epsilon(epsilon) == 0 and any(v != row['clean'] for v in row.values()):
      warnings.append(f'ε={epsilon}: attacks at ε = 0 changed accuracy from clean '
                      f'{row["clean"]:.4f} (min {min(row.values()):.4f})')
    if pgd_vs_fgsm and _pgd_weaker_than_fgsm(row, labels, noise):
      warnings.append(f'ε={epsilon}: {labels["pgd"]} accuracy {row[labels["pgd"]]:.4f} exceeds '
                      f'FGSM {row["FGSM"]:.4f}: PGD weaker than FGSM suggests gradient masking')
    if apgd_vs_pgd and min(row[a] for a in apgd) > row[labels['pgd']] + noise:
      warnings.append(f'ε={epsilon}: APGD accuracy {min(row[a] for a in apgd):.4f} exceeds '
                      f'{labels["pgd"]} {row[labels["pgd"]]:.4f}: check the attack budget')
  warnings += _rising_warnings(accuracy, ordered, noise)
  for epsilon, fraction in square.items():
    if fraction > SQUARE_TOLERANCE:
      warnings.append(f'ε={epsilon}: Square broke {100 * fraction:.2f} % of the examples, all left '
                      'robust by every gradient attack before it (> 1 %): gradient masking')
  if _large_epsilon_above_chance(results):
    warnings.append(f'worst-case accuracy {results["large_epsilon_accuracy"]:.4f} at the large '
                    f'ε={results["large_epsilon"]} is above chance: the attacks may be masked')
  return [check for check, was_made in made.items() if was_made], warnings


def _rising_warnings(accuracy, ordered, noise) -> list[str]:
  """One warning per attack column (clean aside) whose accuracy rises beyond `noise` from one ε of
  `ordered` (ascending) to the next."""
  warnings = []
  for smaller, larger in zip(ordered, ordered[1:]):
    for name, value in accuracy[larger].items():
      if name != 'clean' and value > accuracy[smaller][name] + noise:
        warnings.append(f'{name}: accuracy rises from {accuracy[smaller][name]:.4f} at '
                        f'ε={smaller} to {value:.4f} at ε={larger}')
  return warnings


def _noise(results) -> float:
  """Two binomial standard errors at p = 0.5 for the number of examples evaluated."""
  return 2 * math.sqrt(0.25 / results['num_examples'])


def _pgd_weaker_than_fgsm(row, labels, noise) -> bool:
  return row[labels['pgd']] > row['FGSM'] + noise


def _large_epsilon_above_chance(results) -> bool:
  return results['large_epsilon_accuracy'] > 1.0 / results['num_classes']


def _square_breaks(results) -> dict[str, float]:
  """{ε: fraction of all examples that AutoAttack's Square broke after the attacks before it};
  empty where Square did not run after a gradient attack."""
  sequence = results.get('autoattack', {}).get('sequence', [])
  if AUTOATTACK_LABELS['square'] not in sequence[1:]:
    return {}
  before = sequence[sequence.index(AUTOATTACK_LABELS['square']) - 1]
  return {epsilon: row[before] - row[AUTOATTACK_LABELS['square']]
          for epsilon, row in results['accuracy'].items()}


def gradient_masking_flags(results, config) -> dict[str, bool]:
  """{flag: raised}, for the flags the attacks run allow (the sanity checks' tolerances):

  * 'square_breaks_gradient_robust': at some ε, Square broke more than 1 % of the examples that
    every gradient attack before it had left robust (AutoAttack results only);
  * 'fgsm_stronger_than_pgd': at some ε, PGD accuracy exceeds FGSM's beyond sampling noise;
  * 'large_epsilon_not_near_zero': the worst case at the large ε is above chance.
  """
  flags = {}
  square = _square_breaks(results)
  if square:
    flags['square_breaks_gradient_robust'] = max(square.values()) > SQUARE_TOLERANCE
  if 'pgd' in config.attacks and 'fgsm' in config.attacks:
    labels, noise = attack_labels(config), _noise(results)
    flags['fgsm_stronger_than_pgd'] = any(
        _pgd_weaker_than_fgsm(row, labels, noise) for row in results['accuracy'].values())
  flags['large_epsilon_not_near_zero'] = _large_epsilon_above_chance(results)
  return flags
