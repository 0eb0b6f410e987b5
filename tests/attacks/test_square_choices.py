"""Square's choices that a wrong one would survive elsewhere: the L2 start's tiles on small images,
where its pattern table and each query's pattern go, and the reference's acceptance rule (a query
is kept if it lowers the loss strictly or breaks the example; m = 0 counts as broken)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax.attacks.square import (_l2_query, _linf_query, _pattern_pairs, l2_window_pattern,
                                       square)
from tests import helpers
from tests.attacks.test_square import any_change_logits

KEY = jax.random.key(0)


def test_l2_start_on_a_seven_pixel_image_is_centred_one_pixel_tiles():
  """H = 7: tiles of side ⌊7/5⌋ = 1 from row and column (7 - 5)//2 = 1, as the reference: row 0
  and column 0 stay clean, the other 36 pixels get ±ε/6 (one unit-norm 1 × 1 tile each)."""
  images = jnp.full((2, 7, 7, 1), 0.5, jnp.float32)
  start = square(any_change_logits(images, jnp.zeros(2)), images, jnp.zeros(2, jnp.int32), KEY,
                 epsilon=0.6, norm='l2', num_queries=5)  # broken by its start: returns it
  delta = np.asarray(start - images)[..., 0]
  np.testing.assert_array_equal(delta[:, 0, :], 0.0)
  np.testing.assert_array_equal(delta[:, :, 0], 0.0)
  np.testing.assert_allclose(np.abs(delta[:, 1:, 1:]), 0.1, rtol=1e-5)
  assert len(np.unique(np.sign(delta[:, 1:, 1:]))) == 2


@pytest.mark.parametrize('norm,epsilon', [('linf', 0.3), ('l2', 3.0)])
def test_the_start_stays_in_the_unit_box(norm, epsilon):
  images = jnp.stack([jnp.zeros((6, 6, 2)), jnp.ones((6, 6, 2))])
  start = square(any_change_logits(images, jnp.zeros(2)), images, jnp.zeros(2, jnp.int32), KEY,
                 epsilon=epsilon, norm=norm, num_queries=5)
  assert not np.allclose(start, images)
  assert float(start.min()) >= 0.0 and float(start.max()) <= 1.0


def test_pattern_pairs_hold_each_sides_pattern_and_its_transpose_at_the_top_left():
  sides = np.asarray([7, 7, 5, 3, 3, 5, 3])
  pairs, pair_of = _pattern_pairs(sides, 8)
  assert pairs.shape == (3, 2, 8, 8)
  for query, side in enumerate(sides):
    expected = np.zeros((2, 8, 8), np.float32)
    expected[0, :side, :side] = l2_window_pattern(side)
    expected[1, :side, :side] = l2_window_pattern(side).T
    np.testing.assert_array_equal(pairs[pair_of[query]], expected)


@pytest.mark.parametrize('side', [3, 5])
def test_an_l2_query_from_the_clean_image_is_the_signed_pattern_at_its_window(side):
  """δ = 0: the window gets ±η or ±ηᵀ scaled to ε (C = 1), nothing else changes; over 24 keys the
  window runs over several corners and both signs and orientations occur."""
  images = jnp.full((1, 9, 9, 1), 0.5, jnp.float32)
  pattern = l2_window_pattern(side)
  pairs = jnp.asarray(np.stack([np.pad(p, (0, 9 - side)) for p in (pattern, pattern.T)]))
  corners, seen = set(), set()
  for seed in range(24):
    proposal = _l2_query(jax.random.key(seed), images, images, 0.3, side, pairs)
    delta = np.asarray(proposal - images)[0, ..., 0]
    rows, cols = np.nonzero(delta)
    top, left = rows.min(), cols.min()
    window = delta[top:top + side, left:left + side]
    assert np.count_nonzero(delta) == side * side
    matches = [(sign, oriented) for sign in (1, -1) for oriented in (0, 1)
               if np.allclose(window, 0.3 * sign * (pattern, pattern.T)[oriented], atol=1e-6)]
    assert len(matches) == 1, seed
    corners.add((top, left))
    seen.add(matches[0])
  assert len(corners) > 4 and len(seen) == 4


def test_a_linf_query_beyond_the_box_lands_on_its_bounds():
  """ε = 10 puts the whole box in the ball: the window moves by 2ε, so to 0 or 1 exactly."""
  images = jnp.full((2, 5, 5, 1), 0.4, jnp.float32)
  x_best = images + 0.2
  proposal = np.asarray(_linf_query(KEY, x_best, images, 10.0, 3))
  changed = proposal != np.asarray(x_best)
  assert changed.sum() == 2 * 9
  assert set(np.unique(proposal[changed])) <= {0.0, 1.0}


def test_a_linf_query_is_the_references_arithmetic_bit_for_bit():
  """x̂ ± 2ε, then clipped to [x - ε, x + ε] and [0, 1], in float32 as the reference: from the
  opposite bound, x̂ - 2ε can round one ulp inside the ball (x = 16/255, ε = 8/255), which a
  step of 3ε would not."""
  images = jnp.full((1, 4, 4, 1), 16 / 255, jnp.float32)
  epsilon = 8 / 255
  for x_best in (images + epsilon, images - epsilon):
    signs_seen = set()
    for seed in range(8):
      proposal = np.asarray(_linf_query(jax.random.key(seed), x_best, images, epsilon, 4))
      sign = 1.0 if proposal[0, 0, 0, 0] >= np.asarray(images)[0, 0, 0, 0] else -1.0
      step = np.float32(2.0) * np.float32(epsilon) * np.float32(sign)
      low, high = (np.asarray(images) - np.float32(epsilon), np.asarray(images)
                   + np.float32(epsilon))
      expected = np.clip(np.clip(np.asarray(x_best) + step, low, high), 0.0, 1.0)
      np.testing.assert_array_equal(proposal, expected)
      signs_seen.add(sign)
    assert signs_seen == {1.0, -1.0}


def test_a_query_is_kept_only_if_it_lowers_the_loss_strictly():
  """A model whose margin is 0.5 everywhere: no query lowers the loss or breaks the example, so
  every query starts from the start x⁰ and changes only its own window of it."""
  images = jnp.full((2, 8, 8, 1), 0.5, jnp.float32)
  flat = lambda x: jnp.zeros((x.shape[0], 2)).at[:, 0].set(0.5) + 0 * x.sum()
  record = []
  square(helpers.recorded(flat, record), images, jnp.zeros(2, jnp.int32), KEY, epsilon=0.1,
         num_queries=20, p_init=0.05)  # windows of side 2 (p = 0.05), then 1
  start, queries = record[1], record[2:-1]
  assert len(queries) == 20
  for query in queries:
    rows, cols = np.nonzero(np.any(query != start, axis=(0, 3)))
    assert rows.size == 0 or (np.ptp(rows) < 2 and np.ptp(cols) < 2)


def test_improvements_accumulate_until_the_example_breaks():
  """Class 1 needs 47 of the 49 pixels that windows reach (rows and columns 0..6 of 8: corners
  stop at H - s - 1, as the reference's) above 0.5. The start (±ε stripes) has about half, and a
  window (side 2, then 1) changes at most 4: only keeping each query that raises the count
  breaks it."""
  images = jnp.full((4, 8, 8, 1), 0.45, jnp.float32)
  counting_logits = lambda x: jnp.stack(
      [jnp.full(x.shape[0], 46.5), jnp.sum(x[:, :7, :7] > 0.5, axis=(1, 2, 3)).astype(jnp.float32)],
      -1)
  adversarial = square(counting_logits, images, jnp.zeros(4, jnp.int32), KEY, epsilon=0.1,
                       num_queries=1000, p_init=0.05)
  np.testing.assert_array_equal(jnp.argmax(counting_logits(adversarial), -1), 1)


def _tie_logits(clean, robust_offset):
  """Label 1 wins at `clean`; any change ties the classes (m = 0: broken, argmax 0) unless
  `robust_offset` (B,) is -1, which keeps class 1 ahead."""
  def logits_fn(x):
    changed = jnp.any((x != clean).reshape(x.shape[0], -1), -1)
    return jnp.stack([robust_offset, jnp.where(changed, 0.0, 1.0)], -1)
  return logits_fn


def test_a_margin_of_exactly_zero_is_broken_and_ends_its_search():
  images = jnp.full((2, 4, 4, 1), 0.5, jnp.float32)
  labels = jnp.ones(2, jnp.int32)
  calls = []
  square(helpers.recorded(_tie_logits(images, jnp.zeros(2)), calls), images, labels, KEY,
         epsilon=0.1, num_queries=30)
  assert len(calls) == 3  # clean, start (both broken at m = 0), the check: no query
  record = []
  adversarial = square(helpers.recorded(_tie_logits(images, jnp.asarray([0.0, -1.0])), record),
                       images, labels, KEY, epsilon=0.1, num_queries=30)
  assert len(record) == 33  # example 1 is never broken: all 30 queries run
  np.testing.assert_array_equal(adversarial[0], record[1][0])  # example 0 keeps its start
  np.testing.assert_array_equal(adversarial[1], images[1])


def test_examples_not_attacked_do_not_keep_the_search_running():
  """Example 0 is misclassified at x (not attacked), example 1 broken by its start: no query."""
  images = jnp.full((2, 4, 4, 1), 0.5, jnp.float32)
  calls = []
  square(helpers.recorded(any_change_logits(images, jnp.zeros(2)), calls), images,
         jnp.asarray([1, 0], jnp.int32), KEY, epsilon=0.1, num_queries=30)
  assert len(calls) == 3


def test_a_targeted_query_that_ties_the_target_is_kept_though_its_loss_is_higher():
  """Targeted, the loss is the cross-entropy to t, not the margin: a query that brings the
  target level with the others (m = 0, broken) raises the cross-entropy from log(1 + e^0.5) to
  log 3, and is kept all the same, as the reference keeps every query with m <= 0."""
  def logits_fn(x):  # a tie once every pixel is above 0.5 (a 4 × 4 window with sign +)
    all_up = jnp.all((x > 0.5).reshape(x.shape[0], -1), -1)[:, None]
    return jnp.where(all_up, jnp.zeros(3), jnp.asarray([0.0, 0.5, -100.0]))
  images = jnp.full((2, 4, 4, 1), 0.5, jnp.float32)
  adversarial = square(logits_fn, images, jnp.ones(2, jnp.int32), KEY, epsilon=0.1,
                       num_queries=20, targeted=True, target_labels=jnp.zeros(2, jnp.int32))
  np.testing.assert_allclose(adversarial, 0.6, rtol=1e-6)
