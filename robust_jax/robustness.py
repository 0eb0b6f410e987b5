"""Robustness evaluation: clean, FGSM, PGD-k (restarts), APGD-CE and APGD-DLR accuracy at each ε, and
the robust accuracy = per-example worst case over all of them.

ε values are given as text ('8/255', '0.1') and reported exactly as given. Sanity checks flag the
usual signs of gradient masking (Carlini et al. 2019; Croce & Hein 2020): ε = 0 must give clean
accuracy, accuracy must not rise with ε, PGD must not be weaker than FGSM, APGD not weaker than
PGD (within sampling noise), and a large ε must drive accuracy towards zero.
"""
from __future__ import annotations

import fractions
import math

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from robust_jax import attacks
from robust_jax import config_schema as cs
from robust_jax.data import pipeline
from robust_jax.methods.adversarial_training import MODEL_MODES

ATTACKS = ('fgsm', 'pgd', 'apgd_ce', 'apgd_dlr')
WORST_CASE = 'worst case'


def parse_epsilon(text: str) -> float:
  """'8/255' -> 8/255; '0.1' -> 0.1. Raises ValueError on anything else."""
  return float(fractions.Fraction(text))


def _is_epsilon(text) -> bool:
  try:
    return parse_epsilon(text) >= 0
  except (ValueError, ZeroDivisionError):
    return False


SCHEMA: cs.Schema = {
    'norm': cs.one_of(*attacks.NORMS),
    'epsilons': cs.sequence_of(cs.Field((str,), _is_epsilon, "a number as text, e.g. '8/255'"),
                               min_length=1),
    'attacks': cs.sequence_of(cs.one_of(*ATTACKS), min_length=1),
    'pgd_steps': cs.integer(1),
    'pgd_relative_step_size': cs.positive_real(),  # PGD step = this × ε
    'pgd_restarts': cs.integer(1),
    'apgd_steps': cs.integer(1),
    'apgd_restarts': cs.integer(1),
    'num_examples': cs.integer(0),  # 0 = the full test set; else the first N test examples
    'batch_size': cs.integer(1),
    'model_mode': cs.one_of(*MODEL_MODES),
    'large_epsilon': cs.Field((str,), _is_epsilon, "a number as text, e.g. '0.5'"),
    'seed': cs.integer(0),
}


def attack_labels(config) -> dict[str, str]:
  """Display names, e.g. {'pgd': 'PGD-20×5', 'apgd_ce': 'APGD-CE-100'}."""
  restarts = lambda n: f'×{n}' if n > 1 else ''
  return {'fgsm': 'FGSM', 'pgd': f'PGD-{config.pgd_steps}{restarts(config.pgd_restarts)}',
          'apgd_ce': f'APGD-CE-{config.apgd_steps}{restarts(config.apgd_restarts)}',
          'apgd_dlr': f'APGD-DLR-{config.apgd_steps}{restarts(config.apgd_restarts)}'}


def make_batch_fn(model, config):
  """Jitted `fn(params, model_state, images_uint8, labels, key, epsilon) -> {name: correct (B,)}`.

  ε is a traced argument, so one compilation serves every ε.
  """
  def correct_under_attacks(params, model_state, images, labels, key, epsilon):
    x = pipeline.to_unit_float(images)
    logits_fn = lambda x: model.apply(params, model_state, x, train=config.model_mode == 'train',
                                      key=key)[0]
    is_correct = lambda x_adv: jnp.argmax(logits_fn(x_adv), -1) == labels
    keys = dict(zip(ATTACKS, jax.random.split(key, len(ATTACKS))))
    run = {
        'fgsm': lambda: attacks.fgsm(logits_fn, x, labels, epsilon=epsilon, norm=config.norm),
        'pgd': lambda: attacks.pgd(
            logits_fn, x, labels, keys['pgd'], epsilon=epsilon,
            step_size=config.pgd_relative_step_size * epsilon, num_steps=config.pgd_steps,
            norm=config.norm, random_start=True, restarts=config.pgd_restarts),
        'apgd_ce': lambda: attacks.apgd(logits_fn, x, labels, keys['apgd_ce'], epsilon=epsilon,
                                        num_steps=config.apgd_steps, norm=config.norm, loss='ce',
                                        restarts=config.apgd_restarts),
        'apgd_dlr': lambda: attacks.apgd(logits_fn, x, labels, keys['apgd_dlr'], epsilon=epsilon,
                                         num_steps=config.apgd_steps, norm=config.norm,
                                         loss='dlr', restarts=config.apgd_restarts),
    }
    return {'clean': is_correct(x), **{name: is_correct(run[name]()) for name in config.attacks}}

  return jax.jit(correct_under_attacks)


