"""What APGD and APGD-T choose, on hand-made cases: the target classes, in which order, how many,
and which run or sweep each example keeps (issue #28: a choice shifted by one must fail a test).

APGD-T (reference: fra31/auto-attack, autopgd_base.py, APGDAttack_targeted.perturb) attacks, per
example, the classes `output.sort(dim=1)[1][:, -target_class]` of the clean logits for
target_class = 2, ..., n_target_classes + 1: the 2nd to (k+1)-th highest clean logit, in that order,
at most C - 1 of them. The targets are seen here through the gradient the attack follows: the
model's backward pass records the cotangent ∂(Σ loss)/∂logits, and the test finds the one target
t whose targeted DLR loss -(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2) has exactly that gradient.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback

from robust_jax import attacks
from robust_jax.attacks import attack_losses
from robust_jax.attacks.restarts import best_of_restarts

KEY = jax.random.key(0)
NUM_CLASSES = 6
# Clean logits, one rank order per example (logits_fn below is the identity: images = logits).
CLEAN = np.asarray([[.90, .80, .70, .60, .50, .40],   # y = 0; ranked 0, 1, 2, 3, 4, 5
                    [.45, .75, .55, .85, .65, .35],   # y = 3; ranked 3, 1, 4, 2, 0, 5
                    [.30, .50, .90, .40, .80, .60]],  # y = 2; ranked 2, 4, 5, 1, 3, 0
                   np.float32)
LABELS = np.argmax(CLEAN, -1)
BY_RANK = np.argsort(-CLEAN, -1)  # BY_RANK[:, r - 1]: the class of rank r (1 = the top class)


def cotangent_spy(records):
  """The identity as logits_fn; its backward pass appends (logits, cotangent), in order."""
  @jax.custom_vjp
  def logits_fn(x):
    return x

  def backward(logits, cotangent):
    jax.debug.callback(lambda z, g: records.append((np.asarray(z), np.asarray(g))), logits,
                       cotangent, ordered=True)
    return (cotangent,)

  logits_fn.defvjp(lambda x: (x, x), backward)
  return logits_fn


def followed_targets(records):
  """(evaluations, B): per gradient evaluation and example, the one class t whose targeted DLR
  gradient at the recorded logits is the recorded cotangent (-1 if none or several match)."""
  logits, cotangents = (np.stack(parts) for parts in zip(*records))  # (N, B, C) each

  @jax.jit
  def gradients(z):  # (C, N, B, C): the gradient of Σ loss towards each class t
    loss = lambda z, t: attack_losses.dlr_targeted(z, LABELS, jnp.full(len(LABELS), t)).sum()
    per_target = lambda t: jax.vmap(jax.grad(loss), in_axes=(0, None))(z, t)
    return jax.vmap(per_target)(jnp.arange(NUM_CLASSES))

  matches = np.all(np.isclose(gradients(logits), cotangents, rtol=1e-4, atol=1e-5), -1)
  return np.where(matches.sum(0) == 1, np.argmax(matches, 0), -1)


@pytest.mark.parametrize('num_target_classes,sweeps', [(2, 2), (None, NUM_CLASSES - 1)])
def test_apgd_t_sweeps_the_2nd_to_kth_highest_clean_logits_in_rank_order_capped_at_c_minus_1(
    num_target_classes, sweeps):
  # None: the default min(9, C - 1). ε = 0.001 against margins >= 0.05: nothing is broken, so
  # every sweep runs on every example and each of its num_steps + 1 gradient evaluations (start
  # point and steps) shows its target.
  steps, records = 2, []
  adversarial = attacks.apgd_targeted(cotangent_spy(records), jnp.asarray(CLEAN), LABELS, KEY,
                                      epsilon=0.001, num_steps=steps,
                                      num_target_classes=num_target_classes)
  np.testing.assert_array_equal(adversarial, CLEAN)  # never broken: returned unchanged
  expected = np.repeat(BY_RANK[:, 1:sweeps + 1].T, steps + 1, axis=0)  # ranks 2 .. sweeps + 1
  np.testing.assert_array_equal(followed_targets(records), expected)


# Logits z = x · SCALE: class 2 moves 5 times faster than the others; ε = 0.1 moves any logit by
# at most 0.1 (class 2: 0.5). Example 0: the rank-2 class (1, gap 0.05) and the rank-3 class (2)
# are both in reach; example 1: none; example 2: only its rank-3 class (2, gap 0.55 < 0.5 + 0.1,
# its rank-2 class 1 is 0.3 > 0.2 away), which the rank-2 sweep pushes down.
SCALE = np.asarray([1, 1, 5, 1, 1, 1], np.float32)
SWEEP_LOGITS = np.asarray([[1.0, .95, .90, .5, .4, .3],
                           [1.0, .50, .25, .3, .2, .1],
                           [0.9, .60, .35, .3, .2, .1]], np.float32)


def test_apgd_t_keeps_the_first_sweep_that_breaks_an_example():
  points = []  # every point the attack evaluates: the clean images, then steps + 1 per sweep

  def scaled(x):
    jax.debug.callback(lambda value: points.append(np.asarray(value)), x, ordered=True)
    return x * SCALE

  images, steps = SWEEP_LOGITS / SCALE, 5
  np.testing.assert_array_equal(np.argsort(-SWEEP_LOGITS, -1)[:, 1:3], [[1, 2], [1, 3], [1, 2]])
  adversarial = np.asarray(attacks.apgd_targeted(
      scaled, jnp.asarray(images), jnp.zeros(3, jnp.int32), KEY, epsilon=0.1, num_steps=steps,
      num_target_classes=2))
  assert len(points) == 1 + 2 * (steps + 1)
  sweeps = np.stack(points[1:]).reshape(2, steps + 1, 3, NUM_CLASSES)  # (sweep, point, example)
  broken = np.argmax(sweeps * SCALE, -1) != 0
  np.testing.assert_array_equal(broken.any(1), [[True, False, False], [True, False, True]])
  found_in = lambda sweep, i: any(np.array_equal(adversarial[i], p) for p in sweeps[sweep, :, i])
  # Example 0, broken by both sweeps: a point of the first, none of the second.
  assert found_in(0, 0) and not found_in(1, 0)
  np.testing.assert_array_equal(adversarial[1], images[1])  # never broken: the clean image
  assert found_in(1, 2) and np.argmax(adversarial[2] * SCALE) == 2  # broken by sweep 2 only
  assert float(attacks.distance(jnp.asarray(adversarial), jnp.asarray(images), 'linf').max()) <= (
      0.1 * (1 + 1e-6))


@pytest.mark.parametrize('traced', [False, True])
@pytest.mark.parametrize('rank', [2, 4])
def test_apgd_t_at_one_rank_follows_that_class(rank, traced):
  # One rank alone (AutoAttack's stages; traced there): the class ranked `rank`, not a neighbour.
  steps, records = 2, []
  attack = lambda r: attacks.apgd_targeted(cotangent_spy(records), jnp.asarray(CLEAN), LABELS,
                                           KEY, epsilon=0.001, num_steps=steps,
                                           target_class_rank=r)
  adversarial = jax.jit(attack)(jnp.int32(rank)) if traced else attack(rank)
  np.testing.assert_array_equal(adversarial, CLEAN)
  np.testing.assert_array_equal(followed_targets(records),
                                np.repeat(BY_RANK[None, :, rank - 1], steps + 1, axis=0))


def test_apgd_t_at_one_rank_repeats_that_ranks_run_of_the_whole_sweep():
  # Same random start, same points, as the sweep's second target (keys fold_in(key, rank - 2)):
  # AutoAttack's staged APGD-T draws what the whole sweep would for the examples it still runs.
  def recorder(points):
    def scaled(x):
      jax.debug.callback(lambda value: points.append(np.asarray(value)), x, ordered=True)
      return x * SCALE
    return scaled

  images, steps, whole, alone = SWEEP_LOGITS / SCALE, 3, [], []
  attacks.apgd_targeted(recorder(whole), jnp.asarray(images), jnp.zeros(3, jnp.int32), KEY,
                        epsilon=0.1, num_steps=steps, num_target_classes=2)
  attacks.apgd_targeted(recorder(alone), jnp.asarray(images), jnp.zeros(3, jnp.int32), KEY,
                        epsilon=0.1, num_steps=steps, target_class_rank=3)
  assert len(alone) == 1 + steps + 1 and len(whole) == 1 + 2 * (steps + 1)
  np.testing.assert_array_equal(np.stack(alone[1:]), np.stack(whole[-(steps + 1):]))
  assert not np.array_equal(alone[1], whole[1])  # the first sweep started elsewhere


def test_autoattack_runs_apgd_t_rank_by_rank_from_rank_2_on_the_still_robust():
  # ε = 0.001: nothing is broken, so each of the 3 stages (num_target_classes = 3) runs on every
  # example; its num_steps + 1 evaluations follow the class of rank stage + 2. (APGD-CE's and
  # FAB-T's gradients match no targeted DLR loss and show as -1; Square takes none.) Square needs
  # image batches: the logits are the pixels of (3, 2, 3, 1) images.
  steps, records = 2, []
  settings = attacks.AutoAttackSettings(apgd_steps=steps, num_target_classes=3, fab_steps=1,
                                        square_queries=1)
  spy = cotangent_spy(records)
  result = attacks.autoattack_sequence(lambda x: spy(x.reshape(len(x), -1)),
                                       jnp.asarray(CLEAN).reshape(3, 2, 3, 1), LABELS, KEY,
                                       epsilon=0.001, settings=settings)
  np.testing.assert_array_equal(result.broken_by, -1)
  followed = followed_targets(records)
  targeted = followed[(followed >= 0).all(1)]
  np.testing.assert_array_equal(targeted, np.repeat(BY_RANK[:, 1:4].T, steps + 1, axis=0))


def test_apgd_t_takes_one_way_of_naming_targets():
  call = lambda **kw: attacks.apgd_targeted(lambda x: x, jnp.asarray(CLEAN), LABELS, KEY,
                                            epsilon=0.1, num_steps=1, **kw)
  with pytest.raises(ValueError, match=r'^num_target_classes=2: give at most one of '
                     r'num_target_classes, target_class_rank and target_labels$'):
    call(num_target_classes=2, target_class_rank=3)
  with pytest.raises(ValueError, match=r'^target_class_rank=7: must be an int in \[2, 6\] '
                     r'\(rank 1 is the predicted class; logits_fn gives C = 6\)$'):
    call(target_class_rank=7)
  with pytest.raises(TypeError, match=r'^target_class_rank=2\.0: must be an int in \[2, 6\]'):
    call(target_class_rank=2.0)


# Restarts (`best_of_restarts`, used by APGD): per example, a successful run beats a failed one;
# between two runs both successful or both failed, the strictly higher loss wins, so a tie keeps
# the earlier run. (The reference restarts only the examples still robust, i.e. it keeps the first
# success; here a later success with a higher loss replaces it: both are misclassified points.)
# Hand table, run × example: (success, loss); the expected winner per example below it.
RUNS = [[(False, 1.0), (True, 1.0), (False, 3.0), (True, 1.0), (False, 1.0)],
        [(True, 0.0), (True, 2.0), (False, 1.0), (False, 9.0), (False, 1.0)],
        [(False, 5.0), (True, 2.0), (False, 2.0), (True, 1.0), (False, 2.0)]]
# The winners of the first 1, 2 and 3 runs (a single run is returned as it is):
WINNERS = {1: [0, 0, 0, 0, 0], 2: [1, 1, 0, 0, 0], 3: [1, 1, 0, 0, 2]}


@pytest.mark.parametrize('restarts', [1, 2, 3])
def test_restarts_keep_success_first_then_the_strictly_higher_loss(restarts):
  success = jnp.asarray([[s for s, _ in run] for run in RUNS])
  loss = jnp.asarray([[value for _, value in run] for run in RUNS])
  calls = []

  def next_run():
    calls.append(len(calls))
    return np.int32(calls[-1])

  def run(key):  # the r-th call returns row r of the table; its images say which run they are
    del key
    r = io_callback(next_run, jax.ShapeDtypeStruct((), jnp.int32), ordered=True)
    return jnp.full((5, 2), r, jnp.float32), success[r], loss[r]

  adversarial, kept_success, kept_loss = best_of_restarts(run, KEY, restarts)
  assert len(calls) == restarts
  winner = np.asarray(WINNERS[restarts])
  np.testing.assert_array_equal(adversarial[:, 0], winner)
  np.testing.assert_array_equal(kept_success, success[winner, np.arange(5)])
  np.testing.assert_array_equal(kept_loss, loss[winner, np.arange(5)])
