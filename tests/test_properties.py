"""Properties that hold for every input (hypothesis): the threat model's projection and random
start, the attacks' outputs, the losses' independence of the batch order, and the rates of the
random masks (dropout, LFM, per-example Bernoulli).

JAX compiles once per shape and static setting, so shapes and static settings are drawn from small
sets and the attacks and masks run under `jax.jit` with the drawn numbers as traced arguments.
Rates are checked within 5 binomial standard errors, on fixed (derandomized) examples.
"""
from __future__ import annotations

import functools

from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from robust_jax import attacks, losses, random_utils
from robust_jax.attacks import threat_model
from robust_jax.methods import erm, lfm
from robust_jax.models import MLP, ModelFns
from tests.helpers import assert_rate

EXAMPLES = settings(max_examples=40, deadline=None, database=None)
RATES = settings(max_examples=25, deadline=None, database=None, derandomize=True)

SHAPES = [(1, 3), (2, 3, 2), (3, 4, 4, 1)]
norms = st.sampled_from(attacks.NORMS)
epsilons = st.sampled_from([0.0, 0.01, 0.3, 2.0]) | st.floats(1e-3, 1.0)
seeds = st.integers(0, 2**31 - 1)
pixels = st.floats(0.0, 1.0, width=32)


@st.composite
def images_and_points(draw, shapes=SHAPES):
  """(images in [0, 1], arbitrary points near them) of one shape drawn from `shapes`."""
  shape = draw(st.sampled_from(shapes))
  images = draw(hnp.arrays(np.float32, shape, elements=pixels))
  offsets = draw(hnp.arrays(np.float32, shape, elements=st.floats(-3.0, 3.0, width=32)))
  return images, images + offsets


def assert_in_ball_and_box(points, images, epsilon, norm):
  points, images = np.asarray(points, np.float64), np.asarray(images, np.float64)
  assert points.shape == images.shape
  assert points.min() >= 0.0 and points.max() <= 1.0
  delta = (points - images).reshape(len(images), -1)
  distance = np.abs(delta).max(-1) if norm == 'linf' else np.linalg.norm(delta, axis=-1)
  assert distance.max() <= epsilon * (1 + 1e-6) + 1e-6, (distance.max(), epsilon)


# ----------------------------------------------------------------------------- threat model
_project = jax.jit(threat_model.project, static_argnames='norm')
_random_start = jax.jit(threat_model.random_start, static_argnames='norm')


@EXAMPLES
@given(images_and_points(), epsilons, norms)
def test_projection_lands_in_the_ball_and_the_box_and_fixes_points_inside(pair, epsilon, norm):
  images, points = pair
  projected = _project(jnp.asarray(points), jnp.asarray(images), epsilon, norm=norm)
  assert_in_ball_and_box(projected, images, epsilon, norm)
  # A point already in B_ε ∩ [0, 1]^d: the drawn offset shrunk into the ball, clipped to the box.
  delta = (points - images).reshape(len(images), -1)
  size = np.abs(delta).max(-1) if norm == 'linf' else np.linalg.norm(delta, axis=-1)
  shrink = np.minimum(1.0, 0.999 * epsilon / np.maximum(size, 1e-12))
  inside = np.clip(images + (delta * shrink[:, None]).reshape(images.shape), 0, 1)
  np.testing.assert_allclose(_project(jnp.asarray(inside, jnp.float32), jnp.asarray(images),
                                      epsilon, norm=norm), inside, atol=1e-6)


@EXAMPLES
@given(images_and_points(), epsilons, norms, seeds)
def test_random_start_lands_in_the_ball_and_the_box(pair, epsilon, norm, seed):
  images = jnp.asarray(pair[0])
  start = _random_start(jax.random.key(seed), images, epsilon, norm=norm)
  assert_in_ball_and_box(start, images, epsilon, norm)


# ----------------------------------------------------------------------------- attack outputs
BATCH, NUM_CLASSES = 6, 4
_WEIGHTS = np.random.default_rng(0).normal(size=(12, NUM_CLASSES)).astype(np.float32)


def _linear_logits(x):
  return x.reshape(x.shape[0], -1) @ _WEIGHTS


