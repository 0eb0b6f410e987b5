"""Adversarial training of text models in embedding space: FGM and PGD on the embedded sequence.

FGM (Miyato, Dai & Goodfellow, ICLR 2017), per example over its whole embedded sequence e(x):

    δ = ε · g / ||g||₂,   g = ∇_δ L(θ, e(x) + δ) at δ = 0
    L_adv(θ) = L(θ, e(x)) + L(θ, e(x) + δ)          (δ a constant; the clean term optional)

PGD (Madry et al. 2018, in embedding space, L2 per example): δ⁰ = 0,
δ^{t+1} = Π_ε(δ^t + α g^t / ||g^t||₂), K steps, Π_ε the projection onto ||δ||₂ ≤ ε.

These are the baselines the DropAttack paper compares against; their settings there could not be
read (papers.md 2.4), so this form is a PROPOSAL: perturb the embedded sequence (not the
embedding table), per example, no random start, the attack's gradient from the configured loss in
training mode (dropout on, its own key per step, as PyTorch FGM code in `model.train()`), and the
clean loss added (`include_clean`, Miyato's objective and the usual FGM recipe). Default ε = 5:
Miyato et al.'s value on normalised embeddings, the scale of the N(0, 1) embeddings here. Positions
beyond a text's length get no gradient and are ignored by the models (`models.text_models`).

Two layers. `perturbation` is a pure function of any `loss_fn(delta, step) -> loss`; the
adapters below (adversary 'embedding_fgm' and 'embedding_pgd') pass the text model
`PerturbedTokens(tokens, delta)` through the configured loss, so the train step is unchanged.
"""
from __future__ import annotations

from collections.abc import Callable
import numbers

import jax
import jax.numpy as jnp

from robust_jax import arguments
from robust_jax.attacks import threat_model
from robust_jax.config import schema as cs
from robust_jax.methods import modality
from robust_jax.models import ModelFns, PerturbedTokens, TextClassifier
from robust_jax.objectives import ADVERSARIES, LossFn

__all__ = ['FGM_DEFAULTS', 'PGD_DEFAULTS', 'embedding_fgm_adversary', 'embedding_pgd_adversary',
           'perturbation']

FGM_DEFAULTS = dict(epsilon=5.0, include_clean=True)
PGD_DEFAULTS = dict(epsilon=5.0, step_size=2.0, num_steps=3, include_clean=True)
_FGM_SCHEMA: cs.Schema = {
    'epsilon': cs.positive_real(note="ε = 0 leaves the embeddings clean: use adversary 'none'"),
    'include_clean': cs.boolean(),
}
_PGD_SCHEMA: cs.Schema = {**_FGM_SCHEMA, 'step_size': cs.positive_real(),
                          'num_steps': cs.integer(1)}


def perturbation(loss_fn: Callable[[jax.Array, int], jax.Array], shape: tuple[int, ...], *,
                 epsilon: float, step_size: float, num_steps: int) -> jax.Array:
  """δ of `shape` (B, ...) with ||δ_b||₂ ≤ ε for every example b: `num_steps` L2 steps
  δ ← Π_ε(δ + α g / ||g_b||₂) from δ = 0, g = ∇_δ loss_fn(δ, t) at step t (FGM: one step, α = ε).

  loss_fn: (δ, step index t) -> scalar, e.g. the batch's mean loss with δ added to its embeddings.
  epsilon ≥ 0, step_size α ≥ 0 (Python numbers or scalars); num_steps: a Python int ≥ 1. The result
  leaves through `stop_gradient`. shape: a tuple of Python ints ≥ 1, (B, ...) with at least one
  axis after the batch axis.
  """
  arguments.check_callable('loss_fn', loss_fn, 'a function (delta, step) -> loss')
  num_steps = arguments.check_count('num_steps', num_steps)
  arguments.check_number('epsilon', epsilon, 0.0)
  arguments.check_number('step_size', step_size, 0.0)
  if not isinstance(shape, (tuple, list)) or len(shape) < 2 or not all(
      isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in shape):
    raise TypeError(f'shape={shape!r}: must be (B, ...), a tuple of at least 2 Python ints >= 1 '
                    '(e.g. (B, L, embedding_size))')
  shape = tuple(int(n) for n in shape)
  gradient = jax.grad(loss_fn)

  def step(t, delta):
    delta = delta + step_size * threat_model.ascent_direction(gradient(delta, t), 'l2')
    return threat_model.shrink_to_l2_ball(delta, epsilon)

  return jax.lax.stop_gradient(jax.lax.fori_loop(0, num_steps, step, jnp.zeros(shape)))


def _check(config):
  name = config.adversary.name
  modality.require(config, 'text', f'config.adversary.name={name!r}: perturbs the embeddings of '
                   'a text model', "use adversary 'pgd' or 'fgsm'")


def _embedding_adversary(config, model: ModelFns, loss_fn: LossFn, step_size: float,
                         num_steps: int) -> LossFn:
  if not isinstance(model.module, TextClassifier):
    raise cs.ConfigError(f'config.adversary.name={config.name!r}: needs a text model, '
                         f'got {type(model.module).__name__}')
  embedding_size = model.module.embedding_size

  def adversarial_loss_fn(params, model_state, batch, key):
    attack_key, clean_key, adversarial_key = jax.random.split(key, 3)
    tokens, frozen = batch['image'], jax.lax.stop_gradient(params)

    def perturbed_batch(delta):
      return {**batch, 'image': PerturbedTokens(tokens, delta)}

    def attack_loss(delta, t):
      pass_key = jax.random.fold_in(attack_key, t)
      return loss_fn(frozen, model_state, perturbed_batch(delta), pass_key)[0]

    delta = perturbation(attack_loss, (*tokens.shape, embedding_size), epsilon=config.epsilon,
                         step_size=step_size, num_steps=num_steps)
    if not config.include_clean:
      return loss_fn(params, model_state, perturbed_batch(delta), adversarial_key)
    clean_loss, clean_aux = loss_fn(params, model_state, batch, clean_key)
    loss, aux = loss_fn(params, clean_aux.model_state, perturbed_batch(delta), adversarial_key)
    return clean_loss + loss, aux.replace(metrics={**aux.metrics, 'clean_loss': clean_loss,
                                                   'adversarial_loss': loss})

  return adversarial_loss_fn


@ADVERSARIES.register('embedding_fgm', _FGM_SCHEMA, check=_check, defaults=FGM_DEFAULTS)
def embedding_fgm_adversary(config, model: ModelFns, loss_fn: LossFn) -> LossFn:
  """Adapter: FGM in embedding space (module docstring), `loss_fn` at the attacked embeddings
  (+ the clean loss). config: the `adversary` section. Key contract: split 3 -> (attack pass key,
  clean pass, adversarial pass); attack step t uses fold_in(attack key, t). Logs 'clean_loss' and
  'adversarial_loss' with `include_clean`."""
  return _embedding_adversary(config, model, loss_fn, config.epsilon, 1)


@ADVERSARIES.register('embedding_pgd', _PGD_SCHEMA, check=_check, defaults=PGD_DEFAULTS)
def embedding_pgd_adversary(config, model: ModelFns, loss_fn: LossFn) -> LossFn:
  """Adapter: L2 PGD in embedding space, `num_steps` steps of `step_size` from δ = 0; otherwise as
  `embedding_fgm_adversary`."""
  return _embedding_adversary(config, model, loss_fn, config.step_size, config.num_steps)
