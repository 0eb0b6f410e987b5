"""TRADES (Zhang et al., ICML 2019): trade-off between clean accuracy and robustness.

    L(θ) = (1/B) Σ_b [ CE(f_θ(x_b), t(y_b)) + β · KL(softmax f_θ(x_b) || softmax f_θ(x'_b)) ]
    x'_b = argmax_{x' ∈ B_ε(x_b)} KL(softmax f(x_b) || softmax f(x'))     (PGD-k on the KL)

The inner maximisation runs on stop_gradient(θ) in `model_mode` (the reference code uses eval
mode); the clean and adversarial passes then run in training mode. The reference starts the attack
at x + 0.001·N(0, I); here it starts uniformly in the ε-ball (the KL and its gradient vanish at x).
TRADES makes its own adversarial examples, so `adversary` must be 'none'.

Two layers. `loss`, `adversarial_examples` and `terms` are pure functions of any
`apply_fn(params, images) -> logits` (no config, no model class):

    value, grads = jax.value_and_grad(lambda p: trades.loss(
        apply_fn, p, images, labels, key, beta=6.0, epsilon=0.1, step_size=0.025,
        num_steps=10))(params)

`trades_loss(config, model, targets_fn)` is the adapter the `loss` config section builds.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from robust_jax import arguments, attacks, losses
from robust_jax.config import schema as cs
from robust_jax.data.specs import SPECS
from robust_jax.methods import modality
from robust_jax.methods.adversarial_training import MODEL_MODES, attack_logits_fn
from robust_jax.models import ModelFns
from robust_jax.objectives import LOSSES, LossAux, LossFn, TargetsFn

__all__ = ['DEFAULTS', 'SCHEMA', 'adversarial_examples', 'loss', 'terms', 'trades_loss']

SCHEMA: cs.Schema = {
    'beta': cs.positive_real(note="β = 0 drops the robust term: use loss 'cross_entropy'"),
    # pixel units; below the radius that holds every image (`_check`)
    'epsilon': cs.positive_real(note="ε = 0 makes the robust term 0: use loss 'cross_entropy'"),
    'step_size': cs.positive_real(),
    'num_steps': cs.integer(1),
    'norm': cs.one_of(*attacks.NORMS),
    'model_mode': cs.one_of(*MODEL_MODES),
}
DEFAULTS = dict(beta=6.0, epsilon=0.1, step_size=0.025, num_steps=10, norm='linf',
                model_mode='eval')  # configs/fashion_mnist_adversarial.py:trades


def _check(config):
  modality.require(config, 'image', "config.loss.name='trades': attacks pixels",
                   "use loss 'cross_entropy' with adversary 'embedding_pgd'")
  if config.adversary.name != 'none':
    raise cs.ConfigError(f"config.adversary.name='{config.adversary.name}': TRADES makes its own "
                         "adversarial examples; use adversary 'none' with loss 'trades'")
  # A ball this large around any image in [0, 1]^d holds every image: the attack is unbounded.
  spec = SPECS[config.dataset.name]
  epsilon, norm = config.loss.epsilon, config.loss.norm
  bound = 1.0 if norm == 'linf' else math.sqrt(math.prod(spec.image_shape))
  if epsilon >= bound:
    raise cs.ConfigError(
        f'config.loss.epsilon={epsilon}: must be < {bound:.4g} for norm {norm} on {spec.name} '
        f'({"×".join(map(str, spec.image_shape))} pixels in [0, 1]): a ball that large holds '
        'every image (ε is in [0, 1] pixel units: 8/255 is 0.0314)')


def adversarial_examples(logits_fn: attacks.LogitsFn, images: jax.Array, labels: jax.Array,
                         key: jax.Array, *, epsilon: float, step_size: float, num_steps: int,
                         norm: str = 'linf') -> jax.Array:
  """TRADES' inner maximisation (Zhang et al. 2019, Algorithm 1): PGD-k on the KL to the clean
  prediction, from a uniform random start in the ball,

      x' = argmax_{x' ∈ B_ε(x) ∩ [0, 1]^d} KL(softmax f(x) || softmax f(x')).

  logits_fn: images (B, ...) -> logits (B, C), the model with frozen parameters
  (stop_gradient); images: (B, ...) in [0, 1]; labels: (B,) int (only checked: the KL needs none);
  key: the random start. Returns x' (B, ...), a constant. `attacks.pgd` with loss='kl'.
  """
  return attacks.pgd(logits_fn, images, labels, key, epsilon=epsilon, step_size=step_size,
                     num_steps=num_steps, norm=norm, loss='kl')


def terms(clean_logits: jax.Array, adversarial_logits: jax.Array,
          targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """TRADES' two terms (Zhang et al. 2019, eq. 5), (natural, robust), both batch means (scalars):

      natural = (1/B) Σ_b -Σ_j t_{b,j} log softmax(f(x_b))_j
      robust  = (1/B) Σ_b KL(softmax f(x_b) || softmax f(x'_b))

  clean_logits, adversarial_logits: (B, C) logits f(x), f(x'); targets: (B, C) distributions t.
  Gradients flow through both logits (the KL's reference f(x) is not stopped, as in the paper).
  """
  shape = losses.check_logits('clean_logits', clean_logits)
  if losses.check_logits('adversarial_logits', adversarial_logits) != shape:
    raise ValueError(f'adversarial_logits.shape={tuple(adversarial_logits.shape)}: must be '
                     f'(B, C) = {shape}, like clean_logits')
  losses.check_targets('targets', targets, shape)
  natural = jnp.mean(losses.soft_cross_entropy(clean_logits, targets))
  return natural, jnp.mean(losses.kl_divergence(clean_logits, adversarial_logits))


def loss(apply_fn: Callable[[object, jax.Array], jax.Array], params, images: jax.Array,
         labels: jax.Array, key: jax.Array, *, beta: float, epsilon: float, step_size: float,
         num_steps: int, norm: str = 'linf', targets: jax.Array | None = None) -> jax.Array:
  """The TRADES loss (Zhang et al. 2019), a scalar: natural + β · robust (`terms`) at the
  `adversarial_examples` x' of stop_gradient(params),

      L(θ) = (1/B) Σ_b [ CE(f_θ(x_b), t_b) + β · KL(softmax f_θ(x_b) || softmax f_θ(x'_b)) ].

  apply_fn: (params, images (B, ...)) -> logits (B, C); params: any pytree (the gradient of L
  flows to it through the two passes, not through the attack); images: (B, ...) in [0, 1];
  labels: (B,) int; key: the attack's random start; beta: β ≥ 0; epsilon, step_size, num_steps,
  norm: the attack's (see `attacks.pgd`); targets: (B, C), default one-hot(labels).
  Cost: 1 + num_steps + 2 forward passes (num_steps + 2 backward). The attack's arguments are
  checked as `attacks.pgd` does, the rest here (`robust_jax.arguments`; one-line errors).
  """
  arguments.check_callable('apply_fn', apply_fn, 'a function (params, images) -> logits')
  arguments.check_number('beta', beta, 0.0)
  frozen = jax.lax.stop_gradient(params)
  adversarial = adversarial_examples(lambda x: apply_fn(frozen, x), images, labels, key,
                                     epsilon=epsilon, step_size=step_size, num_steps=num_steps,
                                     norm=norm)
  clean_logits = apply_fn(params, images)
  if targets is None:
    targets = jax.nn.one_hot(labels, clean_logits.shape[-1])
  natural, robust = terms(clean_logits, apply_fn(params, adversarial), targets)
  return natural + beta * robust


@LOSSES.register('trades', SCHEMA, check=_check, defaults=DEFAULTS,
                 sweepable=('beta', 'epsilon', 'step_size'))
def trades_loss(config, model: ModelFns, targets_fn: TargetsFn) -> LossFn:
  """Adapter: `terms` of a robust_jax model, the attack in `model_mode`, both passes in training
  mode. Key contract: split 4 -> (attack's model key, random start, clean pass, adversarial pass);
  the model state goes through the clean pass, then the adversarial pass. Logs 'trades_kl'.
  """
  def loss_fn(params, model_state, batch, key):
    model_key, start_key, clean_key, adversarial_key = jax.random.split(key, 4)
    logits_fn = attack_logits_fn(model, params, model_state, config.model_mode, model_key)
    adversarial = adversarial_examples(logits_fn, batch['image'], batch['label'], start_key,
                                       epsilon=config.epsilon, step_size=config.step_size,
                                       num_steps=config.num_steps, norm=config.norm)
    clean_logits, model_state = model.apply(params, model_state, batch['image'], train=True,
                                            key=clean_key)
    adversarial_logits, model_state = model.apply(params, model_state, adversarial, train=True,
                                                  key=adversarial_key)
    natural, robust = terms(clean_logits, adversarial_logits, targets_fn(batch['label']))
    return natural + config.beta * robust, LossAux(model_state, clean_logits,
                                                   {'trades_kl': robust})
  return loss_fn
