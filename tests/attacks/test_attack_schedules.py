"""Attack schedules against references computed here: APGD's momentum, step-size halving and
checkpoints, PGD restarts on a loss with two maxima, and the direction of TRADES' KL step.

APGD (Croce & Hein, ICML 2020, Algorithm 1; reference code fra31/auto-attack, autopgd_base.py), per
example, with η = 2ε at the start, α = 0.75 and Π the projection onto B_ε(x) ∩ [0, 1]^d:

    z^{k+1} = Π(x^k + η d(∇ℓ(x^k)))
    x^{k+1} = Π(x^k + α (z^{k+1} - x^k) + (1 - α)(x^k - x^{k-1}))        (α = 1 at k = 0)

The attacks are seen only through their public functions: the `logits_fn` a test passes records
every point at which the attack evaluates the model (`jax.debug.callback`), so x^0, x^1, ... are
compared one by one with iterates computed here in float64 NumPy from the attack's own x^0.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import attacks, losses
from robust_jax.attacks.apgd import checkpoint_schedule
from tests import helpers

LABEL = 1  # every example of the separable problems below has true class 1


@dataclasses.dataclass(frozen=True)
class SeparableProblem:
  """Per example b, with d = x - clean_b flattened to (D,):

      g_b(x) = offset_b + Σ_i linear_bi d_i - Σ_i curvature_bi (d_i - centre_bi)²

  Logits (g, 0, -10) with label 1: cross-entropy, margin (= g) and DLR all increase with g while
  g > -10, so every attack loss ranks points as g does and its gradient is a positive multiple of
  ∇g; the example is misclassified iff g > 0. Arrays: clean (B, 1, 1, D), the rest (B, D) or (B,).
  """
  clean: np.ndarray
  linear: np.ndarray
  curvature: np.ndarray
  centre: np.ndarray
  offset: np.ndarray

  def _offsets(self, x):
    return (x - self.clean).reshape(len(x), -1)

  def value(self, x: np.ndarray) -> np.ndarray:
    d = self._offsets(x)
    return (self.offset + np.sum(self.linear * d, -1)
            - np.sum(self.curvature * (d - self.centre) ** 2, -1))

  def gradient(self, x: np.ndarray) -> np.ndarray:
    d = self._offsets(x)
    return (self.linear - 2 * self.curvature * (d - self.centre)).reshape(x.shape)

  def logits_fn(self, x: jax.Array) -> jax.Array:
    clean, linear, curvature, centre, offset = (
        jnp.asarray(a, jnp.float32) for a in dataclasses.astuple(self))
    d = (x - clean).reshape(x.shape[0], -1)
    g = offset + jnp.sum(linear * d, -1) - jnp.sum(curvature * (d - centre) ** 2, -1)
    return jnp.stack([g, jnp.zeros_like(g), jnp.full_like(g, -10.0)], -1)


def oscillating_problem(norm: str, epsilon: float) -> SeparableProblem:
  """4 examples, D = 3, with concave coordinates whose tops lie inside the ball, so the iterates
  keep jumping across them (L∞: plus one linear coordinate that stays on its face); examples 2 and
  3 are misclassified near the tops, 0 and 1 nowhere."""
  rng = np.random.default_rng(3)
  batch, dims = 4, 3
  linear, curvature = (([1.0, 0.0, 0.0], [0.0, 40.0, 60.0]) if norm == 'linf' else
                       ([0.0, 0.0, 0.0], [4.0, 6.0, 8.0]))
  return SeparableProblem(
      clean=rng.uniform(0.2, 0.8, (batch, 1, 1, dims)),
      linear=np.tile(linear, (batch, 1)), curvature=np.tile(curvature, (batch, 1)),
      centre=rng.uniform(-0.8, 0.8, (batch, dims)) * epsilon,
      offset=np.array([-1.0, -1.0, 0.5, 0.8]) * (1.0 if norm == 'linf' else 0.5))


# ----------------------------------------------------------------------------- reference APGD
def _expand(v, like):
  return v.reshape((-1,) + (1,) * (like.ndim - 1))


def _norm(v):
  return _expand(np.sqrt(np.sum(v.reshape(len(v), -1) ** 2, -1)), v)


def project(x, clean, epsilon, norm):
  """Π onto B_ε(clean) ∩ [0, 1]^d, written as the reference code writes it."""
  if norm == 'linf':
    x = np.minimum(np.maximum(x, clean - epsilon), clean + epsilon)
  else:
    delta = x - clean
    x = clean + delta / np.maximum(_norm(delta), 1e-300) * np.minimum(epsilon, _norm(delta))
  return np.clip(x, 0.0, 1.0)


def ascent_direction(gradient, norm):
  return np.sign(gradient) if norm == 'linf' else gradient / _norm(gradient)


def momentum_iterates(problem, x0, *, epsilon, norm, num_steps, first_alpha=1.0, alpha=0.75):
  """x^1 .. x^n of the momentum recursion with the step size fixed at 2ε (no checkpoint yet)."""
  x_previous, x, iterates = x0, x0, []
  for k in range(num_steps):
    a = first_alpha if k == 0 else alpha
    z = project(x + 2 * epsilon * ascent_direction(problem.gradient(x), norm), problem.clean,
                epsilon, norm)
    x_previous, x = x, project(x + a * (z - x) + (1 - a) * (x - x_previous), problem.clean,
                               epsilon, norm)
    iterates.append(x)
  return np.stack(iterates)


@dataclasses.dataclass
class ReferenceRun:
  iterates: np.ndarray  # x^0 .. x^n, (n + 1, B, ...); n < num_steps if cut short
  halved: list  # per checkpoint reached, (B,) bool: η halved and restarted from the best point


def reference_apgd(problem, x0, *, epsilon, norm, num_steps, rho=0.75, tolerance=1e-5):
  """Algorithm 1 with the reference code's checkpoints and tests, from the attack's own x^0.

  Checkpoint intervals: max(⌊0.22 N⌋, 1), then each max(⌊0.03 N⌋, 1) shorter, at least
  max(⌊0.06 N⌋, 1). At a checkpoint η halves (and x, ∇ restart from the best point) if
  (1) the loss rose in at most ρ · interval of its steps (`<=` as in the reference code; the paper
  writes `<`), or (2) η was not halved at the last checkpoint and the best loss has not risen since.
  The first step's rise is counted against the loss at x^0 (as in the paper; the reference code
  compares it with an unset 0). The run stops early where float32 rounding could decide what
  follows: two compared losses, or (L∞) a gradient coordinate and 0, closer than `tolerance`.
  """
  interval = max(int(0.22 * num_steps), 1)
  shrink, minimum = max(int(0.03 * num_steps), 1), max(int(0.06 * num_steps), 1)
  value = problem.value
  close = lambda a, b: bool(np.any(np.abs(a - b) < tolerance))
  x_previous = x = x0
  f, grad = value(x0), problem.gradient(x0)
  step_size = np.full(len(x0), 2.0 * epsilon)
  best, f_best, grad_best = x, f, grad
  f_best_at_check, halved_at_check = f, np.ones(len(x0), bool)
  rises, count = np.zeros(len(x0)), 0
  iterates, halved = [x0], []
  for k in range(num_steps):
    if norm == 'linf' and close(grad, 0.0):
      break
    a = 1.0 if k == 0 else 0.75
    z = project(x + _expand(step_size, x) * ascent_direction(grad, norm), problem.clean, epsilon,
                norm)
    x_new = project(x + a * (z - x) + (1 - a) * (x - x_previous), problem.clean, epsilon, norm)
    iterates.append(x_new)
    f_new, grad_new = value(x_new), problem.gradient(x_new)
    if close(f_new, f) or close(f_new, f_best):
      break
    rises += f_new > f
    improved = f_new > f_best
    best = np.where(_expand(improved, x), x_new, best)
    grad_best = np.where(_expand(improved, x), grad_new, grad_best)
    f_best = np.maximum(f_new, f_best)
    x_previous, x, f, grad = x, x_new, f_new, grad_new
    count += 1
    if count == interval:
      halve = (rises <= rho * interval) | (~halved_at_check & (f_best_at_check >= f_best))
      halved.append(halve)
      step_size = np.where(halve, step_size / 2, step_size)
      x, grad = np.where(_expand(halve, x), best, x), np.where(_expand(halve, x), grad_best, grad)
      halved_at_check, f_best_at_check = halve, f_best
      rises, count, interval = np.zeros(len(x0)), 0, max(interval - shrink, minimum)
  return ReferenceRun(np.stack(iterates), halved)


def _apgd_points(problem, *, epsilon, norm, num_steps, loss='ce', seed=0, start='sphere'):
  points = []
  logits_fn = helpers.recorded(problem.logits_fn, points)
  labels = jnp.full(len(problem.clean), LABEL, jnp.int32)
  result = attacks.apgd(logits_fn, jnp.asarray(problem.clean, jnp.float32), labels,
                        jax.random.key(seed), epsilon=epsilon, num_steps=num_steps, norm=norm,
                        loss=loss, start=start)
  assert len(points) >= num_steps + 1, 'APGD evaluates the model at x^0 and after every step'
  return np.asarray(result, np.float64), np.stack(points[:num_steps + 1])


# ----------------------------------------------------------------------------- APGD tests
@pytest.mark.parametrize('norm,epsilon', [('linf', 0.1), ('l2', 0.3)])
def test_apgd_iterates_before_the_first_checkpoint_follow_the_momentum_rule(norm, epsilon):
  problem = oscillating_problem(norm, epsilon)
  # N = 100: the first checkpoint follows step 22, so x^1 .. x^22 use η = 2ε throughout.
  _, points = _apgd_points(problem, epsilon=epsilon, norm=norm, num_steps=100)
  x0 = points[0]
  assert float(attacks.distance(x0, problem.clean, norm).max()) <= epsilon * (1 + 1e-6)
  expected = momentum_iterates(problem, x0, epsilon=epsilon, norm=norm, num_steps=22)
  if norm == 'linf':  # no gradient coordinate so close to 0 that rounding picks its sign
    grads = np.stack([problem.gradient(x) for x in [x0, *expected[:-1]]])
    assert np.abs(grads).min() > 1e-4
  np.testing.assert_allclose(points[1:23], expected, atol=1e-5)
  # The test tells the rule from its likely slips: no momentum, or momentum from the first step.
  for wrong in (dict(alpha=1.0), dict(first_alpha=0.75)):
    slipped = momentum_iterates(problem, x0, epsilon=epsilon, norm=norm, num_steps=22, **wrong)
    assert np.abs(slipped - points[1:23]).max() > 1e-3, wrong


def test_apgd_keeps_the_step_while_the_loss_rises_and_halves_it_when_it_falls():
  """N = 10: the first checkpoint follows step 2 (halve if at most ρ · 2 = 1.5 rises).

  Coordinate 0 is steep and linear, so step 1 (to its face d_0 = ε) raises the loss of both
  examples; coordinate 1 is a parabola with its top at c, and step 1 takes it to the face
  d^1 = sign(c - d^0) ε. Step 2 (momentum): d^2 = -d^1/4 - d^0/4. 'rising' (c = 0): d^2 lies
  within ε/2 of the top, closer than the face, so the loss rose twice, η stays 2ε and step 3 again
  reaches the face: d^3 = d^2/2 + sign(-d^2) ε/2. 'falling' (c = 0.95 ε, just inside the face
  d^1 = ε): step 2 falls, so η halves to ε and step 3 restarts from the best point x^1 with no
  momentum (x^1 - x^1): z = ε - ε = 0 and d^3 = ε + 0.75 (0 - ε) = ε/4 (without the halving it
  would be -ε/2, without the restart it would start from x^2).
  """
  epsilon = 0.1
  problem = SeparableProblem(
      clean=np.full((2, 1, 1, 2), 0.5), linear=np.array([[100.0, 0.0]] * 2),
      curvature=np.array([[0.0, 10.0]] * 2), centre=np.array([[0.0, 0.0], [0.0, 0.95 * epsilon]]),
      offset=np.array([-12.0, -12.0]))
  _, points = _apgd_points(problem, epsilon=epsilon, norm='linf', num_steps=10,
                           start='ball')  # the sphere's start lies on the box face
  d = points[:4, :, 0, 0, :] - 0.5  # (step, example, coordinate)
  value = [problem.value(x) for x in points[:3]]
  assert np.all(value[1] > value[0]), 'step 1 must raise both losses (start not on the face)'
  assert value[2][0] > value[1][0] and value[2][1] < value[1][1], 'rising / falling at step 2'
  assert d[0, 1, 1] < 0.95 * epsilon, "'falling' must start below its top"
  np.testing.assert_allclose(d[1:, :, 0], epsilon, atol=1e-6)
  np.testing.assert_allclose(d[1, :, 1], [np.sign(-d[0, 0, 1]) * epsilon, epsilon], atol=1e-6)
  np.testing.assert_allclose(d[2, :, 1], -0.25 * d[1, :, 1] - 0.25 * d[0, :, 1], atol=1e-6)
  np.testing.assert_allclose(d[3, 0, 1], d[2, 0, 1] / 2 + np.sign(-d[2, 0, 1]) * epsilon / 2,
                             atol=1e-6)
  np.testing.assert_allclose(d[3, 1, 1], epsilon / 4, atol=1e-6)


def _expected_result(problem, iterates):
  """Per example the last misclassified iterate (x^0 included), else the first highest-loss one."""
  values = np.stack([problem.value(x) for x in iterates])  # (steps + 1, B)
  batch = np.arange(values.shape[1])
  misclassified = values > 0
  last_misclassified = len(values) - 1 - np.argmax(misclassified[::-1], 0)
  top = np.sort(values, 0)
  assert np.all(misclassified.any(0) | (top[-1] - top[-2] > 1e-5)), 'best point not well defined'
  pick = np.where(misclassified.any(0), last_misclassified, np.argmax(values, 0))
  return iterates[pick, batch], misclassified.any(0)


@pytest.mark.parametrize('norm,epsilon,loss', [('linf', 0.1, 'ce'), ('linf', 0.1, 'margin'),
                                                ('linf', 0.1, 'dlr'), ('l2', 0.3, 'ce'),
                                                ('l2', 0.3, 'dlr')])
def test_apgd_matches_the_reference_algorithm_step_by_step(norm, epsilon, loss):
  """N = 25: checkpoints after steps 5, 9, 12, 14, then after every step.

  Every iterate is compared while float32 can still order the losses the run compares (at least 16
  of them: four checkpoints). Where all 25 steps are, the result is compared too: the last
  misclassified iterate, else the best one.
  """
  num_steps = 25
  problem = oscillating_problem(norm, epsilon)
  result, points = _apgd_points(problem, epsilon=epsilon, norm=norm, num_steps=num_steps,
                                loss=loss)
  reference = reference_apgd(problem, points[0], epsilon=epsilon, norm=norm, num_steps=num_steps)
  compared = len(reference.iterates)
  assert compared >= 16, f'float32 cannot order this problem past step {compared - 1}'
  np.testing.assert_allclose(points[:compared], reference.iterates, atol=1e-5)
  halved = np.stack(reference.halved)
  assert halved.any() and not halved.all(), 'both outcomes of a checkpoint must occur'
  if norm == 'linf':
    assert compared == num_steps + 1
    expected, misclassified = _expected_result(problem, points)
    assert misclassified.any() and not misclassified.all()
    np.testing.assert_allclose(result, expected, atol=1e-6)


@pytest.mark.parametrize('num_steps', [100, 200, 1000])
def test_apgd_checkpoints_are_the_papers_p_sequence(num_steps):
  """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); checks at p_j N ≤ N."""
  p = [Fraction(0), Fraction(22, 100)]
  while (following := p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100))) <= 1:
    p.append(following)
  checks = [pj * num_steps for pj in p[1:]]
  assert all(c.denominator == 1 for c in checks)
  checks = [int(c) for c in checks]
  assert checks[:3] == [num_steps * 22 // 100, num_steps * 41 // 100, num_steps * 57 // 100]
  is_checkpoint, lengths = checkpoint_schedule(num_steps)
  np.testing.assert_array_equal(np.flatnonzero(is_checkpoint) + 1, checks)  # steps done so far
  np.testing.assert_array_equal(lengths[is_checkpoint], np.diff([0] + checks))


# ----------------------------------------------------------------------------- PGD restarts
def test_pgd_restarts_find_the_higher_of_two_maxima():
  """Per example, one coordinate d = x - 0.5 in [-ε, ε] and g = s (d - m)² / ε², s = 1 right of m
  and 4 left of it, m in (-ε/3, 0): the local maxima are g(ε) = (1 - m/ε)² and the higher
  g(-ε) = 4 (1 + m/ε)². From the clean point (d = 0 > m) PGD climbs to the lower one; a random
  start left of m (probability ≥ 1/3 per run) reaches the higher one."""
  epsilon, batch = 0.1, 8
  rng = np.random.default_rng(1)
  m = jnp.asarray(rng.uniform(-0.3, -0.1, batch) * epsilon, jnp.float32)
  clean = jnp.full((batch, 1, 1, 1), 0.5)
  labels = jnp.full(batch, LABEL, jnp.int32)

  def g(x):
    d = x.reshape(batch) - 0.5 - m
    return jnp.where(d > 0, 1.0, 4.0) * d ** 2 / epsilon ** 2

  def logits_fn(x):  # class 1 stays predicted (g <= 4 < 5): restarts are ranked by the loss
    return jnp.stack([g(x) - 5.0, jnp.zeros(batch)], -1)

  kwargs = dict(epsilon=epsilon, step_size=epsilon / 4, num_steps=10)
  deterministic = attacks.pgd(logits_fn, clean, labels, None, random_start=False, **kwargs)
  one_random = attacks.pgd(logits_fn, clean, labels, jax.random.key(3), **kwargs)
  restarted = attacks.pgd(logits_fn, clean, labels, jax.random.key(3), restarts=20, **kwargs)
  side = lambda x: np.sign(np.asarray(x).reshape(batch) - 0.5)
  np.testing.assert_array_equal(side(deterministic), 1.0)  # the lower maximum, every example
  np.testing.assert_array_equal(side(restarted), -1.0)  # the higher one, every example
  assert (side(one_random) == 1.0).any(), 'a single random run misses the higher maximum somewhere'
  np.testing.assert_allclose(g(restarted), 4 * (1 + m / epsilon) ** 2, rtol=1e-4)
  ce = lambda x: losses.cross_entropy(logits_fn(x), labels)
  assert bool(jnp.all(ce(restarted) > ce(deterministic)))


# ----------------------------------------------------------------------------- TRADES' KL step
def _kl(clean_logits, logits):
  """KL(softmax(clean) || softmax(logits)) per example, written out."""
  p = jax.nn.softmax(clean_logits)
  return jnp.sum(p * (jnp.log(p) - jax.nn.log_softmax(logits)), -1)


@pytest.fixture(scope='module')
def linear_softmax():
  rng = np.random.default_rng(2)
  weights = jnp.asarray(rng.normal(scale=3.0, size=(6, 4)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=4), jnp.float32)
  images = jnp.asarray(rng.uniform(0.2, 0.8, (16, 1, 2, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 4, 16), jnp.int32)
  return (lambda x: x.reshape(x.shape[0], -1) @ weights + bias), weights, images, labels


@pytest.mark.parametrize('norm,epsilon,step_size', [('linf', 0.15, 0.03), ('l2', 0.5, 0.1)])
def test_pgd_kl_first_step_ascends_kl_from_clean_to_adversarial(linear_softmax, norm, epsilon,
                                                                step_size):
  """x^1 = Π(x^0 + α d(∇_{x'} KL(f(x) || f(x'))|_{x^0})), and for logits x'W + b by hand
  ∇_{x'} KL = W (softmax(x'W + b) - softmax(xW + b)). Told apart from the reverse KL(f(x') || f(x))
  (L2: another direction; L∞ signs mostly agree near x) and from the cross-entropy step."""
  logits_fn, weights, images, labels = linear_softmax
  points = []
  recorded = helpers.recorded(logits_fn, points)
  adversarial = np.asarray(attacks.pgd(recorded, images, labels, jax.random.key(0),
                                       epsilon=epsilon, step_size=step_size, num_steps=1,
                                       norm=norm, loss='kl'), np.float64)
  clean_point, start = points[0], points[1]  # the clean logits first, then the step's gradient
  np.testing.assert_array_equal(clean_point, images)
  clean_logits = logits_fn(images)
  p = np.asarray(jax.nn.softmax(clean_logits), np.float64)
  q = np.asarray(jax.nn.softmax(logits_fn(jnp.asarray(start, jnp.float32))), np.float64)
  by_hand = ((q - p) @ np.asarray(weights, np.float64).T).reshape(images.shape)
  grad_of = lambda fn: np.asarray(jax.grad(lambda x: fn(x).sum())(jnp.asarray(start, jnp.float32)))
  by_grad = grad_of(lambda x: _kl(clean_logits, logits_fn(x)))
  np.testing.assert_allclose(by_grad, by_hand, rtol=1e-4, atol=1e-6)
  clean = np.asarray(images, np.float64)
  step = lambda g: project(start + step_size * ascent_direction(g, norm), clean, epsilon, norm)
  np.testing.assert_allclose(adversarial, step(by_hand), atol=1e-5)
  cross_entropy = grad_of(lambda x: losses.cross_entropy(logits_fn(x), labels))
  assert np.abs(step(cross_entropy) - adversarial).max() > 1e-3
  if norm == 'l2':
    reverse = grad_of(lambda x: _kl(logits_fn(x), clean_logits))
    assert np.abs(step(reverse) - adversarial).max() > 1e-3
  kl = lambda x: np.asarray(_kl(clean_logits, logits_fn(jnp.asarray(x, jnp.float32))))
  assert np.all(kl(adversarial) >= kl(start))


def test_pgd_kl_ends_with_a_larger_kl_than_its_start(linear_softmax):
  """Ten small KL steps end, per example, at a KL at least that of their random start."""
  logits_fn, _, images, labels = linear_softmax
  points = []
  recorded = helpers.recorded(logits_fn, points)
  adversarial = attacks.pgd(recorded, images, labels, jax.random.key(1), epsilon=0.1,
                            step_size=0.01, num_steps=10, loss='kl')
  clean_logits = logits_fn(images)
  start = jnp.asarray(points[1], jnp.float32)
  gained = _kl(clean_logits, logits_fn(adversarial)) - _kl(clean_logits, logits_fn(start))
  assert bool(jnp.all(gained >= 0)) and float(gained.mean()) > 0
