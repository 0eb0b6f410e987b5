"""Adversarial training by replacing each batch with attacked inputs (the `adversary` section).

PGD-AT (Madry et al. 2018):   min_θ E max_{||δ|| ≤ ε} L(θ, x + δ, y), inner max by PGD-k
FGSM-AT (Wong et al. 2020):   the inner max by one FGSM step of size α from a uniform random start
                              in the ball ("fast is better than free": α = 1.25 ε)

The adversary wraps whatever loss is configured, so e.g. MDL or class-similarity targets train on
PGD examples. The attack runs on stop_gradient(params): no gradient flows through it. `model_mode`
is the model's mode while the attack runs: 'eval' (running batch-norm statistics, no dropout) or
'train' (batch statistics, not updated; dropout on with one fixed mask for the whole attack).

In your own JAX code adversarial training is "attack, then your loss"; the attacks are pure
functions of any `logits_fn` (`robust_jax.attacks`), e.g. PGD-AT with any `apply_fn(params, x)`:

    def pgd_at_loss(params, images, labels, key):
      frozen = jax.lax.stop_gradient(params)
      adversarial = attacks.pgd(lambda x: apply_fn(frozen, x), images, labels, key,
                                epsilon=0.1, step_size=0.025, num_steps=10)
      return jnp.mean(losses.cross_entropy(apply_fn(params, adversarial), labels))

(FGSM-AT: `attacks.fgsm(..., random_start=True, step_size=1.25 * epsilon)`). The adapters below
build the same from the `adversary` config section around any configured loss.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import jax

from robust_jax import arguments, attacks
from robust_jax.config import schema as cs
from robust_jax.data.specs import SPECS
from robust_jax.methods import modality
from robust_jax.models import ModelFns, ModelState, Params
from robust_jax.objectives import ADVERSARIES, LossFn

__all__ = ['MODEL_MODES', 'attack_logits_fn', 'fgsm_adversary', 'pgd_adversary']

MODEL_MODES = ('eval', 'train')

_COMMON: cs.Schema = {
    # pixel units ([0, 1] images); below the radius that holds every image (`_check`)
    'epsilon': cs.positive_real(note="ε = 0 leaves the images clean: use adversary 'none'"),
    'step_size': cs.positive_real(),
    'norm': cs.one_of(*attacks.NORMS),
    'random_start': cs.boolean(),
    'model_mode': cs.one_of(*MODEL_MODES),
}
_SWEEPABLE = ('epsilon', 'step_size')


def _check(config):
  name = config.adversary.name
  modality.require(config, 'image', f'config.adversary.name={name!r}: attacks pixels',
                   "use adversary 'embedding_pgd' or 'embedding_fgm' "
                   '(robust_jax.methods.embedding_adversary)')
  spec = SPECS[config.dataset.name]
  # A ball this large around any image in [0, 1]^d holds every image: the attack is unbounded
  # (the usual slip: ε in 0..255 units, 8 for 8/255).
  epsilon, norm, size = config.adversary.epsilon, config.adversary.norm, math.prod(spec.image_shape)
  bound = 1.0 if norm == 'linf' else math.sqrt(size)
  if epsilon >= bound:
    raise cs.ConfigError(
        f'config.adversary.epsilon={epsilon}: must be < {bound:.4g} for norm {norm} on '
        f'{spec.name} ({"×".join(map(str, spec.image_shape))} pixels in [0, 1]): a ball that large '
        'holds every image (ε is in [0, 1] pixel units: 8/255 is 0.0314)')


def attack_logits_fn(model: ModelFns, params: Params, model_state: ModelState, model_mode: str,
                     key: jax.Array) -> attacks.LogitsFn:
  """`logits_fn(x)` for an attack: images (B, ...) -> logits (B, C) of the robust_jax `model` at
  stop_gradient(params), in `model_mode` ('eval' or 'train'), the new model state discarded.

  `key` draws the model's own randomness in 'train' mode (one dropout / feature mask for the whole
  attack); the attack's random start must use another key. Checked: `model_mode` is 'eval' or
  'train', `model` has `apply`, and `key` is a PRNG key in 'train' mode (one-line errors).
  """
  arguments.check_choice('model_mode', model_mode, MODEL_MODES)
  if not callable(getattr(model, 'apply', None)):
    raise TypeError(f'model={type(model).__name__}: must be a robust_jax ModelFns (with '
                    '.apply(params, model_state, images, train=..., key=...))')
  if model_mode == 'train':
    arguments.check_key(key, purpose="draws the model's dropout in 'train' mode")
  frozen = jax.lax.stop_gradient(params)
  return lambda x: model.apply(frozen, model_state, x, train=model_mode == 'train', key=key)[0]


def _adversarial_loss(config, model: ModelFns, loss_fn: LossFn,
                      attack: Callable[..., jax.Array]) -> LossFn:
  def adversarial_loss_fn(params, model_state, batch, key):
    model_key, start_key, loss_key = jax.random.split(key, 3)
    logits_fn = attack_logits_fn(model, params, model_state, config.model_mode, model_key)
    adversarial = attack(logits_fn, batch['image'], batch['label'], start_key)
    return loss_fn(params, model_state, {**batch, 'image': adversarial}, loss_key)
  return adversarial_loss_fn


@ADVERSARIES.register('pgd', {**_COMMON, 'num_steps': cs.integer(1)}, check=_check,
                      sweepable=_SWEEPABLE,
                      defaults=dict(epsilon=0.1, step_size=0.025, num_steps=10, norm='linf',
                                    random_start=True, model_mode='eval'))
def pgd_adversary(config, model: ModelFns, loss_fn: LossFn) -> LossFn:
  """Adapter: PGD-AT (Madry et al. 2018), `loss_fn` on `attacks.pgd` examples of the batch,
  min_θ E max_{||δ|| ≤ ε} L(θ, x + δ, y). config: the `adversary` section. Key contract: split 3
  -> (attack's model key, random start, loss key).
  """
  def attack(logits_fn, images, labels, key):
    return attacks.pgd(logits_fn, images, labels, key, epsilon=config.epsilon,
                       step_size=config.step_size, num_steps=config.num_steps, norm=config.norm,
                       random_start=config.random_start)
  return _adversarial_loss(config, model, loss_fn, attack)


@ADVERSARIES.register('fgsm', _COMMON, check=_check, sweepable=_SWEEPABLE,
                      defaults=dict(epsilon=0.1, step_size=0.125, norm='linf', random_start=True,
                                    model_mode='eval'))
def fgsm_adversary(config, model: ModelFns, loss_fn: LossFn) -> LossFn:
  """Adapter: FGSM-AT (Wong et al. 2020 with `random_start`, α = step_size), `loss_fn` on
  `attacks.fgsm` examples of the batch. config: the `adversary` section. Key contract as
  `pgd_adversary`.
  """
  def attack(logits_fn, images, labels, key):
    return attacks.fgsm(logits_fn, images, labels, key, epsilon=config.epsilon,
                        step_size=config.step_size, norm=config.norm,
                        random_start=config.random_start)
  return _adversarial_loss(config, model, loss_fn, attack)
