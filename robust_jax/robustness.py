"""Robustness evaluation: clean, FGSM, PGD-k (restarts), APGD-CE and APGD-DLR accuracy at each ε, and
the robust accuracy = per-example worst case over all of them.

ε values are given as text ('8/255', '0.1') and reported exactly as given. Sanity checks flag the
usual signs of gradient masking (Carlini et al. 2019; Croce & Hein 2020): ε = 0 must give clean
accuracy, accuracy must not rise with ε, PGD must not be weaker than FGSM, APGD not weaker than
PGD (within sampling noise), and a large ε must drive accuracy towards zero; each check is made
only where its attacks and ε values were run, and the results list the checks made. The results
also record the number of examples, the checkpoint step and every attack's settings and seed.
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

__all__ = ['ATTACKS', 'SCHEMA', 'WORST_CASE', 'attack_labels', 'attack_settings', 'describe',
           'eval_batch_size', 'evaluate', 'make_batch_fn', 'markdown_table', 'parse_epsilon',
           'plot', 'sanity_checks', 'sanity_report']

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


def eval_batch_size(num_examples: int, batch_size: int, num_devices: int) -> int:
  """The batch for `num_examples`: at most `batch_size` (both rounded up to the device count),
  as equal as the batches can be, so padding is less than `num_devices` rows per batch.

  E.g. 200 examples, batch 500, 8 devices -> 200 (one batch, no padding).
  """
  round_up = lambda n: -(-n // num_devices) * num_devices
  num_batches = -(-num_examples // round_up(min(batch_size, num_examples)))
  return round_up(-(-num_examples // num_batches))


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


def evaluate(model, params, model_state, test_split, config, mesh,
             checkpoint_step: int | None = None) -> dict:
  """Accuracy per ε (as given) and attack, the worst case, the sanity checks made and the warnings
  of those that failed, and what was run: examples, `checkpoint_step`, attack settings, seeds."""
  if config.num_examples:
    test_split = type(test_split)(test_split.images[:config.num_examples],
                                  test_split.labels[:config.num_examples])
  batch_size = eval_batch_size(len(test_split), config.batch_size, mesh.size)
  batches = pipeline.make_eval_batches(test_split, batch_size, mesh)
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
  results = {'accuracy': accuracy, 'num_examples': len(test_split),
             'checkpoint_step': checkpoint_step, 'norm': config.norm,
             'num_classes': model.module.num_classes, 'seed': config.seed,
             'batch_size': batch_size, 'large_epsilon': config.large_epsilon,
             'large_epsilon_accuracy': large_accuracy,
             'large_epsilon_examples': int(mask.sum()), 'attacks': attack_settings(config)}
  results['sanity_checks'], results['warnings'] = sanity_checks(results, config)
  return results


def sanity_checks(results, config) -> tuple[list[str], list[str]]:
  """(the checks made, warnings for those failed); tolerance = two binomial standard errors at
  p = 0.5. A check is made only where its attacks and ε values were run."""
  accuracy, n = results['accuracy'], results['num_examples']
  noise = 2 * math.sqrt(0.25 / n)
  labels = attack_labels(config)
  ordered = sorted(accuracy, key=parse_epsilon)
  apgd = [labels[a] for a in ('apgd_ce', 'apgd_dlr') if a in config.attacks]
  pgd_vs_fgsm = 'pgd' in config.attacks and 'fgsm' in config.attacks
  apgd_vs_pgd = 'pgd' in config.attacks and bool(apgd)
  made = {'ε = 0 gives clean accuracy': any(parse_epsilon(e) == 0 for e in ordered),
          'accuracy does not rise with ε': len(ordered) > 1, 'PGD ≤ FGSM': pgd_vs_fgsm,
          'APGD ≤ PGD': apgd_vs_pgd, f'large ε={results["large_epsilon"]} → below chance': True}
  warnings = []
  for epsilon in ordered:
    row = accuracy[epsilon]
    if parse_epsilon(epsilon) == 0 and any(v != row['clean'] for v in row.values()):
      warnings.append(f'ε={epsilon}: attacks at ε = 0 changed accuracy from clean '
                      f'{row["clean"]:.4f} (min {min(row.values()):.4f})')
    if pgd_vs_fgsm and row[labels['pgd']] > row['FGSM'] + noise:
      warnings.append(f'ε={epsilon}: {labels["pgd"]} accuracy {row[labels["pgd"]]:.4f} exceeds '
                      f'FGSM {row["FGSM"]:.4f}: PGD weaker than FGSM suggests gradient masking')
    if apgd_vs_pgd and min(row[a] for a in apgd) > row[labels['pgd']] + noise:
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
  return [check for check, was_made in made.items() if was_made], warnings


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


def markdown_table(results) -> str:
  accuracy = results['accuracy']
  columns = list(next(iter(accuracy.values())))
  lines = [f'| ε ({results["norm"]}) | ' + ' | '.join(columns) + ' |',
           '|---' * (len(columns) + 1) + '|']
  for epsilon, row in accuracy.items():
    lines.append(f'| {epsilon} | ' + ' | '.join(f'{100 * row[c]:.2f}' for c in columns) + ' |')
  return '\n'.join(lines) + f'\n\nAccuracy (%) on {describe(results)}.'


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
  description = describe(results)
  figure.text(0.01, 0.01, description, fontsize=6, wrap=True, va='bottom')
  figure.tight_layout(rect=(0, 0.12, 1, 1))
  figure.savefig(path, dpi=120, metadata={'Description': description})
  plt.close(figure)
