"""DropAttack: masked adversarial perturbations of inputs and weights (Ni, Li & Kao 2021,
arXiv 2108.12805), as the official code computes it (papers.md 2.2 and 2.5).

    L = L(θ, x) + (1/K) Σ_t L(θ, x + R_x^t) + (1/K) Σ_t L(θ ⊕_W R_W^t)
    R^t = R^{t-1} + ε · M ⊙ d^t / ||d^t||_2,   R^0 = 0,   M ~ Bernoulli(p) drawn once per step
    d^t = g_0 + (1/K) Σ_{s<t} ∇ L_s           (the accumulated gradient, as the code's `.grad`)

M = 1 marks attacked coordinates (no 1/p rescaling). Perturbations are constants: the gradient of
every term flows to all parameters at its perturbed point. Weight masks cover the whole attacked
tensor and are shared by the batch; input masks are per example (keyed by batch index). The input
perturbation is normalised by the Frobenius norm of the whole batch gradient (`input_norm='batch'`,
the code's convention) or per example ('per_example'); inputs are not clipped to [0, 1].
ε for weights is absolute, or relative to ||W||_F (`weight_epsilon_relative`, PROPOSAL from
papers.md 2.4: ε_W = κ ||W||_F, as ε = 5 on an embedding table does not transfer to conv kernels).
Default attacked weight: the first layer's kernel (PROPOSAL, mirroring the code's first RNN layer).

Text, as the official notebooks: the inputs are token ids, and the "input" term perturbs the
embedding TABLE instead (`input_paths`, registered as 'dropattack_embedding'): R_x is a tensor
perturbation like R_W, with ε_x absolute, one mask for the whole table and the table's Frobenius
norm. Only the rows of tokens in the batch have a gradient, so only they move, and a token that
occurs several times in the batch has one row, hence one perturbation. The notebooks' hidden
tensor is the first layer's forward input-to-hidden kernel, 'forward_0/input_kernel' in
`robust_jax.models.text_models` (PyTorch's `weight_ih_l0`).

Cost: 1 + 2K forward-backward passes; each pass's single backward gives both the input and the
weight gradient, and the total gradient is assembled from them (`objectives.loss_with_gradient`).
The K steps run in `robust_jax.kernels.inner_loop` (a `fori_loop`, unrolled on CPU).

Two layers. `gradient` is a pure function of any `loss_fn(params, inputs, key) -> loss` and a
(nested) dict of parameters; it returns L and ∇_θ L for any optimizer:

    result = dropattack.gradient(loss_fn, params, images, key, attack_probability=0.5,
                                 num_steps=1, input_epsilon=1.0, weight_paths=('w1',),
                                 weight_epsilon=0.05, weight_epsilon_relative=True)
    updates, opt_state = optimizer.update(result.grads, opt_state, params)

`dropattack(config, loss_fn)` is the adapter the `weight_perturbation` config section builds.

`gradient` in parts: `_check_arguments`, `_one_pass` (one forward-backward pass), the clean pass,
then each term: `_input_term` (R_x on the inputs) or `_tensor_term` (R_W; text: R_x on the table),
both the recursion for R^t above in `_attack_steps`. The file is over 300 lines because it holds
both layers of one method (the pure function with its checks, two adapters with their schemas and
config checks), as every methods/ module does; splitting it would spread DropAttack over two files.
"""
from __future__ import annotations

import typing
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from robust_jax import arguments, random_utils
from robust_jax.attacks import threat_model
from robust_jax.config import schema as cs
from robust_jax.kernels.inner_loop import inner_loop
from robust_jax.methods import modality
from robust_jax.methods.loss_calls import with_aux_and_state
from robust_jax.objectives import LossFn, WEIGHT_PERTURBATIONS, loss_with_gradient
from robust_jax.objectives import require_float32_weights

__all__ = ['DEFAULTS', 'DropAttackGradient', 'EMBEDDING_DEFAULTS', 'EMBEDDING_SCHEMA',
           'INPUT_NORMS', 'SCHEMA', 'dropattack', 'dropattack_embedding', 'gradient']

