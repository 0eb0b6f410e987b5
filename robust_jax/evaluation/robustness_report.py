"""Writing a robustness evaluation's results for people: the sanity report's lines to print, one
line on what was run (`describe`), the markdown table (accuracy (%) per ε and attack, AutoAttack's
seconds per attack, the gradient-masking flags) and the plot of accuracy against ε.
"""
from __future__ import annotations

from robust_jax.evaluation.robustness_settings import WORST_CASE, parse_epsilon

__all__ = ['describe', 'gradient_masking_report', 'markdown_table', 'plot', 'sanity_report']


def sanity_report(results) -> list[str]:
  """The lines to print: one per failed check, or one naming every check made when all passed."""
  if results['warnings']:
    return [f'WARNING (sanity check failed): {warning}' for warning in results['warnings']]
  checks = results['sanity_checks']
  return [f'All {len(checks)} sanity checks made passed: {"; ".join(checks)}.']


def describe(results) -> str:
  """One line on what was run: examples, checkpoint step, seed and each attack's settings."""
  shared = ('attack', 'norm', 'model_mode')  # the same for every attack
  attacks_text = '; '.join(
      f'{label}: ' + ', '.join(f'{k}={v}' for k, v in settings.items() if k not in shared)
      for label, settings in results['attacks'].items())
  first = next(iter(results['attacks'].values()))
  step = results['checkpoint_step']
  at_step = '' if step is None else f' at checkpoint step {step}'
  return (f'{results["num_examples"]} test examples{at_step}, seed {results["seed"]}, '
          f'{first["norm"]}, model in {first["model_mode"]} mode; {attacks_text}')


def _markdown_rows(corner: str, rows: dict[str, dict[str, float]], cell) -> list[str]:
  """The lines of a markdown table with one row per ε: `corner` heads the ε column, the columns
  are the first row's keys, and `cell(value)` writes each value."""
  columns = list(next(iter(rows.values())))
  lines = [f'| {corner} | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
  return lines + [f'| {epsilon} | ' + ' | '.join(cell(row[c]) for c in columns) + ' |'
                  for epsilon, row in rows.items()]


def markdown_table(results) -> str:
  """The accuracy (%) table with a caption (`describe`); for AutoAttack results also the seconds
  per attack; and the gradient-masking flags where the results hold them."""
  lines = _markdown_rows(f'ε ({results["norm"]})', results['accuracy'],
                         lambda value: f'{100 * value:.2f}')
  text = '\n'.join(lines) + f'\n\nAccuracy (%) on {describe(results)}.'
  if 'autoattack' in results:
    sequence = results['autoattack']['sequence']
    text += (f' {sequence[0]} to {sequence[-1]}: robust accuracy after each attack of AutoAttack '
             f'({results["autoattack"]["version"]}), each run on the examples still robust.')
  if 'seconds' in results:
    lines = _markdown_rows('ε', results['seconds'], lambda value: f'{value:.1f}')
    text += '\n\nSeconds per attack (wall time, compilation included):\n\n' + '\n'.join(lines)
  if 'gradient_masking' in results:
    text += '\n\n' + gradient_masking_report(results)
  return text


def gradient_masking_report(results) -> str:
  """One line: each gradient-masking flag checked, 'RAISED' or 'no'."""
  flags = results['gradient_masking']
  return 'Gradient-masking flags: ' + '; '.join(
      f'{name}: {"RAISED" if raised else "no"}' for name, raised in flags.items()) + '.'


def plot(results, path: str, title: str = '') -> None:
  """Accuracy (%) against ε, one line per column (the worst case thick and black), saved to `path`
  with `describe(results)` beneath it and in the PNG's 'Description'."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  accuracy = results['accuracy']
  epsilons = sorted(accuracy, key=parse_epsilon)
  figure, axes = plt.subplots(figsize=(6, 4))
  for name in accuracy[epsilons[0]]:
    style = dict(linewidth=2.5, color='black') if name == WORST_CASE else {}
    axes.plot([parse_epsilon(e) for e in epsilons], [100 * accuracy[e][name] for e in epsilons],
              marker='o', label=name, **style)
  axes.set_xticks([parse_epsilon(e) for e in epsilons], epsilons)
  axes.set_xlabel(f'ε ({results["norm"]})')
  axes.set_ylabel('accuracy (%)')
  axes.set_ylim(0, 100)
  axes.grid(alpha=0.3)
  axes.legend()
  axes.set_title(title or f'{results["num_examples"]} test examples')
  description = describe(results)
  figure.text(0.01, 0.01, description, fontsize=6, wrap=True, va='bottom')
  figure.tight_layout(rect=(0, 0.12, 1, 1))
  figure.savefig(path, dpi=120, metadata={'Description': description})
  plt.close(figure)
