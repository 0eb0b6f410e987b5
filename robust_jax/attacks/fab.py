"""FAB, the fast adaptive boundary attack (Croce & Hein, ICML 2020): minimal L∞ or L2 perturbations.

At the iterate x^k the boundary between the true class y and a class j is linearised, with
f_j = z_j(x^k) - z_y(x^k) and w_j = ∇_x f_j(x^k): π_j = {x' : f_j + ⟨w_j, x' - x^k⟩ = 0}.
The untargeted attack takes the class whose linearised boundary is nearest,
j = argmin_{j≠y} |f_j| / ‖w_j‖_* (dual norm: L1 for L∞, L2 for L2); FAB-T takes its target t.
The iterate and the clean image x are both projected onto π_j ∩ [0, 1]^d (`project_onto_hyperplane`:
δ = P(x^k) - x^k, δ_0 = P(x) - x) and the two are combined, biased towards x:

    α       = min(‖δ‖ / (‖δ‖ + ‖δ_0‖), α_max)          (‖δ‖, ‖δ_0‖ at least 1e-8)
    x^{k+1} = clip((1 - α)(x^k + η δ) + α (x + η δ_0), 0, 1)
    x^{k+1} ← x + β (x^{k+1} - x)   where x^{k+1} is misclassified (kept if the closest so far)

Defaults follow the reference code (fra31/auto-attack, `fab_base.py`): α_max = 0.1, η = 1.05,
β = 0.9, 100 steps; AutoAttack 'standard' runs FAB-T with 1 restart and 9 target classes. The first
run starts at x, run r > 0 at x + (ε/2) u / ‖u‖, u ~ U[-1, 1]^d (L∞) or N(0, I) (L2), clipped to
[0, 1]; without `epsilon` the reference's radius ε = 0.3 (L∞) or 1.0 (L2) is used for these starts.
FAB-T attacks the classes ranked 2, ..., num_target_classes + 1 by the clean logits (at most C - 1
of them), `restarts` runs each; its success is still "not classified as y", as in the reference.

Only examples classified correctly at x are attacked; the others come back unchanged with norm 0.
With `epsilon` given (AutoAttack's use), an example whose perturbation is at most ε takes part in no
later run, as in the reference, and the returned image is that point (x where none was found within
ε). Without it every run is made and each example keeps its smallest perturbation. The run loop is
a `lax.while_loop` that ends once no example takes part; the step loop a `lax.fori_loop`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from robust_jax.attacks import arguments, attack_losses, threat_model
from robust_jax.attacks.pgd import LogitsFn
from robust_jax.attacks.threat_model import TINY

__all__ = ['fab', 'project_onto_hyperplane']

# Radius of the random restarts without `epsilon`: the reference's DEFAULT_EPS_DICT_BY_NORM.
_RESTART_RADIUS = {'linf': 0.3, 'l2': 1.0}


def _norm(vectors: jax.Array, norm: str) -> jax.Array:
  """(B,) L∞ or L2 norm of (B, D) vectors."""
  return threat_model.distance(vectors, jnp.zeros_like(vectors), norm)


def _threshold_level(weights: jax.Array, thresholds: jax.Array, target: jax.Array) -> jax.Array:
  """Per row, λ >= 0 with Σ_i v_i min(λ, q_i) = r; inf where even Σ_i v_i q_i < r.

  weights v, thresholds q: (B, D), both >= 0; target r: (B,) >= 0. The sum is piecewise linear and
  nondecreasing in λ with kinks at the q_i: sorting q, its value at the kinks comes from cumulative
  sums; the number k of kinks below r names the linear piece, which is then solved for λ. One
  stable sort carries v along with q (the arrays of argsort and two gathers, ~20 % faster on CPU).
  """
  q, v = jax.lax.sort((thresholds, weights), dimension=-1, num_keys=1, is_stable=True)
  below = lambda a: jnp.pad(jnp.cumsum(a, -1), ((0, 0), (1, 0)))  # column k: Σ_{i<k}
  below_vq, below_v = below(v * q), below(v)
  total_v = below_v[:, -1:]
  at_kinks = below_vq[:, 1:] + q * (total_v - below_v[:, 1:])  # the sum at λ = q_k
  k = jnp.sum(at_kinks < target[:, None], -1)
  at_k = lambda a: jnp.take_along_axis(a, k[:, None], -1)[:, 0]
  level = (target - at_k(below_vq)) / jnp.maximum(total_v[:, 0] - at_k(below_v), TINY)
  return jnp.where(k == q.shape[-1], jnp.inf, level)


def project_onto_hyperplane(points: jax.Array, normals: jax.Array, residuals: jax.Array,
                            norm: str) -> jax.Array:
  """The shortest step d (B, D) in `norm` with ⟨w, x + d⟩ = b and x + d ∈ [0, 1]^D.

  points x, normals w: (B, D); residuals r = ⟨w, x⟩ - b: (B,). With w's sign flipped where r < 0,
  each coordinate moves against w up to its box bound, room_i = x_i (w_i > 0) or 1 - x_i (w_i < 0):

      L∞:  d_i = -sign(w_i) min(λ, room_i),        Σ_i |w_i| min(λ, room_i) = |r|
      L2:  d_i = -w_i min(λ, room_i / |w_i|),      Σ_i w_i² min(λ, room_i / |w_i|) = |r|

  (L2 ignores coordinates with |w_i| <= 1e-8). These are the reference's sorted-threshold
  projections (fab_projections.py: projection_linf, projection_l2); where the box does not reach
  the hyperplane every coordinate moves to its bound (λ = ∞), as there.
  """
  w = normals * jnp.where(residuals >= 0, 1.0, -1.0)[:, None]
  room = jnp.where(w > 0, points, 1.0 - points)
  if norm == 'linf':
    level = _threshold_level(jnp.abs(w), room, jnp.abs(residuals))
    return -jnp.sign(w) * jnp.minimum(level[:, None], room)
  w = jnp.where(jnp.abs(w) > 1e-8, w, 0.0)
  reach = jnp.where(w != 0, room / jnp.where(w != 0, jnp.abs(w), 1.0), 0.0)
  level = _threshold_level(w * w, reach, jnp.abs(residuals))
  return -w * jnp.minimum(level[:, None], reach)


def _boundary_terms(logits_fn: LogitsFn, x: jax.Array, labels: jax.Array, classes: jax.Array):
  """f (B, K) = z_c - z_y at x and w (B, K, D) = ∇_x (z_c - z_y) for the classes c (K, B).

  One forward pass and K backward passes, batched with vmap over the K cotangents e_c - e_y.
  """
  logits, pullback = jax.vjp(logits_fn, x)
  num_classes = logits.shape[-1]
  cotangents = (jax.nn.one_hot(classes, num_classes, dtype=logits.dtype)
                - jax.nn.one_hot(labels, num_classes, dtype=logits.dtype))
  gradients = jax.vmap(lambda cotangent: pullback(cotangent)[0])(cotangents)
  values = jnp.einsum('kbc,bc->bk', cotangents, logits)
  return values, jnp.moveaxis(gradients, 0, 1).reshape(x.shape[0], classes.shape[0], -1)


def _run(logits_fn, images, labels, classes, start, *, norm, num_steps, alpha_max, eta, beta):
  """One FAB run from `start`: (smallest norm found (B,), its point (B, D)); inf, x where none."""
  shape, batch = images.shape, images.shape[0]
  x0 = images.reshape(batch, -1)
  is_label = classes.T == labels[:, None]  # (B, K): never the nearest boundary

  def body(_, state):
    x1, best_norm, best = state
    values, gradients = _boundary_terms(logits_fn, x1.reshape(shape), labels, classes)
    dual = (jnp.sum(jnp.abs(gradients), -1) if norm == 'linf'
            else jnp.linalg.norm(gradients, axis=-1))
    nearest = jnp.argmin(jnp.where(is_label, jnp.inf, jnp.abs(values) / (dual + TINY)), -1)
    w = jnp.take_along_axis(gradients, nearest[:, None, None], 1)[:, 0]
    f = jnp.take_along_axis(values, nearest[:, None], 1)[:, 0]
    step = project_onto_hyperplane(x1, w, f, norm)
    step0 = project_onto_hyperplane(x0, w, f + jnp.sum(w * (x0 - x1), -1), norm)
    size, size0 = (jnp.maximum(_norm(d, norm), 1e-8)[:, None] for d in (step, step0))
    alpha = jnp.clip(size / (size + size0), 0.0, alpha_max)
    x1 = jnp.clip((1 - alpha) * (x1 + eta * step) + alpha * (x0 + eta * step0), 0.0, 1.0)
    misclassified = attack_losses.success(logits_fn(x1.reshape(shape)), labels)
    distance = _norm(x1 - x0, norm)
    closer = misclassified & (distance < best_norm)
    return (jnp.where(misclassified[:, None], x0 + beta * (x1 - x0), x1),
            jnp.where(closer, distance, best_norm), jnp.where(closer[:, None], x1, best))

  initial = (start.reshape(batch, -1), jnp.full((batch,), jnp.inf, images.dtype), x0)
  _, best_norm, best = jax.lax.fori_loop(0, num_steps, body, initial)
  return best_norm, best


def _random_start(key: jax.Array, images: jax.Array, radius, norm: str) -> jax.Array:
  """x + (radius / 2) u / ‖u‖, u ~ U[-1, 1]^d (L∞) or N(0, I) (L2), clipped to [0, 1].

  APGD's sphere start (`apgd.start_point`) but for two details kept apart on purpose: u has the
  images' dtype, and ‖u‖_2 is `_norm` of the flattened u, whose reduction differs in the last bit
  from `threat_model.per_example_l2` (e.g. 6e-8 on 4×8×8×3 float32), so sharing would move results.
  """
  if norm == 'linf':
    u = jax.random.uniform(key, images.shape, images.dtype, minval=-1.0, maxval=1.0)
  else:
    u = jax.random.normal(key, images.shape, images.dtype)
  size = _norm(u.reshape(images.shape[0], -1), norm).reshape((-1,) + (1,) * (images.ndim - 1))
  return jnp.clip(images + 0.5 * radius * u / (size + TINY), 0.0, 1.0)


def _check(logits_fn, images, labels, key, *, epsilon, norm, num_steps, restarts, alpha_max, eta,
           beta, targeted, target_class_rank, num_target_classes) -> tuple[int, ...]:
  """Checks every argument (one-line errors); returns the target ranks ((0,) when untargeted)."""
  arguments.check_choice('norm', norm, threat_model.NORMS)
  arguments.check_flag('targeted', targeted)
  arguments.check_count('num_steps', num_steps)
  restarts = arguments.check_count('restarts', restarts)
  num_target_classes = arguments.check_count('num_target_classes', num_target_classes)
  if epsilon is not None:
    arguments.check_number('epsilon', epsilon, 0.0)
  arguments.check_number('alpha_max', alpha_max, 0.0, maximum=1.0)
  arguments.check_number('eta', eta, 0.0, strict=True)
  arguments.check_number('beta', beta, 0.0, maximum=1.0)
  if restarts > 1:
    arguments.check_key(key)
  num_classes = arguments.check_inputs(logits_fn, images, labels)
  if num_classes < 2:
    raise ValueError(f'logits_fn gives C = {num_classes}: FAB needs at least 2 classes')
  if not targeted:
    if target_class_rank is not None:
      raise ValueError(f'target_class_rank={target_class_rank!r}: needs targeted=True (FAB-T)')
    return (0,)
  if target_class_rank is not None:
    return (arguments.check_int_range(
        'target_class_rank', target_class_rank, 2, num_classes,
        f' (rank 1 is the predicted class; logits_fn gives C = {num_classes})', traced=True),)
  return tuple(range(2, min(num_target_classes, num_classes - 1) + 2))


def fab(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, key: jax.Array | None = None,
        *, epsilon: float | None = None, norm: str = 'linf', num_steps: int = 100,
        restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9,
        targeted: bool = False, target_class_rank: int | None = None,
        num_target_classes: int = 9) -> tuple[jax.Array, jax.Array]:
  """(adversarial images (B, ...), smallest perturbation norm found (B,)).

  The norm is inf where nothing was found, 0 for examples misclassified at x; with `epsilon` the
  images are the clean ones wherever the norm exceeds ε. targeted=True is FAB-T: it attacks the
  class ranked `target_class_rank` (2..C) by the clean logits, or, with None, the ranks
  2..num_target_classes + 1 in turn; the rank may be an integer scalar traced by jit (unchecked),
  and one rank alone draws its restarts as that rank's runs of the whole sweep (AutoAttack runs
  the ranks one by one on the examples still robust). A key is needed only for `restarts > 1`.
  Arguments are checked once before tracing (`arguments.py`; ValueError or TypeError, one line).
  """
  ranks = _check(logits_fn, images, labels, key, epsilon=epsilon, norm=norm, num_steps=num_steps,
                 restarts=restarts, alpha_max=alpha_max, eta=eta, beta=beta, targeted=targeted,
                 target_class_rank=target_class_rank, num_target_classes=num_target_classes)
  batch = images.shape[0]
  clean_logits = logits_fn(images)
  correct = jnp.argmax(clean_logits, -1) == labels
  by_score = jnp.argsort(-clean_logits, axis=-1)  # classes by decreasing clean logit
  all_classes = jnp.broadcast_to(jnp.arange(clean_logits.shape[-1])[:, None],
                                 (clean_logits.shape[-1], batch))
  radius = _RESTART_RADIUS[norm] if epsilon is None else epsilon
  expand = lambda v: v.reshape((-1,) + (1,) * (images.ndim - 1))
  first_run = (ranks[0] - 2) * restarts if targeted else 0  # of the whole sweep's runs

  def taking_part(best_norm):
    return correct if epsilon is None else correct & (best_norm > epsilon)

  def one_run(state):
    run, best_norm, best = state
    classes = all_classes
    if targeted:
      classes = by_score[:, jnp.asarray(ranks)[run // restarts] - 1][None]
    start = images
    if restarts > 1:
      start = jnp.where(run % restarts > 0,
                        _random_start(jax.random.fold_in(key, first_run + run), images, radius,
                                      norm), images)
    run_norm, run_best = _run(logits_fn, images, labels, classes, start, norm=norm,
                              num_steps=num_steps, alpha_max=alpha_max, eta=eta, beta=beta)
    better = taking_part(best_norm) & (run_norm < best_norm)
    return (run + 1, jnp.where(better, run_norm, best_norm),
            jnp.where(expand(better), run_best.reshape(images.shape), best))

  def more_runs(state):
    run, best_norm, _ = state
    return (run < len(ranks) * restarts) & jnp.any(taking_part(best_norm))

  initial = (jnp.asarray(0), jnp.full((batch,), jnp.inf, images.dtype), images)
  _, best_norm, best = jax.lax.while_loop(more_runs, one_run, initial)
  found = jnp.isfinite(best_norm) if epsilon is None else best_norm <= epsilon
  adversarial = jnp.where(expand(correct & found), best, images)
  return jax.lax.stop_gradient(adversarial), jax.lax.stop_gradient(
      jnp.where(correct, best_norm, 0.0))