INPUT_NORMS = ('batch', 'per_example')
SCHEMA: cs.Schema = {
    # p: probability that a coordinate is attacked
    'attack_probability': cs.real(0.0, 1.0, exclusive_minimum=True,
                                  note='probability 0 attacks no coordinate'),
    'num_steps': cs.integer(1),  # K
    'attack_input': cs.boolean(),
    'input_epsilon': cs.real(0.0),  # > 0 when attack_input (`_check_attacks_something`)
    'input_norm': cs.one_of(*INPUT_NORMS),
    'attack_weights': cs.boolean(),
    # '/'-joined parameter paths, e.g. 'Conv_0/kernel'; at least one when attack_weights
    'weight_paths': cs.sequence_of(cs.text(), unique=True),
    'weight_epsilon': cs.real(0.0),  # > 0 when attack_weights
    'weight_epsilon_relative': cs.boolean(),
}
DEFAULTS = dict(attack_probability=0.5, num_steps=1, attack_input=True, input_epsilon=1.0,
                input_norm='per_example', attack_weights=True, weight_paths=('Conv_0/kernel',),
                weight_epsilon=0.05, weight_epsilon_relative=True)  # configs/dropattack.py
# 'dropattack_embedding': the input term perturbs the parameter tensors `input_paths` (a text
# model's embedding table) with ε = input_epsilon, each normalised by its Frobenius norm.
EMBEDDING_SCHEMA: cs.Schema = {
    **{k: v for k, v in SCHEMA.items() if k != 'input_norm'},
    'input_paths': cs.sequence_of(cs.text(), min_length=1, unique=True),
}
# The AG News notebook (papers.md 2.3): ε = 5 on both, p = 0.7, K = 1, weight_ih_l0.
EMBEDDING_DEFAULTS = dict(attack_probability=0.7, num_steps=1, attack_input=True,
                          input_paths=('embedding/embedding',), input_epsilon=5.0,
                          attack_weights=True, weight_paths=('forward_0/input_kernel',),
                          weight_epsilon=5.0, weight_epsilon_relative=False)


# typing.Any, not Any: pdoc resolves a NamedTuple's generated __init__ annotations by module
# name, and `Any` alone names none.
class DropAttackGradient(typing.NamedTuple):
  """What `gradient` returns.

  loss: L, the clean term plus the means of the input and weight attack terms (scalar).
  grads: ∇_θ L, a pytree like params: every term's gradient at its own perturbed point.
  clean_loss: L(θ, x), the first term (scalar).
  aux: the clean pass's aux with `has_aux`, else None.
  state: the state after the last pass when `state` was given, else None.
  """

  loss: jax.Array
  grads: typing.Any
  clean_loss: jax.Array
  aux: typing.Any
  state: typing.Any


def _check(config):
  section = config.weight_perturbation
  if section.attack_input:
    modality.require(config, 'image',
                     'config.weight_perturbation.attack_input=True: perturbs the inputs',
                     "use weight_perturbation 'dropattack_embedding' (the input attack on the "
                     'embedding table, as the official code) or attack_input=False')
  if section.attack_input and config.adversary.name != 'none':
    raise cs.ConfigError(
        f"config.weight_perturbation.attack_input=True: DropAttack's input attack needs gradients "
        f"with respect to the inputs, which adversary '{config.adversary.name}' replaces; set "
        "attack_input=False or adversary 'none'")
  _check_attacks_something(section)
  if section.attack_weights:
    require_float32_weights(config, 'DropAttack with attack_weights=True')


def _check_embedding(config):
  modality.require(config, 'text', "config.weight_perturbation.name='dropattack_embedding': "
                   "perturbs a text model's embedding table", "use 'dropattack'")
  _check_attacks_something(config.weight_perturbation)
  require_float32_weights(config, "DropAttack on the embedding table ('dropattack_embedding')")


def _check_attacks_something(section):
  if not (section.attack_input or section.attack_weights):
    raise cs.ConfigError('config.weight_perturbation: DropAttack with attack_input=False and '
                         'attack_weights=False is plain training; enable one')
  if section.attack_input and section.input_epsilon == 0:
    raise cs.ConfigError(f'config.weight_perturbation.input_epsilon={section.input_epsilon}: '
                         'must be > 0 with '
                         'attack_input=True (ε = 0 repeats the clean loss); or set '
                         'attack_input=False')
  if section.attack_weights and section.weight_epsilon == 0:
    raise cs.ConfigError(f'config.weight_perturbation.weight_epsilon={section.weight_epsilon}: '
                         'must be > 0 with '
                         'attack_weights=True (ε = 0 repeats the clean loss); or set '
                         'attack_weights=False')
  if section.attack_weights and not section.weight_paths:
    raise cs.ConfigError("config.weight_perturbation.weight_paths=(): attack_weights=True needs "
                         "at least one parameter path, e.g. ('Conv_0/kernel',); or set "
                         'attack_weights=False')


