"""The parts of an attack that depend on the norm: random start, ascent step, projection.

Inputs live in [0, 1] pixel units, (B, ...). Supported norms: 'linf' and 'l2'. Every projection also
clips to the input bounds [0, 1]; for both norms clipping keeps the point inside the ε-ball, because
it only moves coordinates back towards the clean image (which lies in [0, 1]).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from robust_jax.arguments import check_choice

__all__ = ['NORMS', 'TINY', 'ascent_direction', 'distance', 'per_example_l2', 'project',
           'random_start', 'shrink_to_l2_ball']

NORMS = ('linf', 'l2')
TINY = 1e-12  # added to a norm before dividing by it (the attacks, square, fab, embedding PGD)


def per_example_l2(x: jax.Array) -> jax.Array:
  """||x_b||_2 = sqrt(Σ x_b²) of x (B, ...), with shape (B, 1, ..., 1) for broadcasting."""
  return jnp.sqrt(jnp.sum(x * x, axis=tuple(range(1, x.ndim)), keepdims=True))


def shrink_to_l2_ball(delta: jax.Array, epsilon) -> jax.Array:
  """δ_b · min(1, ε / (||δ_b||_2 + TINY)) per example of δ (B, ...): δ projected onto the ε-ball."""
  return delta * jnp.minimum(1.0, epsilon / (per_example_l2(delta) + TINY))


def random_start(key: jax.Array, images: jax.Array, epsilon: float, norm: str) -> jax.Array:
  """A point drawn uniformly from the ε-ball around each image, clipped to [0, 1]."""
  if norm == 'linf':
    delta = jax.random.uniform(key, images.shape, minval=-epsilon, maxval=epsilon)
  else:
    direction_key, radius_key = jax.random.split(key)
    direction = jax.random.normal(direction_key, images.shape)
    direction = direction / (per_example_l2(direction) + TINY)
    dims = images[0].size
    radius = epsilon * jax.random.uniform(radius_key, (images.shape[0],) + (1,) * (images.ndim - 1)
                                          ) ** (1.0 / dims)
    delta = direction * radius
  return jnp.clip(images + delta, 0.0, 1.0)


def ascent_direction(gradient: jax.Array, norm: str) -> jax.Array:
  """Steepest-ascent direction of unit norm: sign(g) for L∞, g / ||g||_2 per example for L2."""
  if norm == 'linf':
    return jnp.sign(gradient)
  return gradient / (per_example_l2(gradient) + TINY)


def project(adversarial: jax.Array, images: jax.Array, epsilon: float, norm: str) -> jax.Array:
  """Projects onto {x' : ||x' - x|| <= ε} ∩ [0, 1]^d."""
  delta = adversarial - images
  if norm == 'linf':
    delta = jnp.clip(delta, -epsilon, epsilon)
  else:
    delta = shrink_to_l2_ball(delta, epsilon)
  return jnp.clip(images + delta, 0.0, 1.0)


def distance(adversarial: jax.Array, images: jax.Array, norm: str) -> jax.Array:
  """Per-example distance (B,) in the attack's norm, 'linf' or 'l2'; the two arrays (B, ...) must
  have the same shape."""
  check_choice('norm', norm, NORMS)
  if tuple(adversarial.shape) != tuple(images.shape):
    raise ValueError(f'adversarial.shape={tuple(adversarial.shape)}: must equal images.shape='
                     f'{tuple(images.shape)}, one perturbed input per input')
  delta = (adversarial - images).reshape(images.shape[0], -1)
  # L2 of the flattened δ: the same formula as `per_example_l2`, but the reduction over one axis can
  # differ from it in the last bit; FAB's results depend on this one (`fab._norm`).
  return jnp.max(jnp.abs(delta), -1) if norm == 'linf' else jnp.linalg.norm(delta, axis=-1)
