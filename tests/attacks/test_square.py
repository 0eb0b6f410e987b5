"""Square: the reference's schedule and patterns, a model without gradients, and invariants."""
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import attacks
from robust_jax.attacks.square import (_corners, _l2_query, _linf_query, _window, _window_sides,
                                       l2_window_pattern, p_schedule, square)

KEY = jax.random.key(0)


def test_p_schedule_has_the_reference_values():
  # Transcribed from the reference's p_selection: p_init / 2^k after 10, 50, 200, ... iterations.
  p = p_schedule(5000, 0.8)
  expected = {0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 200: 0.2, 201: 0.1, 501: 0.05,
              1001: 0.025, 2000: 0.025, 2001: 0.0125, 4000: 0.0125, 4001: 0.00625, 4999: 0.00625}
  for iteration, value in expected.items():
    assert p[iteration] == pytest.approx(value), iteration
  rescaled = p_schedule(5000, 0.8, rescale_schedule=True)  # iteration counted as ⌊2 i⌋
  for iteration, value in {5: 0.8, 6: 0.4, 25: 0.4, 26: 0.2, 101: 0.1, 4000: 0.8 / 256,
                           4001: 0.8 / 512}.items():
    assert rescaled[iteration] == pytest.approx(value), iteration
  np.testing.assert_allclose(p_schedule(10000, 0.5, True), p_schedule(10000, 0.5))
  assert p_schedule(10000, 0.5)[9999] == pytest.approx(0.5 / 512)


def test_window_sides_follow_the_reference_rounding():
  p = np.asarray([0.8, 0.4, 0.1, 0.05, 0.8 / 512])
  # round(√(p · C H W / C)): 28×28×1 and 32×32×3 (Fashion-MNIST and CIFAR-10).
  np.testing.assert_array_equal(_window_sides(p, (28, 28, 1), 'linf'),
                                [25, 18, 9, 6, 1])
  np.testing.assert_array_equal(_window_sides(p, (28, 28, 1), 'l2'),
                                [25, 19, 9, 7, 3])  # at least 3 and odd
  np.testing.assert_array_equal(_window_sides(p, (32, 32, 3), 'linf'),
                                [29, 20, 10, 7, 1])
  np.testing.assert_array_equal(_window_sides(p, (4, 4, 1), 'l2'),
                                [4, 3, 3, 3, 3])  # never wider than the image