@functools.lru_cache(maxsize=None)
def _attack(name: str, norm: str, option: bool):
  """Jitted attack(images, labels, key, epsilon); `option`: PGD with 2 restarts, or FGSM-RS."""
  def run(images, labels, key, epsilon):
    step_size = 0.25 * epsilon + 0.01
    if name == 'pgd':
      return attacks.pgd(_linear_logits, images, labels, key, epsilon=epsilon, step_size=step_size,
                         num_steps=3, norm=norm, restarts=2 if option else 1)
    return attacks.fgsm(_linear_logits, images, labels, key, epsilon=epsilon, norm=norm,
                        random_start=option, step_size=step_size)
  return jax.jit(run)


@EXAMPLES
@given(hnp.arrays(np.float32, (BATCH, 2, 2, 3), elements=pixels),
       hnp.arrays(np.int32, BATCH, elements=st.integers(0, NUM_CLASSES - 1)),
       st.sampled_from(['pgd', 'fgsm']), norms, st.booleans(), st.floats(0.0, 1.0), seeds)
def test_pgd_and_fgsm_results_land_in_the_ball_and_the_box(images, labels, name, norm, option,
                                                           epsilon, seed):
  adversarial = _attack(name, norm, option)(images, labels, jax.random.key(seed), epsilon)
  assert_in_ball_and_box(adversarial, images, epsilon, norm)


# ----------------------------------------------------------------------------- batch order
@st.composite
def logits_batches(draw):
  """(logits (B, C), labels (B,), target probabilities (B, C), other logits (B, C), permutation)."""
  batch, classes = draw(st.sampled_from([1, 3, 6])), draw(st.sampled_from([2, 5]))
  logits = lambda: draw(hnp.arrays(np.float32, (batch, classes),
                                   elements=st.floats(-30.0, 30.0, width=32)))
  weights = draw(hnp.arrays(np.float32, (batch, classes), elements=pixels)) + 1e-3
  labels = draw(hnp.arrays(np.int32, batch, elements=st.integers(0, classes - 1)))
  permutation = np.array(draw(st.permutations(range(batch))))
  return logits(), labels, weights / weights.sum(-1, keepdims=True), logits(), permutation


@EXAMPLES
@given(logits_batches())
def test_per_example_losses_follow_their_examples_when_the_batch_is_permuted(batch):
  logits, labels, targets, other, order = batch
  per_example = {
      'cross_entropy': lambda z, y, t, o: losses.cross_entropy(z, y),
      'soft_cross_entropy': lambda z, y, t, o: losses.soft_cross_entropy(z, t),
      'kl_divergence': lambda z, y, t, o: losses.kl_divergence(o, z),
  }
  for name, loss in per_example.items():
    value = np.asarray(loss(logits, labels, targets, other))
    permuted = np.asarray(loss(logits[order], labels[order], targets[order], other[order]))
    assert value.shape == (len(logits),)
    np.testing.assert_allclose(permuted, value[order], rtol=1e-6, atol=1e-6, err_msg=name)


@functools.lru_cache(maxsize=None)
def _erm_loss(smoothing: float):
  """Jitted ERM loss(batch, key) of a tiny MLP without dropout (with dropout, masks are keyed by
  the example's index, so a permuted batch draws other masks by design)."""
  model = ModelFns(MLP(num_classes=NUM_CLASSES, hidden_sizes=(8,)))
  params, model_state = model.init(jax.random.key(0), (2, 2, 3))
  targets_fn = erm.label_smoothing_targets(ml_collections.ConfigDict({'smoothing': smoothing}),
                                           NUM_CLASSES)
  loss_fn = erm.cross_entropy_loss(ml_collections.ConfigDict(), model, targets_fn)
  return jax.jit(lambda batch, key: loss_fn(params, model_state, batch, key)[0])


@EXAMPLES
@given(st.sampled_from([2, 5, 8]).flatmap(lambda batch: st.tuples(
    hnp.arrays(np.float32, (batch, 2, 2, 3), elements=pixels),
    hnp.arrays(np.int32, batch, elements=st.integers(0, NUM_CLASSES - 1)),
    st.permutations(range(batch)))), st.sampled_from([0.0, 0.1]), seeds)
