"""Randomness that must differ does (steps, epochs, examples, restarts); randomness that must match
does (the same step and seed). Resume and 1-vs-8-device agreement are in test_training.py and
test_methods_sharding.py; the exact key schedule of every method is pinned by test_step_reference.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from robust_jax import attacks, data, objectives, sharding
from robust_jax.data import pipeline
from robust_jax.models import build_model
from robust_jax.training import loop as train, state as train_state, step as train_step
from tests import helpers

SPEC = data.SPECS['fashion_mnist']


def _dropout_step(devices, step_key):
  """A train step of a dropout CNN whose optimizer never moves the parameters (SGD, lr 0)."""
  config = helpers.tiny_config('unused.npz')
  config.model.update(dropout_rate=0.5, dropout_sites=('classifier',))
  model = build_model(config.model, SPEC)
  optimizer = optax.sgd(0.0)
  step = train_step.make_train_step(objectives.build_loss_fn(config, model, SPEC.num_classes),
                                    optimizer, pipeline.make_augment_fn('none', 0), step_key,
                                    sharding.make_mesh(devices))
  state = train_state.init_train_state(model, optimizer, jax.random.key(0), SPEC.image_shape)
  return step, state


def test_consecutive_steps_draw_new_masks_and_the_same_step_repeats(eight_devices):
  images, labels = helpers.quadrant_images(16, seed=0)
  batch = {'image': images, 'label': labels}
  step, state = _dropout_step(eight_devices[:1], jax.random.key(7))
  state, first = step(state, batch)
  state, second = step(state, batch)  # same parameters, same batch, next step: new dropout masks
  assert float(first['loss']) != float(second['loss'])
  step, state = _dropout_step(eight_devices[:1], jax.random.key(7))
  _, again = step(state, batch)
  assert float(again['loss']) == float(first['loss'])


def test_dropout_masks_differ_between_examples():
  config = helpers.tiny_config('unused.npz')
  config.model.update(dropout_rate=0.5, dropout_sites=('classifier',))
  model = build_model(config.model, SPEC)
  params, state = model.init(jax.random.key(0), SPEC.image_shape)
  image = jnp.full((8, 28, 28, 1), 0.5)  # eight copies of one image
  logits, _ = model.apply(params, state, image, train=True, key=jax.random.key(1))
  assert len({tuple(np.round(np.asarray(row), 6)) for row in logits}) == 8


def test_each_epoch_has_its_own_order_and_a_rerun_repeats_it(tiny_npz, tmp_path, monkeypatch,
                                                             eight_devices):
  orders = []
  make = pipeline.make_epoch_batches_fn

  def recording(*args, **kwargs):
    epoch_batches = make(*args, **kwargs)

    def record(images, labels, key):
      batches = epoch_batches(images, labels, key)
      orders.append(np.asarray(batches['image']).reshape(-1, 28 * 28).sum(-1))
      return batches
    return record

  monkeypatch.setattr(pipeline, 'make_epoch_batches_fn', recording)
  config = helpers.tiny_config(tiny_npz, num_epochs=2)
  for run in ('a', 'b'):
    train.train_and_evaluate(config, str(tmp_path / run), devices=eight_devices[:1])
  first_run, second_run = orders[:2], orders[2:]
  assert not np.array_equal(first_run[0], first_run[1])  # epoch 1 is shuffled anew
  np.testing.assert_array_equal(first_run, second_run)  # the same seed gives the same orders


def test_restarts_start_from_different_points_and_keep_the_worst():
  """With a vanishing step, each restart ends at its random start: the kept point per example is
  the start with the highest loss among the restarts' own keys fold_in(key, r)."""
  w = jax.random.normal(jax.random.key(0), (16, 3))
  logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w
  images = jax.random.uniform(jax.random.key(1), (6, 4, 4, 1), minval=0.3, maxval=0.7)
  labels = jnp.array([0, 1, 2, 0, 1, 2])
  key = jax.random.key(2)
  result = attacks.pgd(logits_fn, images, labels, key, epsilon=0.2, step_size=1e-9, num_steps=1,
                       restarts=4)
  starts = [jnp.clip(images + jax.random.uniform(jax.random.fold_in(key, r), images.shape,
                                                 minval=-0.2, maxval=0.2), 0, 1)
            for r in range(4)]
  losses = np.stack([np.asarray(optax.softmax_cross_entropy_with_integer_labels(
      logits_fn(s), labels)) for s in starts])
  wrong = np.stack([np.asarray(jnp.argmax(logits_fn(s), -1) != labels) for s in starts])
  assert len({tuple(np.asarray(s).ravel()[:5]) for s in starts}) == 4
  best = np.argmax(wrong * 1e6 + losses, axis=0)  # misclassified first, then the highest loss
  expected = np.stack([np.asarray(starts[r][b]) for b, r in enumerate(best)])
  np.testing.assert_allclose(result, expected, atol=1e-6)