def evaluate(model, params, model_state, test_split, config, mesh) -> dict:
  """Accuracy per ε (as given) and attack, the worst case, and the sanity-check warnings."""
  if config.num_examples:
    test_split = type(test_split)(test_split.images[:config.num_examples],
                                  test_split.labels[:config.num_examples])
  batches = pipeline.make_eval_batches(test_split, config.batch_size, mesh)
  batch_fn = make_batch_fn(model, config)
  labels = attack_labels(config)
  num_batches = batches['label'].shape[0]
  key = jax.random.key(config.seed)
  accuracy = {}
  progress = tqdm.tqdm(total=len(config.epsilons) * num_batches, unit='batch', dynamic_ncols=True)
  for epsilon_text in config.epsilons:
    epsilon = jnp.float32(parse_epsilon(epsilon_text))
    totals = {}
    for index in range(num_batches):
      correct = batch_fn(params, model_state, batches['image'][index], batches['label'][index],
                         jax.random.fold_in(key, index), epsilon)
      mask = np.asarray(batches['mask'][index]).astype(bool)
      correct = {name: np.asarray(c)[mask] for name, c in correct.items()}
      correct[WORST_CASE] = np.logical_and.reduce(list(correct.values()))
      for name, c in correct.items():
        totals[name] = totals.get(name, 0) + int(c.sum())
      progress.update()
      progress.set_postfix(epsilon=epsilon_text)
    columns = ['clean', *config.attacks, WORST_CASE]
    accuracy[epsilon_text] = {labels.get(name, name): totals[name] / len(test_split)
                              for name in columns}
  progress.close()
  large = parse_epsilon(config.large_epsilon)
  large_correct = batch_fn(params, model_state, batches['image'][0], batches['label'][0], key,
                           jnp.float32(large))
  mask = np.asarray(batches['mask'][0]).astype(bool)
  large_accuracy = float(np.logical_and.reduce(
      [np.asarray(c)[mask] for c in large_correct.values()]).mean())
  results = {'accuracy': accuracy, 'num_examples': len(test_split), 'norm': config.norm,
             'num_classes': model.module.num_classes,
             'large_epsilon': config.large_epsilon, 'large_epsilon_accuracy': large_accuracy,
             'attacks': [labels[a] for a in config.attacks]}
  results['warnings'] = sanity_warnings(results, config)
  return results


def sanity_warnings(results, config) -> list[str]:
  """Warnings for failed sanity checks; tolerance = two binomial standard errors at p = 0.5."""
  accuracy, n = results['accuracy'], results['num_examples']
  noise = 2 * math.sqrt(0.25 / n)
  labels = attack_labels(config)
  warnings = []
  ordered = sorted(accuracy, key=parse_epsilon)
  for epsilon in ordered:
    row = accuracy[epsilon]
    if parse_epsilon(epsilon) == 0 and any(v != row['clean'] for v in row.values()):
      warnings.append(f'ε={epsilon}: attacks at ε = 0 changed accuracy from clean '
                      f'{row["clean"]:.4f} (min {min(row.values()):.4f})')
    if 'pgd' in config.attacks and 'fgsm' in config.attacks and (
        row[labels['pgd']] > row['FGSM'] + noise):
      warnings.append(f'ε={epsilon}: {labels["pgd"]} accuracy {row[labels["pgd"]]:.4f} exceeds '
                      f'FGSM {row["FGSM"]:.4f}: PGD weaker than FGSM suggests gradient masking')
    apgd = [labels[a] for a in ('apgd_ce', 'apgd_dlr') if a in config.attacks]
    if 'pgd' in config.attacks and apgd and min(row[a] for a in apgd) > (
        row[labels['pgd']] + noise):
      warnings.append(f'ε={epsilon}: APGD accuracy {min(row[a] for a in apgd):.4f} exceeds '
                      f'{labels["pgd"]} {row[labels["pgd"]]:.4f}: check the attack budget')
  for smaller, larger in zip(ordered, ordered[1:]):
    for name, value in accuracy[larger].items():
      if name != 'clean' and value > accuracy[smaller][name] + noise:
        warnings.append(f'{name}: accuracy rises from {accuracy[smaller][name]:.4f} at '
                        f'ε={smaller} to {value:.4f} at ε={larger}')
  if results['large_epsilon_accuracy'] > 1.0 / results['num_classes']:
    warnings.append(f'worst-case accuracy {results["large_epsilon_accuracy"]:.4f} at the large '
                    f'ε={results["large_epsilon"]} is above chance: the attacks may be masked')
  return warnings


def markdown_table(results) -> str:
  accuracy = results['accuracy']
  columns = list(next(iter(accuracy.values())))
  lines = [f'| ε ({results["norm"]}) | ' + ' | '.join(columns) + ' |',
           '|---' * (len(columns) + 1) + '|']
  for epsilon, row in accuracy.items():
    lines.append(f'| {epsilon} | ' + ' | '.join(f'{100 * row[c]:.2f}' for c in columns) + ' |')
  return '\n'.join(lines) + f'\n\nAccuracy (%) on {results["num_examples"]} test examples.'


def plot(results, path: str, title: str = '') -> None:
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
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)