def reference_pattern(size):
  """The reference's eta(s): rectangles of growing size added one by one, top half minus bottom."""
  def rectangles(rows, cols):
    pattern = np.zeros((rows, cols))
    top, left = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
      pattern[max(top - k, 0):min(top + k + 1, rows), max(left - k, 0):min(left + k + 1, cols)] += (
          1.0 / (k + 1) ** 2)
    return pattern / np.sqrt(np.sum(pattern ** 2)) if rows else pattern
  pattern = np.concatenate([rectangles(size // 2, size), -rectangles(size - size // 2, size)])
  return pattern / np.sqrt(np.sum(pattern ** 2))


@pytest.mark.parametrize('size', [1, 2, 3, 4, 5, 8, 13])
def test_l2_window_pattern_is_the_reference_pattern(size):
  np.testing.assert_allclose(l2_window_pattern(size), reference_pattern(size), atol=1e-6)


def test_window_is_the_side_by_side_square_at_its_corner():
  for side, corner in [(1, (0, 0)), (3, (2, 1)), (5, (0, 2)), (7, (0, 0))]:
    mask = np.asarray(_window(jnp.asarray(corner), jnp.asarray(side), 7, 9))[..., 0]
    expected = np.zeros((7, 9), bool)
    expected[corner[0]:corner[0] + side, corner[1]:corner[1] + side] = True
    np.testing.assert_array_equal(mask, expected)


def reference_corners(height, width, side):
  """Every top-left corner the reference can draw: random_int(0, H - s) = ⌊(H - s) u⌋ with
  u ~ U[0, 1) (fra31/auto-attack, square.py; the original square-attack's randint(0, h - s) alike),
  i.e. rows 0..H - s - 1, only 0 when s = H; columns likewise."""
  return set(itertools.product(range(max(height - side, 1)), range(max(width - side, 1))))


@pytest.mark.parametrize('height,width,side', [(6, 6, 2), (6, 6, 1), (6, 5, 3), (5, 6, 4),
                                               (6, 6, 6)])
def test_window_corners_reach_exactly_the_reference_positions(height, width, side):
  # 2,000 draws: each of the at most 25 corners is missed with probability < 25 (24/25)^2000.
  corners = np.asarray(_corners(KEY, 2000, jnp.asarray(side), height, width))
  assert set(map(tuple, corners.tolist())) == reference_corners(height, width, side)


def test_linf_query_windows_lie_inside_the_image_at_every_reference_corner():
  # The window each query changes, over 400 keys on a 6 × 6 image with s = 2: always a whole
  # 2 × 2 square inside the image, its corner running over rows and columns 0..3.
  images = jnp.full((1, 6, 6, 1), 0.5, jnp.float32)
  keys = jax.random.split(jax.random.key(3), 400)
  proposals = jax.jit(jax.vmap(lambda key: _linf_query(key, images, images, 0.1, 2)))(keys)
  corners = set()
  for changed in np.asarray(proposals != images)[:, 0, ..., 0]:
    rows, cols = np.nonzero(changed)
    assert changed.sum() == 4 and np.ptp(rows) == 1 and np.ptp(cols) == 1
    corners.add((int(rows.min()), int(cols.min())))
  assert corners == reference_corners(6, 6, 2)


def test_linf_query_moves_one_window_to_the_ball_surface_with_one_sign_per_channel():
  rng = np.random.default_rng(4)
  images = jnp.asarray(rng.uniform(0.2, 0.8, (3, 6, 7, 2)), jnp.float32)
  x_best = jnp.clip(images + rng.uniform(-0.1, 0.1, images.shape), 0, 1).astype(jnp.float32)
  for seed, side in [(0, 1), (1, 2), (2, 3), (3, 6)]:
    proposal = np.asarray(_linf_query(jax.random.key(seed), x_best, images, 0.1, side))
    changed = np.any(proposal != np.asarray(x_best), axis=(0, 3))
    rows, cols = np.nonzero(changed)
    assert rows.max() - rows.min() < side and cols.max() - cols.min() < side
    window = proposal[:, rows.min():rows.min() + side, cols.min():cols.min() + side]
    offset = window - np.asarray(images)[:, rows.min():rows.min() + side,
                                         cols.min():cols.min() + side]
    np.testing.assert_allclose(np.abs(offset), 0.1, rtol=1e-5)
    signs = np.sign(offset).reshape(-1, 2)
    assert np.all(signs == signs[:1])  # one sign per channel for every example and pixel


def test_l2_query_adds_the_pattern_to_the_normalised_window_and_rescales_to_epsilon():
  # A 3 × 3 image and window: both windows are the whole image, so with one channel the new
  # perturbation is ε (±η ± η^T choice + δ/‖δ‖) / ‖·‖ with η the 3 × 3 pattern.
  rng = np.random.default_rng(5)
  images = jnp.full((4, 3, 3, 1), 0.5, jnp.float32)
  delta = rng.normal(size=(4, 3, 3, 1)).astype(np.float32)
  delta *= 0.2 / np.linalg.norm(delta.reshape(4, -1), axis=-1).reshape(4, 1, 1, 1)
  pattern = l2_window_pattern(3)
  proposal = _l2_query(KEY, images + delta, images, 0.4, 3, jnp.asarray(np.stack([pattern,
                                                                                 pattern.T])))
  new = np.asarray(proposal - images)[..., 0]
  for example in range(4):
    old = delta[example, ..., 0] / np.linalg.norm(delta[example])
    candidates = [sign * p + old for sign in (1, -1) for p in (pattern, pattern.T)]
    candidates = [0.4 * c / np.linalg.norm(c) for c in candidates]
    assert any(np.allclose(new[example], c, atol=1e-5) for c in candidates)


def rounded_linear_logits(x):
  """Class 1 needs 12 of 16 pixels one level up from 3/7; the gradient is 0 almost everywhere."""
  levels = jnp.round(x * 7) / 7
  total = levels.reshape(x.shape[0], -1).sum(-1)
  return jnp.stack([jnp.full_like(total, (16 * 3 + 12) / 7), total], -1)


def test_square_breaks_a_model_without_gradients_where_pgd_and_apgd_fail():
  images = jnp.full((8, 4, 4, 1), 3 / 7, jnp.float32)  # pixels move a level beyond ±1/14
  labels = jnp.zeros(8, jnp.int32)
  predict = lambda x: np.asarray(jnp.argmax(rounded_linear_logits(x), -1))
  assert np.all(predict(images) == 0)
  pgd = attacks.pgd(rounded_linear_logits, images, labels, KEY, epsilon=0.1, step_size=0.025,
                    num_steps=10, restarts=2)
  apgd = attacks.apgd(rounded_linear_logits, images, labels, KEY, epsilon=0.1, num_steps=10)
  assert np.all(predict(pgd) == 0) and np.all(predict(apgd) == 0)
  adversarial = square(rounded_linear_logits, images, labels, KEY, epsilon=0.1, num_queries=100)
  assert np.all(predict(adversarial) == 1)
  assert float(attacks.distance(adversarial, images, 'linf').max()) <= 0.1 * (1 + 1e-6)


@pytest.mark.parametrize('norm,epsilon', [('linf', 0.1), ('l2', 0.5)])
def test_results_lie_in_the_ball_and_in_bounds(norm, epsilon):
  rng = np.random.default_rng(0)
  weights = jnp.asarray(rng.normal(size=(6 * 5 * 2, 3)), jnp.float32)
  logits_fn = lambda x: x.reshape(x.shape[0], -1) @ weights
  images = jnp.asarray(rng.uniform(0, 1, (16, 6, 5, 2)), jnp.float32)
  images = images.at[0].set(0.0).at[1].set(1.0)  # examples on the box corners
  labels = jnp.argmax(logits_fn(images), -1)
  adversarial = square(logits_fn, images, labels, KEY, epsilon=epsilon, norm=norm,
                       num_queries=100)
  assert float(attacks.distance(adversarial, images, norm).max()) <= epsilon * (1 + 1e-5)
  assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
  broken = np.asarray(jnp.argmax(logits_fn(adversarial), -1) != labels)
  assert broken.sum() >= 4
  unchanged = np.all(np.asarray(adversarial == images).reshape(16, -1), -1)
  np.testing.assert_array_equal(unchanged, ~broken)  # not broken: the clean image


def any_change_logits(clean, robust_offset):
  """Class 1 wins at any perturbation, except for examples with a large `robust_offset` (B,)."""
  def logits_fn(x):
    change = jnp.sum(jnp.abs(x - clean).reshape(x.shape[0], -1), -1)
    return jnp.stack([robust_offset, 1e3 * change], -1)
  return logits_fn


def test_linf_start_is_vertical_stripes_of_plus_minus_epsilon():
  images = jnp.full((4, 6, 5, 2), 0.5, jnp.float32)
  start = square(any_change_logits(images, jnp.zeros(4)), images, jnp.zeros(4, jnp.int32), KEY,
                 epsilon=0.1, num_queries=10)
  delta = np.asarray(start - images)
  np.testing.assert_allclose(np.abs(delta), 0.1, rtol=1e-5)
  # the same sign down each column (axis 1), for each example, column and channel
  np.testing.assert_array_equal(np.sign(delta), np.broadcast_to(np.sign(delta[:, :1]), delta.shape))
  assert len(np.unique(np.sign(delta[:, 0]).reshape(4, -1), axis=0)) > 1


def test_l2_start_is_a_grid_of_signed_patterns_on_the_epsilon_sphere():
  images = jnp.full((3, 10, 10, 1), 0.5, jnp.float32)  # 5 × 5 tiles of side 2
  start = square(any_change_logits(images, jnp.zeros(3)), images, jnp.zeros(3, jnp.int32), KEY,
                 epsilon=1.0, norm='l2', num_queries=10)
  delta = np.asarray(start - images)[..., 0]
  np.testing.assert_allclose(np.linalg.norm(delta.reshape(3, -1), axis=-1), 1.0, rtol=1e-5)
  pattern = l2_window_pattern(2)
  orientations = set()
  for tile in delta.reshape(3, 5, 2, 5, 2).transpose(0, 1, 3, 2, 4).reshape(-1, 2, 2):
    tile = tile * 5  # 25 unit-norm tiles make a perturbation of norm 5 before scaling to ε = 1
    matches = [transposed for sign in (1, -1) for transposed, p in enumerate((pattern, pattern.T))
               if np.allclose(tile, sign * p, atol=1e-5)]
    assert len(matches) == 1
    orientations.add(matches[0])
  assert orientations == {0, 1}  # each tile transposed or not, at random


def test_examples_misclassified_at_the_start_or_already_broken_keep_their_image():
  images = jnp.full((3, 4, 4, 1), 0.5, jnp.float32)
  labels = jnp.asarray([1, 0, 0], jnp.int32)  # example 0 is misclassified at x
  starts = square(any_change_logits(images, jnp.zeros(3)), images, labels, KEY, epsilon=0.1,
                  num_queries=50)
  np.testing.assert_array_equal(starts[0], images[0])
  assert not np.allclose(starts[1:], images[1:])  # broken by the start
  # Example 2 can no longer be broken, so the search runs its 50 queries: example 1 keeps its
  # first misclassified point, example 2 comes back clean.
  logits_fn = any_change_logits(images, jnp.asarray([0.0, 0.0, 1e9]))
  adversarial = square(logits_fn, images, labels, KEY, epsilon=0.1, num_queries=50)
  np.testing.assert_array_equal(adversarial[:2], starts[:2])
  np.testing.assert_array_equal(adversarial[2], images[2])


def counting(logits_fn, calls):
  """logits_fn that appends to `calls` each time it is executed (also inside compiled loops)."""
  def counted(x):
    jax.debug.callback(lambda: calls.append(1))
    return logits_fn(x)
  return counted


@pytest.mark.parametrize('restarts', [1, 2])
def test_the_model_is_queried_at_most_num_queries_plus_one_times_per_run(restarts):
  images = jnp.full((2, 4, 4, 1), 0.5, jnp.float32)
  labels = jnp.zeros(2, jnp.int32)
  calls = []
  never_broken = counting(lambda x: jnp.zeros((2, 2)).at[:, 0].set(1.0) + 0 * x.sum(), calls)
  square(never_broken, images, labels, KEY, epsilon=0.1, num_queries=30, restarts=restarts)
  # clean images, then per restart: start + 30 queries + the check of its result
  assert len(calls) == 1 + restarts * (1 + 30 + 1)
  calls.clear()
  square(counting(any_change_logits(images, jnp.zeros(2)), calls), images, labels, KEY,
         epsilon=0.1, num_queries=30, restarts=restarts)
  assert len(calls) == 1 + 2  # broken by the start: no query, no second restart's run needed


def test_targeted_square_reaches_the_target_class():
  def logits_fn(x):  # the class whose centre is nearest the mean pixel: 0.3, 0.5 or 0.7
    mean = x.reshape(x.shape[0], -1).mean(-1, keepdims=True)
    return -100 * (mean - jnp.asarray([0.3, 0.5, 0.7])) ** 2
  images = jnp.asarray(np.random.default_rng(3).uniform(0.4, 0.6, (8, 4, 4, 1)), jnp.float32)
  images = images - images.mean() + 0.5  # class 1
  labels = jnp.ones(8, jnp.int32)
  assert np.all(np.asarray(jnp.argmax(logits_fn(images), -1)) == 1)
  targets = jnp.asarray([0, 2] * 4, jnp.int32)
  adversarial = square(logits_fn, images, labels, KEY, epsilon=0.3, num_queries=100,
                       targeted=True, target_labels=targets)
  np.testing.assert_array_equal(jnp.argmax(logits_fn(adversarial), -1), targets)


def test_no_gradient_flows_through_the_attack():
  images = jnp.full((2, 4, 4, 1), 3 / 7, jnp.float32)
  gradient = jax.grad(lambda x: square(rounded_linear_logits, x, jnp.zeros(2, jnp.int32), KEY,
                                       epsilon=0.1, num_queries=20).sum())(images)
  np.testing.assert_array_equal(gradient, np.zeros_like(gradient))


@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_under_jit_with_epsilon_traced_it_gives_the_eager_result(norm):
  images = jnp.full((4, 4, 4, 1), 3 / 7, jnp.float32)
  labels = jnp.zeros(4, jnp.int32)
  run = lambda x, eps: square(rounded_linear_logits, x, labels, KEY, epsilon=eps, norm=norm,
                              num_queries=40)
  np.testing.assert_allclose(jax.jit(run)(images, 0.3), run(images, 0.3), atol=1e-6)


IMAGES = jnp.full((2, 4, 4, 1), 0.5, jnp.float32)
LABELS = jnp.zeros(2, jnp.int32)


def call(**overrides):
  kwargs = dict(logits_fn=rounded_linear_logits, images=IMAGES, labels=LABELS, key=KEY,
                epsilon=0.1, num_queries=2) | overrides
  return lambda: square(**kwargs)


# (call, exception type, regex its one-line message must match)
BAD_CALLS = [
    (call(epsilon=-0.1), ValueError, r'^epsilon=-0\.1: must be a finite number >= 0$'),
    (call(norm='l1'), ValueError, r"^norm='l1': must be one of 'linf', 'l2'$"),
    (call(num_queries=0), ValueError, r'^num_queries=0: must be an int >= 1$'),
    (call(p_init=0.0), ValueError, r'^p_init=0\.0: must be a finite number in \(0, 1\]$'),
    (call(p_init=1.5), ValueError, r'^p_init=1\.5: must be a finite number in \(0, 1\]$'),
    (lambda: jax.jit(lambda p: call(p_init=p)())(0.5), TypeError,
     r'^p_init: must be a static Python number'),
    (call(key=None), ValueError, r'^key=None: this call draws random starts'),
    (call(images=IMAGES.reshape(2, 16), logits_fn=lambda x: x[:, :2]), ValueError,
     r'^images\.shape=\(2, 16\): Square needs image batches \(B, H, W, C\)$'),
    (call(targeted=True), ValueError, r'^target_labels=None with targeted=True: pass the target '),
    (call(target_labels=LABELS), ValueError, r'^target_labels given with targeted=False: '),
    (call(targeted=True, target_labels=LABELS + 2), ValueError,
     r'^target_labels: values range over \[2, 2\]; must be class indices in \[0, 1\] '
     r'\(logits_fn gives C = 2\)$'),
    (call(targeted=True, target_labels=LABELS[:1]), ValueError,
     r'^target_labels\.shape=\(1,\): must be \(B,\) = \(2,\)'),
]


@pytest.mark.parametrize('make_call,error,message', BAD_CALLS,
                         ids=[re.sub(r'[\\^]', '', m.split(':')[0]) for _, _, m in BAD_CALLS])
def test_a_bad_argument_gives_one_line_naming_it(make_call, error, message):
  with pytest.raises(error) as raised:
    make_call()
  text = str(raised.value).split('\n--------------------\nFor simplicity, JAX')[0]
  assert re.search(message, text), text
  assert '\n' not in text



def _reference_l2_update(x_best, images, epsilon, corner, second, pattern, signs,
                         windows_norm_per_channel=False):
  """AutoAttack's L2 Square proposal (square.py, attack_single_run, L2 branch) transcribed in
  NumPy for one example (H, W, C): new window = η·sign per channel + δ_w/‖δ_w‖ (per channel),
  rescaled per channel to sqrt(max(ε² - ‖δ‖², 0) / C + ‖δ on both windows‖²), where ‖δ‖ and the
  norm over both windows run over every channel (its `lp_norm`; `windows_norm_per_channel` takes
  the latter per channel instead); the second window is zeroed first, then the first written."""
  side = pattern.shape[0]
  delta = x_best - images
  (top, left), (top2, left2) = corner, second
  both = np.zeros(delta.shape[:2], bool)
  both[top:top + side, left:left + side] = True
  both[top2:top2 + side, left2:left2 + side] = True
  norms_image = np.sqrt(np.sum(delta ** 2))
  axes = (0, 1) if windows_norm_per_channel else None
  norms_windows = np.sqrt(np.sum((delta * both[..., None]) ** 2, axis=axes, keepdims=True))
  old = delta[top:top + side, left:left + side]
  old = old / (1e-12 + np.sqrt(np.sum(old ** 2, axis=(0, 1), keepdims=True)))
  new = pattern[..., None] * signs + old
  budget = np.sqrt(max(epsilon ** 2 - norms_image ** 2, 0.0) / delta.shape[-1] + norms_windows ** 2)
  new = new / (1e-12 + np.sqrt(np.sum(new ** 2, axis=(0, 1), keepdims=True))) * budget
  delta = delta.copy()
  delta[top2:top2 + side, left2:left2 + side] = 0.0
  delta[top:top + side, left:left + side] = new
  return np.clip(images + epsilon * delta / (np.sqrt(np.sum(delta ** 2)) + 1e-12), 0.0, 1.0)


def test_l2_query_on_colour_images_is_the_reference_update():
  """3 channels, 6 × 6 images, 3 × 3 windows: the proposal equals the reference's update for the
  windows, orientation and signs it drew (found by trying every draw); the norm over both windows
  runs over all channels together, as the reference's lp_norm: with that norm taken per channel
  (a reading that differs only on colour images) no draw matches."""
  rng = np.random.default_rng(7)
  images = jnp.full((3, 6, 6, 3), 0.5, jnp.float32)
  delta = rng.normal(size=(3, 6, 6, 3)).astype(np.float32)
  delta *= 0.3 / np.linalg.norm(delta.reshape(3, -1), axis=-1).reshape(3, 1, 1, 1)
  pattern = l2_window_pattern(3)
  epsilon = 0.5
  proposal = np.asarray(_l2_query(KEY, images + delta, images, epsilon, 3,
                                  jnp.asarray(np.stack([pattern, pattern.T]))))
  corners = [(top, left) for top in range(4) for left in range(4)]
  draws = [(corner, second, oriented, np.array(signs, np.float32))
           for corner in corners for second in corners for oriented in (pattern, pattern.T)
           for signs in itertools.product((1.0, -1.0), repeat=3)]
  x_best, clean = np.asarray(images + delta), np.asarray(images)
  for example in range(3):
    for per_channel in (False, True):
      matching = [draw for draw in draws if np.allclose(
          _reference_l2_update(x_best[example], clean[example], epsilon, *draw,
                               windows_norm_per_channel=per_channel),
          proposal[example], atol=2e-6)]
      assert len(matching) == (0 if per_channel else 1), (example, per_channel, len(matching))
