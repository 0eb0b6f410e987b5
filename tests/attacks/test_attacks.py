"""Attacks against closed-form answers on a linear softmax model, and their invariants."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import attacks
from robust_jax.attacks import attack_losses
from robust_jax.attacks.apgd import checkpoint_schedule
from tests import helpers

NUM_CLASSES = 4


@pytest.fixture(scope='module')
def linear_problem():
  """(logits_fn, W, images in (0.1, 0.9), random labels): `helpers.linear_problem`."""
  return helpers.linear_problem(NUM_CLASSES)


def _analytic_input_gradient(logits_fn, weights, images, labels):
  """∇_x CE(xW + b, y) = W (softmax(xW + b) - e_y), per example, reshaped like the images."""
  probs = jax.nn.softmax(logits_fn(images))
  grad = (probs - jax.nn.one_hot(labels, NUM_CLASSES)) @ weights.T
  return np.asarray(grad).reshape(images.shape)


def test_fgsm_linf_equals_closed_form(linear_problem):
  logits_fn, weights, images, labels = linear_problem
  grad = _analytic_input_gradient(logits_fn, weights, images, labels)
  expected = np.clip(images + 0.05 * np.sign(grad), 0, 1)
  np.testing.assert_allclose(attacks.fgsm(logits_fn, images, labels, epsilon=0.05), expected,
                             atol=1e-6)


def test_fgm_l2_equals_closed_form(linear_problem):
  logits_fn, weights, images, labels = linear_problem
  grad = _analytic_input_gradient(logits_fn, weights, images, labels)
  norms = np.linalg.norm(grad.reshape(16, -1), axis=1).reshape(16, 1, 1, 1)
  expected = np.clip(images + 0.3 * grad / norms, 0, 1)
  np.testing.assert_allclose(attacks.fgsm(logits_fn, images, labels, epsilon=0.3, norm='l2'),
                             expected, atol=1e-5)


@pytest.mark.parametrize('norm,epsilon', [('linf', 0.05), ('l2', 0.3)])
def test_one_pgd_step_of_at_least_epsilon_equals_fgsm(linear_problem, norm, epsilon):
  logits_fn, _, images, labels = linear_problem
  fgsm = attacks.fgsm(logits_fn, images, labels, epsilon=epsilon, norm=norm)
  pgd = attacks.pgd(logits_fn, images, labels, None, epsilon=epsilon, step_size=3 * epsilon,
                    num_steps=1, norm=norm, random_start=False)
  np.testing.assert_allclose(pgd, fgsm, atol=1e-6)


ATTACK_RUNS = {
    'fgsm': lambda f, x, y, k, eps, norm: attacks.fgsm(f, x, y, k, epsilon=eps, norm=norm,
                                                       random_start=True, step_size=1.25 * eps),
    'pgd': lambda f, x, y, k, eps, norm: attacks.pgd(f, x, y, k, epsilon=eps, step_size=eps / 4,
                                                     num_steps=10, norm=norm, restarts=2),
    'pgd_targeted': lambda f, x, y, k, eps, norm: attacks.pgd(
        f, x, (y + 1) % NUM_CLASSES, k, epsilon=eps, step_size=eps / 4, num_steps=10, norm=norm,
        targeted=True, loss='margin'),
    'apgd_ce': lambda f, x, y, k, eps, norm: attacks.apgd(f, x, y, k, epsilon=eps, num_steps=20,
                                                          norm=norm, loss='ce'),
    'apgd_dlr': lambda f, x, y, k, eps, norm: attacks.apgd(f, x, y, k, epsilon=eps, num_steps=20,
                                                           norm=norm, loss='dlr', restarts=2),
}


@pytest.mark.parametrize('norm,epsilon', [('linf', 0.2), ('l2', 1.0)])
@pytest.mark.parametrize('name', sorted(ATTACK_RUNS))
def test_results_lie_in_ball_and_bounds(linear_problem, name, norm, epsilon):
  logits_fn, _, images, labels = linear_problem
  images = images.at[0].set(0.0).at[1].set(1.0)  # examples on the box corners
  adversarial = ATTACK_RUNS[name](logits_fn, images, labels, jax.random.key(0), epsilon, norm)
  chex.assert_equal_shape([adversarial, images])
  assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
  assert float(attacks.distance(adversarial, images, norm).max()) <= epsilon * (1 + 1e-5)
  assert float(jnp.mean(jnp.argmax(logits_fn(adversarial), -1) == labels)) < float(
      jnp.mean(jnp.argmax(logits_fn(images), -1) == labels))


@pytest.mark.parametrize('name', sorted(ATTACK_RUNS))
def test_no_gradient_flows_through_an_attack(linear_problem, name):
  _, weights, images, labels = linear_problem

  def outer(w):
    logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w
    adversarial = ATTACK_RUNS[name](logits_fn, images, labels, jax.random.key(0), 0.1, 'linf')
    return jnp.sum(adversarial)

  np.testing.assert_array_equal(jax.grad(outer)(weights), 0.0)


def test_restarts_never_worse_than_one_run_per_example(linear_problem):
  logits_fn, _, images, labels = linear_problem
  kwargs = dict(epsilon=0.08, step_size=0.01, num_steps=3, random_start=True, loss='ce')
  key = jax.random.key(7)
  single = attacks.pgd(logits_fn, images, labels, jax.random.fold_in(key, 0), **kwargs)
  several = attacks.pgd(logits_fn, images, labels, key, restarts=5, **kwargs)
  loss = lambda x: attack_losses.ce(logits_fn(x), labels)
  wrong = lambda x: jnp.argmax(logits_fn(x), -1) != labels
  # Restart 0 is the single run; the kept result is at least as damaging for every example.
  assert bool(jnp.all(wrong(several) | ~wrong(single)))
  same_outcome = wrong(several) == wrong(single)
  assert bool(jnp.all(jnp.where(same_outcome, loss(several) >= loss(single) - 1e-6, True)))


def test_apgd_not_weaker_than_pgd_on_linear_model(linear_problem):
  logits_fn, _, images, labels = linear_problem
  accuracy = lambda x: float(jnp.mean(jnp.argmax(logits_fn(x), -1) == labels))
  pgd = attacks.pgd(logits_fn, images, labels, jax.random.key(0), epsilon=0.1, step_size=0.025,
                    num_steps=20)
  apgd = attacks.apgd(logits_fn, images, labels, jax.random.key(0), epsilon=0.1, num_steps=20)
  assert accuracy(apgd) <= accuracy(pgd)


def test_apgd_checkpoint_schedule_matches_reference():
  is_checkpoint, lengths = checkpoint_schedule(100)
  steps = np.flatnonzero(is_checkpoint)
  # Reference: first interval 22, then 19, 16, 13, 10, 7, 6, 6, ... (shrink 3, minimum 6).
  np.testing.assert_array_equal(steps[:6] + 1, np.cumsum([22, 19, 16, 13, 10, 7]))
  np.testing.assert_array_equal(lengths[steps][:8], [22, 19, 16, 13, 10, 7, 6, 6])


def test_dlr_and_margin_closed_form():
  logits = jnp.array([[3.0, 1.0, 2.0, 0.0]])
  label = jnp.array([0])
  np.testing.assert_allclose(attack_losses.margin(logits, label), [2.0 - 3.0])
  np.testing.assert_allclose(attack_losses.dlr(logits, label), [-(3.0 - 2.0) / (3.0 - 1.0)])


def test_compile_cost_does_not_grow_with_steps(linear_problem):
  logits_fn, _, images, labels = linear_problem
  sizes = []
  for steps in (2, 50):
    lowered = jax.jit(lambda x, steps=steps: attacks.pgd(
        logits_fn, x, labels, jax.random.key(0), epsilon=0.1, step_size=0.01,
        num_steps=steps)).lower(images)
    sizes.append(len(lowered.as_text()))
  assert abs(sizes[0] - sizes[1]) < 50