def _missing(flat_params, weight_paths: Sequence[str]) -> list[str]:
  return [p for p in weight_paths if p not in flat_params]


def _check_arguments(loss_fn, params, inputs, key, *, attack_probability, num_steps, input_norm,
                     attack_input, attack_weights, weight_epsilon_relative, has_aux, input_epsilon,
                     weight_epsilon, weight_paths, input_paths) -> tuple[int, tuple, tuple]:
  """`gradient`'s checks, before any pass is traced; returns (K, weight_paths, input_paths)."""
  arguments.check_callable('loss_fn', loss_fn, 'a function (params, inputs, key) -> loss')
  arguments.check_number('attack_probability', attack_probability, 0.0, maximum=1.0)
  k = arguments.check_count('num_steps', num_steps)
  arguments.check_choice('input_norm', input_norm, INPUT_NORMS)
  arguments.check_flag('attack_input', attack_input)
  arguments.check_flag('attack_weights', attack_weights)
  arguments.check_flag('weight_epsilon_relative', weight_epsilon_relative)
  arguments.check_flag('has_aux', has_aux)
  arguments.check_number('input_epsilon', input_epsilon, 0.0)
  arguments.check_number('weight_epsilon', weight_epsilon, 0.0)
  weight_paths = arguments.check_paths('weight_paths', weight_paths)
  input_paths = arguments.check_paths('input_paths', input_paths)
  arguments.check_key(key, purpose='draws the attack masks')
  if not (attack_input or attack_weights):
    raise ValueError('attack_input=False, attack_weights=False: DropAttack attacks the inputs, '
                     'the weights or both; enable one')
  arguments.check_mapping('params', params, "a (nested) dict of arrays, e.g. Flax's params, so "
                          "that weight_paths can name its tensors")
  if not hasattr(inputs, 'dtype') or getattr(inputs, 'ndim', 0) < 1:
    raise TypeError(f'inputs={type(inputs).__name__} of shape {tuple(np.shape(inputs))}: must be '
                    'an array (B, ...) with a batch axis first')
  # Named in the order of jax's pytrees (sorted keys), as the passes see θ.
  flat = traverse_util.flatten_dict(jax.lax.stop_gradient(params), sep='/')
  if attack_weights and not weight_paths:
    raise ValueError(f"weight_paths=(): attack_weights=True needs the '/'-joined paths of the "
                     f'tensors to attack; parameters: {", ".join(flat)}')
  for name, paths, used in (('input_paths', input_paths, attack_input),
                            ('weight_paths', weight_paths, attack_weights)):
    missing = _missing(flat, paths) if used else []
    if missing:
      raise ValueError(f'{name}={tuple(paths)!r}: {missing[0]!r} is not a parameter; '
                       f'parameters: {", ".join(flat)}')
    for path in paths if used else ():
      if not jnp.issubdtype(getattr(flat[path], 'dtype', np.dtype(object)), jnp.floating):
        dtype = str(getattr(flat[path], 'dtype', type(flat[path]).__name__))
        raise TypeError(f'{name}={tuple(paths)!r}: {path!r} is {dtype}; only '
                        'floating-point tensors can be perturbed')
  if attack_input and not input_paths and not jnp.issubdtype(inputs.dtype, jnp.floating):
    raise ValueError(f'inputs.dtype={inputs.dtype}: the input attack perturbs float inputs; for '
                     "token ids name the embedding table in input_paths")
  return k, weight_paths, input_paths


def _one_pass(loss_fn, *, has_aux: bool, with_state: bool, input_gradient: bool):
  """evaluate(θ, x, key, state) -> (L, aux, new state, ∇_θ L, ∇_x L or None): one forward-backward
  pass, whose one backward gives ∇_θ and ∇_x together (the code's `backward`, papers.md 2.2)."""
  value_and_grads = jax.value_and_grad(
      with_aux_and_state(loss_fn, has_aux=has_aux, with_state=with_state),
      argnums=(0, 1) if input_gradient else 0, has_aux=True)

  def evaluate(p, x, pass_key, state):
    (loss, (aux, state)), grads = value_and_grads(p, x, pass_key, state=state)
    grad, input_grad = grads if input_gradient else (grads, None)
    return loss, aux, state, grad, input_grad

  return evaluate


