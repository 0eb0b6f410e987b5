"""Robustness evaluation: clean, FGSM, PGD-k (restarts), APGD-CE and APGD-DLR accuracy at each ε, and
the robust accuracy = per-example worst case over all of them; or, with `evaluate_autoattack`,
AutoAttack (`attacks.autoattack`) beside FGSM and PGD-k.

ε values are given as text ('8/255', '0.1') and reported exactly as given. Sanity checks flag the
usual signs of gradient masking (Carlini et al. 2019; Croce & Hein 2020): ε = 0 must give clean
accuracy, accuracy must not rise with ε, PGD must not be weaker than FGSM, APGD not weaker than
PGD (within sampling noise), and a large ε must drive accuracy towards zero; each check is made
only where its attacks and ε values were run, and the results list the checks made. The results
also record the number of examples, the checkpoint step and every attack's settings and seed.

AutoAttack presets (`PRESETS`): 'autoattack' (version 'standard': APGD-CE, APGD-T, FAB-T, Square)
and 'autoattack_rand' (APGD-CE and APGD-DLR with EOT, for models whose `model_mode` is random,
i.e. 'train' with dropout). Their table gives, at each ε, clean accuracy, FGSM and PGD-k accuracy
(each alone, for the masking checks) and the robust accuracy after each AutoAttack attack in
sequence (cumulative: each attack runs only on the examples still robust); the worst case is over
AutoAttack, FGSM and PGD-k. The results also hold each attack's seconds and the gradient-masking
flags (`gradient_masking_flags`): Square breaks more than 1 % of the examples (fraction of all
examples evaluated) that every gradient attack before it left robust; PGD weaker than FGSM; the
worst case at the large ε above chance.
"""
from __future__ import annotations

import dataclasses
import fractions
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from robust_jax import arguments, attacks, sharding
from robust_jax.attacks.autoattack import CLEAN, accuracy_after_each, run_sequence
from robust_jax.config import schema as cs
from robust_jax.data import pipeline
from robust_jax.methods.adversarial_training import MODEL_MODES

__all__ = ['ATTACKS', 'AUTOATTACK_LABELS', 'PRESETS', 'SCHEMA', 'SQUARE_TOLERANCE', 'WORST_CASE',
           'attack_labels', 'attack_settings', 'describe', 'eval_batch_size', 'evaluate',
           'evaluate_autoattack', 'gradient_masking_flags', 'gradient_masking_report',
           'make_batch_fn', 'markdown_table', 'parse_epsilon', 'plot', 'sanity_checks',
           'sanity_report']

ATTACKS = ('fgsm', 'pgd', 'apgd_ce', 'apgd_dlr')
WORST_CASE = 'worst case'
PRESETS = {'autoattack': 'standard', 'autoattack_rand': 'rand'}  # preset -> AutoAttack version
AUTOATTACK_LABELS = {'apgd-ce': 'APGD-CE', 'apgd-dlr': 'APGD-DLR', 'apgd-t': 'APGD-T',
                     'fab': 'FAB', 'fab-t': 'FAB-T', 'square': 'Square'}
SQUARE_TOLERANCE = 0.01  # Square may break at most this fraction of the examples evaluated


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
    return {'clean': is_correct(x),
            **{name: is_correct(_attack(name, config, logits_fn, x, labels, keys[name], epsilon))
               for name in config.attacks}}

  return jax.jit(correct_under_attacks)


def _attack(name: str, config, logits_fn, images, labels, key, epsilon) -> jax.Array:
  """The adversarial images of attack `name` (one of ATTACKS) with `config`'s budgets."""
  if name == 'fgsm':
    return attacks.fgsm(logits_fn, images, labels, epsilon=epsilon, norm=config.norm)
  if name == 'pgd':
    return attacks.pgd(logits_fn, images, labels, key, epsilon=epsilon,
                       step_size=config.pgd_relative_step_size * epsilon,
                       num_steps=config.pgd_steps, norm=config.norm, random_start=True,
                       restarts=config.pgd_restarts)
  return attacks.apgd(logits_fn, images, labels, key, epsilon=epsilon, num_steps=config.apgd_steps,
                      norm=config.norm, loss=name.removeprefix('apgd_'),
                      restarts=config.apgd_restarts)


