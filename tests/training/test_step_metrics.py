"""The train step's metrics on a hand-made linear model: 'accuracy' is the fraction of examples
whose logits' argmax is the label, 'grad_norm' the global L2 norm of the gradient, logged only
when asked (`step_function`)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from robust_jax.objectives import LossAux
from robust_jax.training import state as train_state
from robust_jax.training import step as train_step

W = jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -1.0], [0.5, 0.5, 0.5]])


def _loss_fn(params, model_state, inputs, key):  # pylint: disable=unused-argument
  logits = inputs['image'].reshape(inputs['image'].shape[0], -1) @ params['w']
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, inputs['label']).mean()
  return loss, LossAux(model_state=model_state, logits=logits, metrics={})


def _step(log_grad_norm):
  images = np.array([[3, 0, 0, 1], [0, 5, 0, 0], [0, 0, 0, 2], [1, 1, 4, 0]], np.float32)
  batch = {'image': images.reshape(4, 2, 2, 1), 'label': np.array([0, 1, 2, 1], np.int32)}
  optimizer = optax.sgd(0.1)
  params = {'w': W}
  state = train_state.TrainState(jnp.zeros((), jnp.int32), params, {}, optimizer.init(params))
  step = train_step.step_function(_loss_fn, optimizer, lambda images, key: images, log_grad_norm)
  return step(state, batch, jax.random.key(0)), images, batch['label']


def test_accuracy_is_the_fraction_whose_argmax_is_the_label():
  (_, metrics), images, labels = _step(False)
  predicted = np.argmax(images @ np.asarray(W), -1)  # [0, 1, 0, 1]: all but example 2 right
  assert list(predicted) == [0, 1, 0, 1] and list(labels) == [0, 1, 2, 1]
  assert float(metrics['accuracy']) == pytest.approx(0.75)  # not 0.5: a flipped test reads 0.25


def test_grad_norm_is_the_gradients_global_norm_and_only_when_asked():
  (_, metrics), images, labels = _step(True)
  gradient = jax.grad(lambda w: _loss_fn({'w': w}, {}, {'image': jnp.asarray(images),
                                                        'label': labels}, None)[0])(W)
  assert float(metrics['grad_norm']) == pytest.approx(float(jnp.linalg.norm(gradient)), rel=1e-6)
  assert 'grad_norm' not in _step(False)[0][1]