def _normalise(direction, per_example: bool):
  """d / ||d||₂, the norm over the whole array or per example (`threat_model.per_example_l2`);
  0 where the norm is 0 or not finite (papers.md 2.2 `attack`: `if n != 0 and not nan`)."""
  if per_example:
    norm = threat_model.per_example_l2(direction)
  else:
    norm = jnp.sqrt(jnp.sum(direction * direction))
  ok = (norm > 0) & jnp.isfinite(norm)
  return jnp.where(ok, direction / jnp.where(ok, norm, 1.0), 0.0)


def _tree_add_scaled(tree, other, scale):
  return jax.tree.map(lambda a, b: a + scale * b, tree, other)


def _attack_steps(run, totals, *, values, masks, epsilons, directions, per_example: bool, k: int):
  """The K steps of one attack term, papers.md 2.2 (`attack` in the loop of `train_DA`):

      R^t = R^{t-1} + ε · M ⊙ d^t / ||d^t||₂,   R^0 = 0,   d^t = g_0 + (1/K) Σ_{s<t} ∇L_s.

  values (the attacked arrays), masks M, epsilons ε and directions d^1 = g_0: dicts by the same
  names. run(R^t, t, state) -> (L_t, new state, ∇_θ L_t, ∇L_t by name) is pass t at the perturbed
  point. Returns totals = (loss, ∇_θ, state) plus (1/K) Σ_t L_t and (1/K) Σ_t ∇_θ L_t, with the
  state after the last pass.
  """
  def step(t, carry):
    perturbations, directions, loss_sum, grad_sum, state = carry
    perturbations = {n: perturbations[n] + epsilons[n] * masks[n] * _normalise(
        directions[n], per_example) for n in perturbations}
    loss, state, grad, attacked_grads = run(perturbations, t, state)
    directions = {n: directions[n] + attacked_grads[n] / k for n in directions}
    return (perturbations, directions, loss_sum + loss / k,
            _tree_add_scaled(grad_sum, grad, 1 / k), state)

  zeros = {n: jnp.zeros_like(v) for n, v in values.items()}
  _, _, *totals = inner_loop(k, step, (zeros, directions, *totals))
  return tuple(totals)


def _input_term(evaluate, frozen, inputs, clean_input_grad, totals, *, mask_key, pass_key,
                epsilon, per_example: bool, attack_probability, k):
  """Adds the input term (1/K) Σ_t L(θ, x + R_x^t) (`_attack_steps`), ||d||₂ per example or over
  the batch; example b's mask M_b ~ Bernoulli(p) from fold_in(mask key, b), pass t's key
  fold_in(pass key, t)."""
  mask = random_utils.per_example_bernoulli(mask_key, attack_probability, inputs.shape)

  def run(perturbations, t, state):
    loss, _, state, grad, input_grad = evaluate(
        frozen, inputs + perturbations['x'], jax.random.fold_in(pass_key, t), state)
    return loss, state, grad, {'x': input_grad}

  return _attack_steps(run, totals, values={'x': inputs}, masks={'x': mask},
                       epsilons={'x': epsilon}, directions={'x': clean_input_grad},
                       per_example=per_example, k=k)


def _tensor_term(evaluate, flat, inputs, flat_clean_grad, totals, *, paths, mask_key, pass_key,
                 epsilon, relative: bool, attack_probability, k):
  """Adds (1/K) Σ_t L(θ ⊕ R^t) (`_attack_steps`) with R^t on the parameter tensors `paths` (the
  weight term, or the input term on an embedding table): ||d||_F and one mask M ~ Bernoulli(p) per
  tensor, the i-th from fold_in(mask key, i); ε times ||W||_F when `relative`; pass t's key
  fold_in(pass key, t)."""
  masks = {p: jax.random.bernoulli(jax.random.fold_in(mask_key, i), attack_probability,
                                   flat[p].shape)
           for i, p in enumerate(paths)}
  epsilons = {p: epsilon * (jnp.linalg.norm(flat[p]) if relative else 1.0) for p in paths}

  def run(perturbations, t, state):
    perturbed = traverse_util.unflatten_dict(
        {**flat, **{p: flat[p] + r for p, r in perturbations.items()}}, sep='/')
    loss, _, state, grad, _ = evaluate(perturbed, inputs, jax.random.fold_in(pass_key, t), state)
    return loss, state, grad, traverse_util.flatten_dict(grad, sep='/')

  return _attack_steps(run, totals, values={p: flat[p] for p in paths}, masks=masks,
                       epsilons=epsilons, directions={p: flat_clean_grad[p] for p in paths},
                       per_example=False, k=k)