def test_erm_mean_loss_does_not_depend_on_the_batch_order(batch, smoothing, seed):
  images, labels, order = batch
  order = np.array(order)
  loss = _erm_loss(smoothing)
  key = jax.random.key(seed)
  value = loss({'image': images, 'label': labels}, key)
  permuted = loss({'image': images[order], 'label': labels[order]}, key)
  np.testing.assert_allclose(permuted, value, rtol=1e-5)


# ----------------------------------------------------------------------------- mask rates
_HIDDEN = 64


@functools.lru_cache(maxsize=None)
def _dropout_probe(rate: float):
  """A one-hidden-layer MLP whose logits are its hidden dropout site's output: the hidden layer is
  relu(0 · x + 1) = 1 and the output layer the identity, so logits = keep mask / (1 - rate)."""
  module = MLP(num_classes=_HIDDEN, hidden_sizes=(_HIDDEN,), dropout_rate=rate,
               dropout_sites=('hidden',))
  params = {'Dense_0': {'kernel': jnp.zeros((1, _HIDDEN)), 'bias': jnp.ones(_HIDDEN)},
            'Dense_1': {'kernel': jnp.eye(_HIDDEN), 'bias': jnp.zeros(_HIDDEN)}}
  return jax.jit(lambda key: module.apply({'params': params}, jnp.zeros((_HIDDEN, 1, 1, 1)),
                                          train=True, rngs={'dropout': key}))


@RATES
@given(st.sampled_from([0.05, 0.2, 0.5, 0.9]), seeds)
def test_classifier_dropout_drops_the_configured_rate_per_example(rate, seed):
  out = np.asarray(_dropout_probe(rate)(jax.random.key(seed)))
  dropped = out == 0
  np.testing.assert_allclose(out[~dropped], 1 / (1 - rate), rtol=1e-6)  # inverted dropout
  assert_rate(dropped, rate, 'dropped units')
  assert len(np.unique(dropped, axis=0)) > 1, 'each example draws its own mask'


@functools.lru_cache(maxsize=None)
def _lfm(channel_fraction: float):
  return jax.jit(lambda features, key, probability: lfm.local_feature_mask(
      features, key, probability=probability, channel_fraction=channel_fraction, fill='zero'))


@RATES
@given(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.8, 1.0]), st.sampled_from([0.25, 0.5, 1.0]), seeds)
def test_lfm_masks_the_configured_fraction_of_examples_and_exactly_its_channels(
    probability, channel_fraction, seed):
  features = jnp.full((10000, 3, 3, 4), 5.0)
  masked = np.asarray(_lfm(channel_fraction)(features, jax.random.key(seed), probability))
  assert np.all((masked == 5.0) | (masked == 0.0))
  channels = (masked == 0.0).any(axis=(1, 2))  # (B, C): a box was written in that channel
  applied = channels.any(1)
  np.testing.assert_array_equal(channels.sum(1)[applied], round(channel_fraction * 4))
  assert_rate(applied, probability, 'masked examples')


@functools.partial(jax.jit, static_argnames='shape')
def _bernoulli(key, probability, shape):
  return random_utils.per_example_bernoulli(key, probability, shape)


@RATES
@given(st.floats(0.0, 1.0), st.sampled_from([(300, 7), (64, 4, 5)]), seeds)
def test_per_example_bernoulli_has_the_rate_and_rows_independent_of_batch_size(
    probability, shape, seed):
  key = jax.random.key(seed)
  draws = np.asarray(_bernoulli(key, probability, shape))
  assert draws.shape == shape and draws.dtype == bool
  assert_rate(draws, probability, 'Bernoulli draws')
  # Row b comes from fold_in(key, b), so a smaller batch (one device's share) gets the same rows.
  np.testing.assert_array_equal(_bernoulli(key, probability, (10,) + shape[1:]), draws[:10])
  for row in (0, 7):
    np.testing.assert_array_equal(
        jax.random.bernoulli(jax.random.fold_in(key, row), probability, shape[1:]), draws[row])