def evaluate(model, params, model_state, test_split, config, mesh,
             checkpoint_step: int | None = None) -> dict:
  """Accuracy per ε (as given) and attack, the worst case, the sanity checks made and the warnings
  of those that failed, and what was run: examples, `checkpoint_step`, attack settings, seeds."""
  if config.num_examples:
    test_split = test_split.first(config.num_examples)
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
  results['gradient_masking'] = gradient_masking_flags(results, config)
  return results


def _model_logits(model, train, params, model_state, images, key):
  return model.apply(params, model_state, images, train=train, key=key)[0]


def _fixed_key_logits(model, train, params, model_state, key, images):
  return _model_logits(model, train, params, model_state, images, key)


@jax.jit
def _predict(logits_fn, images):
  return jnp.argmax(logits_fn(images), -1)


def _autoattack_row(fixed_logits, autoattack_logits, single, images, labels, key, epsilon,
                    config, version, settings, batch_size, batch_sharding):
  """({column: accuracy}, {column: seconds}, worst-case robust (N,) bool) at one ε: FGSM and
  PGD-k each alone, then the AutoAttack sequence (cumulative accuracy after each attack)."""
  accuracy, seconds, robust = {}, {}, np.ones(len(labels), bool)
  classify = lambda x, _: _predict(fixed_logits, x)
  single_key, key = jax.random.split(key)
  for index, (label, attack) in enumerate(single.items()):
    result = run_sequence(classify, images, labels, jax.random.fold_in(single_key, index),
                          [(label, functools.partial(attack, fixed_logits, epsilon=epsilon))],
                          batch_size=batch_size, sharding=batch_sharding)
    accuracy[label], seconds[label] = float(np.mean(result.broken_by == -1)), result.seconds[label]
    robust &= result.broken_by == -1
  result = attacks.autoattack_sequence(autoattack_logits, images, labels, key, epsilon,
                                       config.norm, version, settings=settings,
                                       batch_size=batch_size, sharding=batch_sharding)
  after = accuracy_after_each(result.broken_by, attacks.autoattack_names(version))
  robust &= result.broken_by == -1
  accuracy = {'clean': after.pop(CLEAN), **accuracy,
              **{AUTOATTACK_LABELS[name]: value for name, value in after.items()},
              WORST_CASE: float(robust.mean())}
  seconds.update({AUTOATTACK_LABELS[name]: value for name, value in result.seconds.items()})
  return accuracy, seconds, robust