def gradient(loss_fn: Callable[..., typing.Any], params, inputs: jax.Array, key: jax.Array,
             *, attack_probability: float, num_steps: int, input_epsilon: float,
             input_norm: str = 'per_example', weight_paths: Sequence[str] = (),
             weight_epsilon: float = 0.0, weight_epsilon_relative: bool = False,
             attack_input: bool = True, attack_weights: bool = True, has_aux: bool = False,
             state: typing.Any = None, input_paths: Sequence[str] = ()) -> DropAttackGradient:
  """DropAttack's loss and total gradient (Ni et al. 2021; the module docstring's equations):

      L = L(θ, x) + (1/K) Σ_t L(θ, x + R_x^t) + (1/K) Σ_t L(θ ⊕_W R_W^t),
      R^t = R^{t-1} + ε · M ⊙ d^t / ||d^t||₂,   d^t = g_0 + (1/K) Σ_{s<t} ∇L_s,   M ~ Bernoulli(p)

  loss_fn: L, called as `loss_fn(params, inputs, key)` (key for its own randomness, e.g. dropout);
    returns a scalar, or as described in `robust_jax.methods.loss_calls` with `has_aux` and `state`.
  params: θ, a (nested) dict of float arrays; `weight_paths` name its attacked tensors, '/'-joined
    (e.g. 'Dense_0/kernel'), each perturbed with ε_W = weight_epsilon (times ||W||_F when
    `weight_epsilon_relative`) and one mask M drawn for the whole tensor.
  inputs: (B, ...) float; perturbed with ε_x = input_epsilon and per-example masks M, normalised
    by the whole batch gradient's norm (input_norm='batch', the code's) or per example.
  input_paths: when given, the input term perturbs these parameter tensors instead of `inputs`
    (a text model's embedding table, as the official code; `inputs` may then be token ids): each
    like a weight tensor, with ε = input_epsilon (absolute) and its own mask.
  key: PRNG key. Contract: split 5 -> (clean pass, input masks, input passes, weight masks, weight
    passes); pass t uses fold_in(pass key, t); example b's input mask fold_in(input mask key, b);
    the i-th attacked tensor's mask fold_in(weight mask key, i) (input_paths: fold_in(input mask
    key, i)).
  attack_probability: p in [0, 1]; num_steps: a Python int K ≥ 1; input_epsilon, weight_epsilon:
  finite, ≥ 0 (may be traced); the flags True or False. Arguments are checked before tracing the
  passes (`robust_jax.arguments`; one-line ValueError or TypeError).
  Returns `DropAttackGradient(loss, grads, clean_loss, aux, state)`; no gradient flows through it
  (feed `grads` to an optimizer). Cost: 1 + K (input) + K (weights) forward-backward passes.
  """
  k, weight_paths, input_paths = _check_arguments(
      loss_fn, params, inputs, key, attack_probability=attack_probability, num_steps=num_steps,
      input_norm=input_norm, attack_input=attack_input, attack_weights=attack_weights,
      weight_epsilon_relative=weight_epsilon_relative, has_aux=has_aux,
      input_epsilon=input_epsilon, weight_epsilon=weight_epsilon, weight_paths=weight_paths,
      input_paths=input_paths)
  perturbs_inputs = attack_input and not input_paths
  frozen = jax.lax.stop_gradient(params)
  flat = traverse_util.flatten_dict(frozen, sep='/')
  evaluate = _one_pass(loss_fn, has_aux=has_aux, with_state=state is not None,
                       input_gradient=perturbs_inputs)
  # Separate keys for masks and for the passes' own randomness (dropout, feature masks).
  clean_key, input_mask_key, input_pass_key, weight_mask_key, weight_pass_key = (
      jax.random.split(key, 5))
  clean_loss, aux, state, clean_grad, clean_input_grad = evaluate(frozen, inputs, clean_key, state)
  totals = (clean_loss, clean_grad, state)
  common = dict(attack_probability=attack_probability, k=k)
  if perturbs_inputs:
    totals = _input_term(evaluate, frozen, inputs, clean_input_grad, totals,
                         mask_key=input_mask_key, pass_key=input_pass_key, epsilon=input_epsilon,
                         per_example=input_norm == 'per_example', **common)
  flat_clean_grad = traverse_util.flatten_dict(clean_grad, sep='/')
  if attack_input and input_paths:  # text: R_x on the embedding table
    totals = _tensor_term(evaluate, flat, inputs, flat_clean_grad, totals, paths=input_paths,
                          mask_key=input_mask_key, pass_key=input_pass_key,
                          epsilon=input_epsilon, relative=False, **common)
  if attack_weights:
    totals = _tensor_term(evaluate, flat, inputs, flat_clean_grad, totals, paths=weight_paths,
                          mask_key=weight_mask_key, pass_key=weight_pass_key,
                          epsilon=weight_epsilon, relative=weight_epsilon_relative, **common)
  total_loss, total_grad, state = totals
  return DropAttackGradient(total_loss, total_grad, clean_loss, aux, state)


