"""Robustness evaluation, running the attacks: clean, FGSM, PGD-k (restarts), APGD-CE and APGD-DLR
accuracy at each ε, and the robust accuracy = per-example worst case over all of them; or, with
`evaluate_autoattack`, AutoAttack (`attacks.autoattack`) beside FGSM and PGD-k.

ε values are given as text ('8/255', '0.1') and reported exactly as given (`robustness_settings`:
ε parsing, the config schema, attack labels and settings). The results record the number of
examples, the checkpoint step and every attack's settings and seed, the sanity checks made with
the warnings of those that failed, and the gradient-masking flags (`robustness_checks`);
`robustness_report` writes them as text, a markdown table and a plot. Every public name of those
modules stays importable from here.

AutoAttack presets (`PRESETS`): 'autoattack' (version 'standard': APGD-CE, APGD-T, FAB-T, Square)
and 'autoattack_rand' (APGD-CE and APGD-DLR with EOT, for models whose `model_mode` is random,
i.e. 'train' with dropout). Their table gives, at each ε, clean accuracy, FGSM and PGD-k accuracy
(each alone, for the masking checks) and the robust accuracy after each AutoAttack attack in
sequence (cumulative: each attack runs only on the examples still robust); the worst case is over
AutoAttack, FGSM and PGD-k. The results also hold each attack's seconds, and their
gradient-masking flags (`gradient_masking_flags`) include Square's: whether it broke more than 1 %
of the examples that every gradient attack before it left robust.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from robust_jax import attacks, sharding
from robust_jax.attacks.sequence import CLEAN, accuracy_after_each, run_sequence
from robust_jax.data import pipeline
from robust_jax.evaluation.robustness_checks import (SQUARE_TOLERANCE, gradient_masking_flags,
                                                     record_checks, sanity_checks)
from robust_jax.evaluation.robustness_report import (describe, gradient_masking_report,
                                                     markdown_table, plot, sanity_report)
from robust_jax.evaluation.robustness_settings import (ATTACKS, AUTOATTACK_LABELS, SCHEMA,
                                                       WORST_CASE, attack_labels,
                                                       attack_settings, parse_epsilon)

__all__ = ['ATTACKS', 'AUTOATTACK_LABELS', 'PRESETS', 'SCHEMA', 'SQUARE_TOLERANCE', 'WORST_CASE',
           'attack_labels', 'attack_settings', 'describe', 'eval_batch_size', 'evaluate',
           'evaluate_autoattack', 'gradient_masking_flags', 'gradient_masking_report',
           'make_batch_fn', 'markdown_table', 'parse_epsilon', 'plot', 'sanity_checks',
           'sanity_report']

PRESETS = {'autoattack': 'standard', 'autoattack_rand': 'rand'}  # preset -> AutoAttack version


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


def _batch_correct(batch_fn, params, model_state, batches, index, key, epsilon) -> dict:
  """{name: correct (n,) bool} of `batch_fn` on batch `index`'s n real examples (the padding
  dropped), with WORST_CASE: correct under every attack."""
  correct = batch_fn(params, model_state, batches['image'][index], batches['label'][index], key,
                     epsilon)
  mask = np.asarray(batches['mask'][index]).astype(bool)
  correct = {name: np.asarray(c)[mask] for name, c in correct.items()}
  correct[WORST_CASE] = np.logical_and.reduce(list(correct.values()))
  return correct


def _run_record(model, config, num_examples, checkpoint_step, batch_size, large_robust) -> dict:
  """What both evaluations record beside the accuracy: examples, `checkpoint_step`, norm, classes,
  seed, batch size, the large ε and the worst case there (`large_robust`: (n,) bool, n examples)."""
  return {'num_examples': num_examples, 'checkpoint_step': checkpoint_step, 'norm': config.norm,
          'num_classes': model.module.num_classes, 'seed': config.seed,
          'batch_size': batch_size, 'large_epsilon': config.large_epsilon,
          'large_epsilon_accuracy': float(large_robust.mean()),
          'large_epsilon_examples': len(large_robust)}


def evaluate(model, params, model_state, test_split, config, mesh,
             checkpoint_step: int | None = None) -> dict:
  """Accuracy per ε (as given) and attack, the worst case, the sanity checks made and the warnings
  of those that failed, and what was run: examples, `checkpoint_step`, attack settings, seeds."""
  if config.num_examples:
    test_split = test_split.first(config.num_examples)
  batch_size = eval_batch_size(len(test_split), config.batch_size, mesh.size)
  batches = pipeline.make_eval_batches(test_split, batch_size, mesh)
  correct_in = functools.partial(_batch_correct, make_batch_fn(model, config), params,
                                 model_state, batches)
  labels = attack_labels(config)
  num_batches = batches['label'].shape[0]
  key = jax.random.key(config.seed)
  accuracy = {}
  progress = tqdm.tqdm(total=len(config.epsilons) * num_batches, unit='batch', dynamic_ncols=True)
  for epsilon_text in config.epsilons:
    epsilon = jnp.float32(parse_epsilon(epsilon_text))
    totals = {}
    for index in range(num_batches):
      for name, c in correct_in(index, jax.random.fold_in(key, index), epsilon).items():
        totals[name] = totals.get(name, 0) + int(c.sum())
      progress.update()
      progress.set_postfix(epsilon=epsilon_text)
    columns = ['clean', *config.attacks, WORST_CASE]
    accuracy[epsilon_text] = {labels.get(name, name): totals[name] / len(test_split)
                              for name in columns}
  progress.close()
  large_robust = correct_in(0, key, jnp.float32(parse_epsilon(config.large_epsilon)))[WORST_CASE]
  results = {'accuracy': accuracy,
             **_run_record(model, config, len(test_split), checkpoint_step, batch_size,
                           large_robust),
             'attacks': attack_settings(config)}
  return record_checks(results, config)


def _model_logits(model, train, params, model_state, images, key):
  return model.apply(params, model_state, images, train=train, key=key)[0]


def _fixed_key_logits(model, train, params, model_state, key, images):
  return _model_logits(model, train, params, model_state, images, key)


@jax.jit
def _predict(logits_fn, images):
  return jnp.argmax(logits_fn(images), -1)


def _fgsm_pgd(config):
  """(`config` with attacks FGSM and PGD-k only, {label: jitted attack(logits_fn, images, labels,
  key, epsilon=...)}) for the attacks run alone beside AutoAttack."""
  fgsm_pgd = config.copy_and_resolve_references()
  fgsm_pgd.attacks = ('fgsm', 'pgd')
  labels_of = attack_labels(fgsm_pgd)
  return fgsm_pgd, {labels_of[name]: jax.jit(functools.partial(_attack, name, fgsm_pgd))
                    for name in fgsm_pgd.attacks}


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
  fgsm_pgd, single = _fgsm_pgd(config)
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
             **_run_record(model, config, len(labels), checkpoint_step, batch_size,
                           large_robust),
             'attacks': {**attack_settings(fgsm_pgd), 'AutoAttack': dict(
                 attack='autoattack', version=version, **dataclasses.asdict(autoattack_settings),
                 seed=config.seed, norm=config.norm, model_mode=config.model_mode)},
             'autoattack': {'version': version, 'sequence': sequence}}
  return record_checks(results, fgsm_pgd)