def evaluate_autoattack(model, params, model_state, test_split, config, mesh, *,
                        preset: str = 'autoattack',
                        autoattack_settings: attacks.AutoAttackSettings = (
                            attacks.AutoAttackSettings()),
                        checkpoint_step: int | None = None) -> dict:
  """`evaluate` for an AutoAttack preset (module docstring): per ε, clean, FGSM and PGD-k (each
  alone; `config`'s budgets) and the accuracy after each AutoAttack attack, the worst case, each
  attack's seconds (compilation included), the sanity checks and the gradient-masking flags.

  The examples are sharded over `mesh` in chunks of at most `config.batch_size`;
  `autoattack_settings` shrinks AutoAttack's budgets (tests, quick looks). 'autoattack_rand'
  draws the model's randomness from `config.model_mode` ('train': dropout on); a deterministic
  model gets a warning.
  """
  if preset not in PRESETS:
    raise ValueError(f'preset={preset!r}: must be one of {", ".join(map(repr, PRESETS))}')
  version = PRESETS[preset]
  if config.num_examples:
    test_split = test_split.first(config.num_examples)
  images = np.asarray(test_split.images, np.float32) / 255.0  # as pipeline.to_unit_float
  labels = np.asarray(test_split.labels, np.int32)
  batch_size = eval_batch_size(len(labels), config.batch_size, mesh.size)
  batch_sharding = sharding.batch_sharded(mesh)
  train, key = config.model_mode == 'train', jax.random.key(config.seed)
  fixed_logits = jax.tree_util.Partial(functools.partial(_fixed_key_logits, model, train), params,
                                       model_state, key)
  autoattack_logits = fixed_logits if version != 'rand' else jax.tree_util.Partial(
      functools.partial(_model_logits, model, train), params, model_state)
  fgsm_pgd = config.copy_and_resolve_references()
  fgsm_pgd.attacks = ('fgsm', 'pgd')
  labels_of = attack_labels(fgsm_pgd)
  single = {labels_of[name]: jax.jit(functools.partial(_attack, name, fgsm_pgd))
            for name in fgsm_pgd.attacks}
  row = functools.partial(_autoattack_row, fixed_logits, autoattack_logits, single,
                          config=config, version=version, settings=autoattack_settings,
                          batch_size=batch_size, batch_sharding=batch_sharding)
  accuracy, seconds = {}, {}
  for epsilon_text in tqdm.tqdm(config.epsilons, unit='ε', dynamic_ncols=True):
    accuracy[epsilon_text], seconds[epsilon_text], _ = row(
        images, labels, key, jnp.float32(parse_epsilon(epsilon_text)))
  first = slice(0, min(batch_size, len(labels)))
  _, _, large_robust = row(images[first], labels[first], key,
                           jnp.float32(parse_epsilon(config.large_epsilon)))
  sequence = [AUTOATTACK_LABELS[name] for name in attacks.AUTOATTACK_VERSIONS[version]]
  results = {'preset': preset, 'accuracy': accuracy, 'seconds': seconds,
             'num_examples': len(labels), 'checkpoint_step': checkpoint_step,
             'norm': config.norm, 'num_classes': model.module.num_classes, 'seed': config.seed,
             'batch_size': batch_size, 'large_epsilon': config.large_epsilon,
             'large_epsilon_accuracy': float(large_robust.mean()),
             'large_epsilon_examples': len(large_robust),
             'attacks': {**attack_settings(fgsm_pgd), 'AutoAttack': dict(
                 attack='autoattack', version=version, **dataclasses.asdict(autoattack_settings),
                 seed=config.seed, norm=config.norm, model_mode=config.model_mode)},
             'autoattack': {'version': version, 'sequence': sequence}}
  results['sanity_checks'], results['warnings'] = sanity_checks(results, fgsm_pgd)
  results['gradient_masking'] = gradient_masking_flags(results, fgsm_pgd)
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
  for smaller, larger in zip(ordered, ordered[1:]):
    for name, value in accuracy[larger].items():
      if name != 'clean' and value > accuracy[smaller][name] + noise:
        warnings.append(f'{name}: accuracy rises from {accuracy[smaller][name]:.4f} at '
                        f'ε={smaller} to {value:.4f} at ε={larger}')
  for epsilon, fraction in square.items():
    if fraction > SQUARE_TOLERANCE:
      warnings.append(f'ε={epsilon}: Square broke {100 * fraction:.2f} % of the examples, all left '
                      'robust by every gradient attack before it (> 1 %): gradient masking')
  if _large_epsilon_above_chance(results):
    warnings.append(f'worst-case accuracy {results["large_epsilon_accuracy"]:.4f} at the large '
                    f'ε={results["large_epsilon"]} is above chance: the attacks may be masked')
  return [check for check, was_made in made.items() if was_made], warnings


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
  text = '\n'.join(lines) + f'\n\nAccuracy (%) on {describe(results)}.'
  if 'autoattack' in results:
    sequence = results['autoattack']['sequence']
    text += (f' {sequence[0]} to {sequence[-1]}: robust accuracy after each attack of AutoAttack '
             f'({results["autoattack"]["version"]}), each run on the examples still robust.')
  if 'seconds' in results:
    columns = list(next(iter(results['seconds'].values())))
    lines = ['| ε | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
    lines += [f'| {epsilon} | ' + ' | '.join(f'{row[c]:.1f}' for c in columns) + ' |'
              for epsilon, row in results['seconds'].items()]
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