@WEIGHT_PERTURBATIONS.register('dropattack', SCHEMA, check=_check, defaults=DEFAULTS,
                               sweepable=('input_epsilon', 'weight_epsilon'))
def dropattack(config, loss_fn: LossFn) -> LossFn:
  """Adapter: DropAttack's objective on a robust_jax LossFn, from `gradient`.

  config: the `weight_perturbation` section (SCHEMA). The objective is a scalar equal to L whose
  gradient is `gradient`'s total gradient (`objectives.loss_with_gradient`), so the train step's
  one `jax.value_and_grad` returns both. The model state is threaded through all 1 + 2K passes;
  the clean pass's logits and metrics are reported, with 'clean_loss'.
  """
  return _adapter(config, loss_fn, input_paths=(), input_norm=config.input_norm)


@WEIGHT_PERTURBATIONS.register('dropattack_embedding', EMBEDDING_SCHEMA, check=_check_embedding,
                               defaults=EMBEDDING_DEFAULTS,
                               sweepable=('input_epsilon', 'weight_epsilon'))
def dropattack_embedding(config, loss_fn: LossFn) -> LossFn:
  """Adapter: DropAttack as the official text notebooks, the input term on the parameter tensors
  `config.input_paths` (the embedding table), the batch's token ids unchanged. config: the
  `weight_perturbation` section (EMBEDDING_SCHEMA); otherwise as `dropattack`."""
  return _adapter(config, loss_fn, input_paths=tuple(config.input_paths),
                  input_norm=DEFAULTS['input_norm'])  # input_norm: unused with input_paths


def _adapter(config, loss_fn: LossFn, input_paths: tuple[str, ...], input_norm: str) -> LossFn:
  def dropattack_loss_fn(params, model_state, batch, key):
    names = traverse_util.flatten_dict(params, sep='/')
    for name, paths, used in (('input_paths', input_paths, config.attack_input),
                              ('weight_paths', config.weight_paths, config.attack_weights)):
      missing = _missing(names, paths)
      if used and missing:
        raise cs.ConfigError(f'config.weight_perturbation.{name}: {missing[0]!r} is not a '
                             f'parameter; parameters: {", ".join(names)}')

    def pass_loss(p, images, pass_key, *, state):
      loss, aux = loss_fn(p, state, {**batch, 'image': images}, pass_key)
      return loss, (aux, aux.model_state)

    result = gradient(
        pass_loss, params, batch['image'], key, attack_probability=config.attack_probability,
        num_steps=config.num_steps, input_epsilon=config.input_epsilon, input_norm=input_norm,
        weight_paths=tuple(config.weight_paths), weight_epsilon=config.weight_epsilon,
        weight_epsilon_relative=config.weight_epsilon_relative, attack_input=config.attack_input,
        attack_weights=config.attack_weights, has_aux=True, state=model_state,
        input_paths=input_paths)
    return (loss_with_gradient(result.loss, result.grads, params),
            result.aux.replace(model_state=result.state,
                               metrics={**result.aux.metrics, 'clean_loss': result.clean_loss}))

  return dropattack_loss_fn
