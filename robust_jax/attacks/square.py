"""Square attack (Andriushchenko et al., ECCV 2020): random search on the logits, L∞ and L2.

It queries the model's logits only, never a gradient, so it also breaks models whose gradients are
masked. Per still-robust example it keeps the best point x̂, its margin
m = z_y - max_{j≠y} z_j (targeted: max_{j≠t} z_j - z_t) and the loss it lowers (the margin;
targeted: the cross-entropy to t, as the reference). Each query changes an s × s window of x̂ and
is kept if it lowers the loss or makes m <= 0; an example with m <= 0 is done.

* L∞. Start: x + ε v, v = ±1 constant along each image column (vertical stripes), drawn per example,
  column and channel. Query: the window of x̂ becomes x̂ ± 2ε (one sign per channel), projected
  onto B_ε(x) ∩ [0, 1].
* L2. Start: a grid of tiles of side ⌊H/5⌋ (1 below 5 pixels, where the reference fails), each the
  pattern `l2_window_pattern` (randomly transposed) times a sign per example, tile and channel,
  scaled to ‖δ‖_2 = ε and clipped. Query, with δ = x̂ - x and a second window W2:
      δ_W1 ← (η_s · sign + δ_W1 / ‖δ_W1‖) / ‖·‖ · √(max(ε² - ‖δ‖², 0) / C + ‖δ_{W1∪W2}‖²)
      δ_{W2 \\ W1} ← 0,    x_new = clip(x + ε δ / ‖δ‖, 0, 1)
  (window norms ‖δ_W1‖ and ‖·‖ per channel, the others per example).

Window side s = round(√(p H W)), at least 1 (L∞) or at least 3 and odd (L2), at most min(H, W);
p = `p_schedule(i)` is p_init halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000.
With `rescale_schedule` the iteration is counted out of 10,000 (⌊10⁴ i / num_queries⌋), the default
of the reference's SquareAttack; AutoAttack runs it with resc_schedule=False, the default here. As
in the reference (fra31/auto-attack, square.py), a query uses one window size, position, pattern
orientation and (L∞) sign per channel for the whole batch; the window is a mask from iota
comparisons with the traced size and position, so every shape is static under jit.

The query loop is a `lax.while_loop` that ends after num_queries queries or once every example is
done; each restart attacks the examples still robust, and none is run once none is left. A run
evaluates the model on its start and once per query (at most num_queries + 1 queries per example
and run, counted as the reference counts them); add one evaluation of the clean images and one of
each run's result. Examples misclassified (targeted: already classified as the target) at x come
back unchanged, as do those never broken; the others come back as the first misclassified point
found, in B_ε(x) ∩ [0, 1].
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax.attacks import arguments, attack_losses, threat_model
from robust_jax.attacks.pgd import LogitsFn
from robust_jax.attacks.threat_model import TINY, per_example_l2

__all__ = ['P_BREAKPOINTS', 'l2_window_pattern', 'p_schedule', 'square']

P_BREAKPOINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(num_queries: int, p_init: float = 0.8,
               rescale_schedule: bool = False) -> np.ndarray:
  """(num_queries,) the fraction p of the image that the window of query i covers.

  p = p_init / 2^k, k = the number of breakpoints P_BREAKPOINTS below the iteration i (or below
  ⌊10⁴ i / num_queries⌋ with `rescale_schedule`).
  """
  iterations = np.arange(num_queries)
  if rescale_schedule:
    iterations = (iterations / num_queries * 10000).astype(np.int64)
  return p_init / 2.0 ** np.searchsorted(P_BREAKPOINTS, iterations, side='left')


def _window_sides(p: np.ndarray, shape: tuple[int, int, int], norm: str) -> np.ndarray:
  """(N,) window side per query: round(√(p H W)), >= 1 (L∞) or >= 3 and odd (L2), <= min(H, W)."""
  height, width, channels = shape
  sides = {}
  for value in np.unique(p):
    side = int(round(math.sqrt(float(value) * (height * width * channels) / channels)))
    side = max(side, 1) if norm == 'linf' else max(side, 3) + (max(side, 3) % 2 == 0)
    sides[value] = min(side, height, width)
  return np.asarray([sides[value] for value in p], np.int32)


def _nested_squares(rows: int, cols: int) -> np.ndarray:
  """(rows, cols): Σ_{k=m}^{K-1} 1/(k+1)², m = Chebyshev distance to (rows//2, cols//2), unit norm.

  K = max(rows, cols) // 2 + 1: each pixel sums the weights 1/(k+1)² of the centred squares of
  sides 2k + 1 (k < K, cut to the rectangle) that contain it.
  """
  num_squares = max(rows // 2, cols // 2) + 1
  tail = np.cumsum((1.0 / np.arange(1, num_squares + 1) ** 2)[::-1])[::-1]
  distance = np.maximum(np.abs(np.arange(rows)[:, None] - rows // 2),
                        np.abs(np.arange(cols)[None, :] - cols // 2))
  pattern = tail[distance]
  return pattern / max(np.sqrt(np.sum(pattern ** 2)), TINY)


def l2_window_pattern(size: int) -> np.ndarray:
  """(size, size) unit-norm L2 update: nested squares in the top half, their negative below."""
  pattern = np.concatenate([_nested_squares(size // 2, size),
                            -_nested_squares(size - size // 2, size)])
  return (pattern / np.sqrt(np.sum(pattern ** 2))).astype(np.float32)


def _window(corner: jax.Array, side: jax.Array, height: int, width: int) -> jax.Array:
  """(H, W, 1) bool mask of the side × side window at `corner` (2,), from iota comparisons."""
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  inside = ((rows >= corner[0]) & (rows < corner[0] + side)
            & (cols >= corner[1]) & (cols < corner[1] + side))
  return inside[..., None]


def _corners(key: jax.Array, count: int, side: jax.Array, height: int, width: int) -> jax.Array:
  """(count, 2) top-left corners uniform in {0, ..., H - s - 1} × {0, ..., W - s - 1} (0 if s = H).

  As the reference's random_int(0, H - s): ⌊u (H - s)⌋, u ~ U[0, 1).
  """
  room = jnp.asarray([height, width]) - side
  return jnp.floor(jax.random.uniform(key, (count, 2)) * room).astype(jnp.int32)


def _per_channel_l2(x: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(x * x, axis=(1, 2), keepdims=True))


def _linf_start(key, images, epsilon):
  batch, _, width, channels = images.shape
  stripes = jax.random.rademacher(key, (batch, 1, width, channels), images.dtype)
  return jnp.clip(images + epsilon * stripes, 0.0, 1.0)


def _linf_query(key, x_best, images, epsilon, side):
  _, height, width, channels = images.shape
  corner_key, sign_key = jax.random.split(key)
  window = _window(_corners(corner_key, 1, side, height, width)[0], side, height, width)
  signs = jax.random.rademacher(sign_key, (channels,), images.dtype)
  proposal = jnp.where(window, x_best + 2.0 * epsilon * signs, x_best)
  return jnp.clip(jnp.clip(proposal, images - epsilon, images + epsilon), 0.0, 1.0)


def _l2_start_tiles(height: int, width: int) -> np.ndarray:
  """(T, 2, H, W): each start tile's pattern placed on the image, as is and transposed."""
  side = max(height // 5, 1)
  first = max((height - 5 * side) // 2, 0)
  pattern = l2_window_pattern(side)
  tiles = []
  for top in range(first, first + side * (height // side), side):
    for left in range(first, first + side * (width // side), side):
      canvas = np.zeros((2, height + side, width + side), np.float32)
      canvas[:, top:top + side, left:left + side] = pattern, pattern.T
      tiles.append(canvas[:, :height, :width])
  return np.stack(tiles)


def _l2_start(key, images, epsilon):
  batch, height, width, channels = images.shape
  tiles = _l2_start_tiles(height, width)
  orientation_key, sign_key = jax.random.split(key)
  transposed = jax.random.bernoulli(orientation_key, 0.5, (tiles.shape[0],))
  chosen = jnp.where(transposed[:, None, None], tiles[:, 1], tiles[:, 0])
  signs = jax.random.rademacher(sign_key, (batch, tiles.shape[0], channels), images.dtype)
  delta = jnp.einsum('thw,btc->bhwc', chosen, signs)
  return jnp.clip(images + epsilon * delta / (per_example_l2(delta) + TINY), 0.0, 1.0)


def _l2_query(key, x_best, images, epsilon, side, pattern_pair):
  """One L2 proposal, as the reference (AutoAttack's square.py, L2 branch): in a new window, per
  channel, η·(±1) + δ_w / ‖δ_w‖, rescaled per channel to sqrt(max(ε² - ‖δ‖², 0) / C + ‖δ on both
  windows‖²), where ‖δ‖ and the norm over both windows run over all channels together (the
  reference's `lp_norm`); the second window is zeroed. pattern_pair (2, M, M):
  l2_window_pattern(side) at the top left, as is and transposed. `tests/attacks/test_square.py`
  checks a 3-channel proposal against the reference's update transcribed by hand."""
  _, height, width, channels = images.shape
  corner_key, orientation_key, sign_key = jax.random.split(key, 3)
  corners = _corners(corner_key, 2, side, height, width)
  window, second = (_window(corner, side, height, width) for corner in corners)
  pattern = pattern_pair[jax.random.bernoulli(orientation_key).astype(jnp.int32)]
  last = pattern.shape[0] - 1
  rows = jnp.clip(jnp.arange(height) - corners[0, 0], 0, last)
  cols = jnp.clip(jnp.arange(width) - corners[0, 1], 0, last)
  placed = jnp.where(window, pattern[rows[:, None], cols[None, :]][..., None], 0.0)
  signs = jax.random.rademacher(sign_key, (images.shape[0], 1, 1, channels), images.dtype)
  delta = x_best - images
  old = jnp.where(window, delta, 0.0)
  new = placed * signs + old / (_per_channel_l2(old) + TINY)
  budget = jnp.sqrt(jnp.maximum(epsilon ** 2 - per_example_l2(delta) ** 2, 0.0) / channels
                    + per_example_l2(jnp.where(window | second, delta, 0.0)) ** 2)
  new = new / (_per_channel_l2(new) + TINY) * budget
  delta = jnp.where(window, new, jnp.where(second, 0.0, delta))
  return jnp.clip(images + epsilon * delta / (per_example_l2(delta) + TINY), 0.0, 1.0)


def _pattern_pairs(sides: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """(S, 2, M, M) and (N,): per distinct side s (S of them), `l2_window_pattern(s)` at the top
  left of an M × M canvas, as is and transposed; and per query its side's row."""
  distinct = np.unique(sides)
  pairs = np.zeros((len(distinct), 2, size, size), np.float32)
  for i, side in enumerate(distinct):
    pairs[i, 0, :side, :side] = l2_window_pattern(side)
    pairs[i, 1, :side, :side] = pairs[i, 0, :side, :side].T
  return pairs, np.searchsorted(distinct, sides)


def _margin_and_loss(logits, goal, targeted):
  """(margin, loss), both (B,): the example is broken at margin <= 0; queries lower the loss."""
  if targeted:
    return attack_losses.margin(logits, goal), attack_losses.ce(logits, goal)
  margin = -attack_losses.margin(logits, goal)
  return margin, margin


def _search(logits_fn, images, goal, key, attacked, *, epsilon, norm, sides, targeted):
  """One random search over the `attacked` examples (B,) bool: the best point of each (B, ...)."""
  _, height, width, _ = images.shape
  start_key, query_key = jax.random.split(key)
  start = _linf_start if norm == 'linf' else _l2_start
  x_start = start(start_key, images, epsilon)
  margin, loss = _margin_and_loss(logits_fn(x_start), goal, targeted)
  side_of = jnp.asarray(sides)
  if norm == 'l2':
    pairs, pair_of = map(jnp.asarray, _pattern_pairs(sides, min(height, width)))

  def query(i, x_best):
    query_key_i = jax.random.fold_in(query_key, i)
    if norm == 'linf':
      return _linf_query(query_key_i, x_best, images, epsilon, side_of[i])
    return _l2_query(query_key_i, x_best, images, epsilon, side_of[i],
                     pairs[pair_of[i]])

  def more_queries(state):
    i, _, margin_best, _ = state
    return (i < len(sides)) & jnp.any(margin_best > 0)

  def one_query(state):
    i, x_best, margin_best, loss_best = state
    x_new = query(i, x_best)
    margin, loss = _margin_and_loss(logits_fn(x_new), goal, targeted)
    active = margin_best > 0
    lower = active & (loss < loss_best)
    accept = lower | (active & (margin <= 0))
    expand = accept.reshape((-1, 1, 1, 1))
    return (i + 1, jnp.where(expand, x_new, x_best), jnp.where(accept, margin, margin_best),
            jnp.where(lower, loss, loss_best))

  initial = (jnp.asarray(0), x_start, jnp.where(attacked, margin, -jnp.inf), loss)
  return jax.lax.while_loop(more_queries, one_query, initial)[1]


def _check(logits_fn, images, labels, key, *, epsilon, norm, num_queries, p_init, restarts,
           targeted, target_labels, rescale_schedule) -> None:
  arguments.check_choice('norm', norm, threat_model.NORMS)
  arguments.check_flag('targeted', targeted)
  arguments.check_flag('rescale_schedule', rescale_schedule)
  arguments.check_count('num_queries', num_queries)
  arguments.check_count('restarts', restarts)
  arguments.check_number('epsilon', epsilon, 0.0)
  arguments.check_number('p_init', p_init, 0.0, strict=True, maximum=1.0)
  if not arguments.is_concrete(p_init):
    raise TypeError('p_init: must be a static Python number (window sizes are fixed when tracing), '
                    'not a traced value')
  arguments.check_key(key)
  num_classes = arguments.check_inputs(logits_fn, images, labels)
  if images.ndim != 4:
    raise ValueError(f'images.shape={tuple(images.shape)}: Square needs image batches '
                     '(B, H, W, C)')
  if num_classes < 2:
    raise ValueError(f'logits_fn gives C = {num_classes}: Square needs at least 2 classes')
  if targeted and target_labels is None:
    raise ValueError('target_labels=None with targeted=True: pass the target class of each image '
                     '(B,)')
  if not targeted and target_labels is not None:
    raise ValueError('target_labels given with targeted=False: pass targeted=True to use them')
  if targeted:
    arguments.check_class_indices('target_labels', target_labels, images.shape[0], num_classes)


def square(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, key: jax.Array, *,
           epsilon: float, norm: str = 'linf', num_queries: int = 5000, p_init: float = 0.8,
           restarts: int = 1, targeted: bool = False, target_labels: jax.Array | None = None,
           rescale_schedule: bool = False) -> jax.Array:
  """Adversarial images (B, H, W, C) in B_ε(images) ∩ [0, 1]; the clean image where not broken.

  labels: true classes (B,); with targeted=True the search aims at `target_labels` (B,) instead.
  Arguments are checked once before tracing (`arguments.py`; ValueError or TypeError, one line);
  `p_init` must be a Python number, ε may be traced.
  """
  _check(logits_fn, images, labels, key, epsilon=epsilon, norm=norm, num_queries=num_queries,
         p_init=p_init, restarts=restarts, targeted=targeted, target_labels=target_labels,
         rescale_schedule=rescale_schedule)
  goal = target_labels if targeted else labels
  sides = _window_sides(p_schedule(num_queries, p_init, rescale_schedule), images.shape[1:], norm)
  robust = ~attack_losses.success(logits_fn(images), goal, targeted)

  def restart(state):
    run, robust, adversarial = state
    found = _search(logits_fn, images, goal, jax.random.fold_in(key, run), robust,
                    epsilon=epsilon, norm=norm, sides=sides, targeted=targeted)
    broken = robust & attack_losses.success(logits_fn(found), goal, targeted)
    return (run + 1, robust & ~broken,
            jnp.where(broken.reshape((-1, 1, 1, 1)), found, adversarial))

  more_restarts = lambda state: (state[0] < restarts) & jnp.any(state[1])
  _, _, adversarial = jax.lax.while_loop(more_restarts, restart, (jnp.asarray(0), robust, images))
  return jax.lax.stop_gradient(adversarial)
