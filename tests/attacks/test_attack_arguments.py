"""Bad calls to pgd / fgsm / apgd fail with a one-line error; good calls still jit and vmap."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import attacks
from robust_jax.attacks import arguments
from robust_jax.attacks.pgd import _pgd

BATCH, NUM_CLASSES = 3, 4
_rng = np.random.default_rng(0)
WEIGHTS = jnp.asarray(_rng.normal(size=(16, NUM_CLASSES)), jnp.float32)
IMAGES = jnp.asarray(_rng.uniform(0.1, 0.9, size=(BATCH, 4, 4, 1)), jnp.float32)
LABELS = jnp.asarray([0, 1, 3], jnp.int32)
KEY = jax.random.key(0)


def logits_fn(x):
  """A linear model on flattened (B, 4, 4, 1) images: (B, 16) @ (16, 4)."""
  return x.reshape(x.shape[0], -1) @ WEIGHTS


def two_class_logits_fn(x):
  return logits_fn(x)[:, :2]


def pgd(**overrides):
  kwargs = dict(logits_fn=logits_fn, images=IMAGES, labels=LABELS, key=KEY, epsilon=0.1,
                step_size=0.025, num_steps=3) | overrides
  return attacks.pgd(**kwargs)


def fgsm(**overrides):
  kwargs = dict(logits_fn=logits_fn, images=IMAGES, labels=LABELS, key=KEY, epsilon=0.1) | overrides
  return attacks.fgsm(**kwargs)


def apgd(**overrides):
  kwargs = dict(logits_fn=logits_fn, images=IMAGES, labels=LABELS, key=KEY, epsilon=0.1,
                num_steps=4) | overrides
  return attacks.apgd(**kwargs)


def under_jit(attack, images=IMAGES, **overrides):
  """The attack inside jax.jit with ε and the images traced."""
  return lambda: jax.jit(lambda x, eps: attack(images=x, epsilon=eps, **overrides))(images, 0.1)


IMAGES_255 = IMAGES * 255
IMAGES_NAN = IMAGES.at[0, 0, 0, 0].set(jnp.nan)
NORMS = r"must be one of 'linf', 'l2'$"
PIXELS = r'pixel values in \[0, 1\] \(e\.g\. uint8 images / 255\)$'

# (description, call, exception type, regex its one-line message must match from the start)
BAD_CALLS = [
    ('pgd norm Linf', lambda: pgd(norm='Linf'), ValueError, r"^norm='Linf': " + NORMS),
    ('pgd norm l1', lambda: pgd(norm='l1'), ValueError, r"^norm='l1': " + NORMS),
    ('pgd norm not a string', lambda: pgd(norm=np.inf), ValueError, r'^norm=inf: ' + NORMS),
    ('pgd negative epsilon', lambda: pgd(epsilon=-0.1), ValueError,
     r'^epsilon=-0\.1: must be a finite number >= 0$'),
    ('pgd NaN epsilon', lambda: pgd(epsilon=float('nan')), ValueError,
     r'^epsilon=nan: must be a finite number >= 0$'),
    ('pgd infinite epsilon', lambda: pgd(epsilon=np.inf), ValueError,
     r'^epsilon=inf: must be a finite number >= 0$'),
    ('pgd negative concrete array epsilon', lambda: pgd(epsilon=jnp.float32(-0.1)), ValueError,
     r'^epsilon=-0\.10*\d*: must be a finite number >= 0$'),
    ('pgd per-example epsilon', lambda: pgd(epsilon=jnp.full(BATCH, 0.1)), ValueError,
     r'^epsilon\.shape=\(3,\): must be a scalar$'),
    ('pgd epsilon as a string', lambda: pgd(epsilon='8/255'), TypeError,
     r"^epsilon='8/255': must be a real number$"),
    ('pgd zero step size', lambda: pgd(step_size=0.0), ValueError,
     r'^step_size=0\.0: must be a finite number > 0$'),
    ('pgd negative step size', lambda: pgd(step_size=-0.01), ValueError,
     r'^step_size=-0\.01: must be a finite number > 0$'),
    ('pgd NaN step size', lambda: pgd(step_size=float('nan')), ValueError,
     r'^step_size=nan: must be a finite number > 0$'),
    ('pgd zero steps', lambda: pgd(num_steps=0), ValueError, r'^num_steps=0: must be an int >= 1$'),
    ('pgd fractional steps', lambda: pgd(num_steps=2.5), TypeError,
     r'^num_steps=2\.5: must be an int >= 1 \(a static Python int\)$'),
    ('pgd zero restarts', lambda: pgd(restarts=0), ValueError,
     r'^restarts=0: must be an int >= 1$'),
    ('pgd uint8 images', lambda: pgd(images=(IMAGES_255).astype(jnp.uint8)), TypeError,
     r'^images\.dtype=uint8: must be floating point with ' + PIXELS),
    ('pgd images in [0, 255]', lambda: pgd(images=IMAGES_255), ValueError,
     r'^images: values range over \[\d+\.?\d*, \d+\.?\d*\]; must be ' + PIXELS),
    ('pgd NaN in images', lambda: pgd(images=IMAGES_NAN), ValueError,
     r'^images: values range over \[nan, nan\]; must be ' + PIXELS),
    ('pgd images without batch axis', lambda: pgd(images=IMAGES.reshape(-1)), ValueError,
     r'^images\.shape=\(48,\): must be \(B, \.\.\.\) with a batch axis first and at least one '
     r'feature axis$'),
    ('pgd float labels', lambda: pgd(labels=LABELS.astype(jnp.float32)), TypeError,
     r'^labels\.dtype=float32: must be an integer type \(class indices\)$'),
    ('pgd labels (B, 1)', lambda: pgd(labels=LABELS[:, None]), ValueError,
     r'^labels\.shape=\(3, 1\): must be \(B,\) = \(3,\), one class index per image$'),
    ('pgd label = C', lambda: pgd(labels=LABELS.at[0].set(4)), ValueError,
     r'^labels: values range over \[1, 4\]; must be class indices in \[0, 3\] '
     r'\(logits_fn gives C = 4\)$'),
    ('pgd negative label', lambda: pgd(labels=LABELS.at[0].set(-1)), ValueError,
     r'^labels: values range over \[-1, 3\]; must be class indices in \[0, 3\]'),
    ('pgd unknown loss', lambda: pgd(loss='CE'), ValueError,
     r"^loss='CE': must be one of 'ce', 'margin', 'dlr', 'kl'$"),
    ('pgd DLR with 2 classes', lambda: pgd(logits_fn=two_class_logits_fn, labels=LABELS % 2,
                                           loss='dlr'), ValueError,
     r"^loss='dlr': needs at least 3 classes \(it divides by z_π1 - z_π3\); logits_fn gives "
     r'C = 2$'),
    ('pgd targeted KL', lambda: pgd(loss='kl', targeted=True), ValueError,
     r"^loss='kl' with targeted=True: the KL to the clean prediction has no target class; "
     r"use loss 'ce' or 'margin' for a targeted attack$"),
    ('pgd targeted not a bool', lambda: pgd(targeted='yes'), TypeError,
     r"^targeted='yes': must be True or False$"),
    ('pgd random_start None', lambda: pgd(random_start=None), TypeError,
     r'^random_start=None: must be True or False$'),
    ('pgd random start without key', lambda: pgd(key=None), ValueError,
     r'^key=None: this call draws random starts and needs a PRNG key \(e\.g\. '
     r'jax\.random\.key\(0\)\)$'),
    ('pgd restarts without key', lambda: pgd(key=None, random_start=False, restarts=2),
     ValueError, r'^key=None: this call draws random starts'),
    ('pgd logits_fn returning a tuple', lambda: pgd(logits_fn=lambda x: (logits_fn(x), None)),
     ValueError, r'^logits_fn\(images\) gives tuple: must be logits \(B, C\) with B = 3$'),
    ('pgd logits_fn not callable', lambda: pgd(logits_fn=WEIGHTS), TypeError,
     r'^logits_fn=ArrayImpl: must be a function images -> logits$'),
    ('pgd jit: norm Linf', under_jit(pgd, norm='Linf'), ValueError, r"^norm='Linf': " + NORMS),
    ('pgd jit: uint8 images', under_jit(pgd, images=IMAGES_255.astype(jnp.uint8)), TypeError,
     r'^images\.dtype=uint8: must be floating point'),
    ('pgd jit: label = C', under_jit(pgd, labels=LABELS.at[0].set(4)), ValueError,
     r'^labels: values range over \[1, 4\]'),
    ('fgsm norm Linf', lambda: fgsm(norm='Linf'), ValueError, r"^norm='Linf': " + NORMS),
    ('fgsm negative epsilon', lambda: fgsm(epsilon=-0.1), ValueError,
     r'^epsilon=-0\.1: must be a finite number >= 0$'),
    ('fgsm NaN epsilon', lambda: fgsm(epsilon=float('nan')), ValueError,
     r'^epsilon=nan: must be a finite number >= 0$'),
    ('fgsm zero step size', lambda: fgsm(random_start=True, step_size=0.0), ValueError,
     r'^step_size=0\.0: must be a finite number > 0$'),
    ('fgsm images in [0, 255]', lambda: fgsm(images=IMAGES_255), ValueError,
     r'^images: values range over '),
    ('fgsm uint8 images', lambda: fgsm(images=IMAGES_255.astype(jnp.uint8)), TypeError,
     r'^images\.dtype=uint8: '),
    ('fgsm label = C', lambda: fgsm(labels=LABELS.at[0].set(4)), ValueError,
     r'^labels: values range over \[1, 4\]'),
    ('fgsm unknown loss', lambda: fgsm(loss='xent'), ValueError,
     r"^loss='xent': must be one of 'ce', 'margin', 'dlr', 'kl'$"),
    ('fgsm DLR with 2 classes', lambda: fgsm(logits_fn=two_class_logits_fn, labels=LABELS % 2,
                                             loss='dlr'), ValueError,
     r"^loss='dlr': needs at least 3 classes"),
    ('fgsm targeted KL', lambda: fgsm(loss='kl', targeted=True), ValueError,
     r"^loss='kl' with targeted=True: "),
    ('fgsm random start without key', lambda: fgsm(key=None, random_start=True), ValueError,
     r'^key=None: this call draws random starts'),
    ('fgsm jit: norm l1', under_jit(fgsm, norm='l1'), ValueError, r"^norm='l1': " + NORMS),
    ('apgd norm L2', lambda: apgd(norm='L2'), ValueError, r"^norm='L2': " + NORMS),
    ('apgd negative epsilon', lambda: apgd(epsilon=-0.1), ValueError,
     r'^epsilon=-0\.1: must be a finite number >= 0$'),
    ('apgd NaN epsilon', lambda: apgd(epsilon=float('nan')), ValueError, r'^epsilon=nan: '),
    ('apgd zero steps', lambda: apgd(num_steps=0), ValueError,
     r'^num_steps=0: must be an int >= 1$'),
    ('apgd zero restarts', lambda: apgd(restarts=0), ValueError, r'^restarts=0: must be an int'),
    ('apgd KL loss', lambda: apgd(loss='kl'), ValueError,
     r"^loss='kl': must be one of 'ce', 'margin', 'dlr'$"),
    ('apgd unknown loss', lambda: apgd(loss='DLR'), ValueError,
     r"^loss='DLR': must be one of 'ce', 'margin', 'dlr'$"),
    ('apgd DLR with 2 classes', lambda: apgd(logits_fn=two_class_logits_fn, labels=LABELS % 2,
                                             loss='dlr'), ValueError,
     r"^loss='dlr': needs at least 3 classes"),
    ('apgd images in [0, 255]', lambda: apgd(images=IMAGES_255), ValueError,
     r'^images: values range over '),
    ('apgd float labels', lambda: apgd(labels=LABELS.astype(jnp.float32)), TypeError,
     r'^labels\.dtype=float32: '),
    ('apgd label = C', lambda: apgd(labels=LABELS.at[0].set(4)), ValueError,
     r'^labels: values range over \[1, 4\]'),
    ('apgd without key', lambda: apgd(key=None), ValueError,
     r'^key=None: this call draws random starts'),
    ('apgd rho above 1', lambda: apgd(rho=1.5), ValueError,
     r'^rho=1\.5: must be a finite number in \[0, 1\]$'),
    ('apgd negative momentum', lambda: apgd(momentum=-0.1), ValueError,
     r'^momentum=-0\.1: must be a finite number in \[0, 1\]$'),
    ('apgd jit: traced num_steps', lambda: jax.jit(lambda n: apgd(num_steps=n))(4), TypeError,
     r'^num_steps=.*Tracer of shape \(\): must be an int >= 1 \(a static Python int\)$'),
    ('distance in capitals', lambda: attacks.distance(IMAGES, IMAGES, 'Linf'), ValueError,
     r"^norm='Linf': must be one of 'linf', 'l2'$"),
    ('distance without norm', lambda: attacks.distance(IMAGES, IMAGES, None), ValueError,
     r"^norm=None: must be one of 'linf', 'l2'$"),
    ('distance of other shapes', lambda: attacks.distance(IMAGES[:1], IMAGES, 'l2'), ValueError,
     r'^adversarial\.shape=\(1, .*\): must equal images\.shape=\(3, .*\), one perturbed input '
     r'per input$'),
]


def own_message(error: Exception) -> str:
  """The error's message without the traceback note JAX appends to errors raised under jit."""
  return str(error).split('\n--------------------\nFor simplicity, JAX')[0]


@pytest.mark.parametrize('description,call,error,message', BAD_CALLS,
                         ids=[row[0] for row in BAD_CALLS])
def test_bad_call_raises_one_clear_error(description, call, error, message):
  del description
  with pytest.raises(error) as raised:
    call()
  assert re.search(message, own_message(raised.value)), own_message(raised.value)


def test_every_message_is_a_single_line():
  assert len(BAD_CALLS) >= 30
  for description, call, error, _ in BAD_CALLS:
    with pytest.raises(error) as raised:
      call()
    assert own_message(raised.value) and '\n' not in own_message(raised.value), description


GOOD_CALLS = {
    'pgd': lambda x, eps, key: attacks.pgd(logits_fn, x, LABELS, key, epsilon=eps,
                                           step_size=eps / 4, num_steps=3, restarts=2),
    'fgsm': lambda x, eps, key: attacks.fgsm(logits_fn, x, LABELS, key, epsilon=eps,
                                             random_start=True, step_size=1.25 * eps),
    'apgd': lambda x, eps, key: attacks.apgd(logits_fn, x, LABELS, key, epsilon=eps, num_steps=4,
                                             norm='l2', loss='dlr'),
}


@pytest.mark.parametrize('name', sorted(GOOD_CALLS))
def test_good_call_works_under_jit_with_epsilon_traced_or_not(name):
  # Eager calls of the same attacks are tested in test_attacks.py.
  attack = GOOD_CALLS[name]
  traced_epsilon = jax.jit(attack)(IMAGES, 0.1, KEY)
  static_epsilon = jax.jit(lambda x, key: attack(x, 0.1, key))(IMAGES, KEY)
  assert float(attacks.distance(traced_epsilon, IMAGES, 'linf').max()) <= 0.1 + 1e-6
  assert not np.allclose(traced_epsilon, IMAGES)
  np.testing.assert_allclose(static_epsilon, traced_epsilon, atol=1e-6)


@pytest.mark.parametrize('name', sorted(GOOD_CALLS))
def test_good_call_vmaps_over_a_batch_of_keys(name):
  attack = GOOD_CALLS[name]
  keys = jax.random.split(KEY, 3)
  batched = jax.jit(jax.vmap(lambda key: attack(IMAGES, 0.1, key)))(keys)
  assert batched.shape == (3,) + IMAGES.shape
  for i in range(3):  # the same jitted function as above: compiled once
    np.testing.assert_allclose(batched[i], jax.jit(attack)(IMAGES, 0.1, keys[i]), atol=1e-6)
  assert not np.allclose(batched[0], batched[1])


def test_traced_epsilon_and_images_are_not_value_checked():
  # Values are unknown while tracing: a traced ε < 0 or traced pixels > 1 pass the checks.
  run = jax.jit(lambda x, eps: attacks.fgsm(logits_fn, x, LABELS, epsilon=eps))
  assert run(IMAGES * 255, -0.1).shape == IMAGES.shape


def test_checks_add_nothing_to_the_computation():
  kwargs = dict(step_size=0.025, num_steps=3, norm='linf', random_start=True, restarts=2,
                loss='ce', targeted=False)
  checked = jax.make_jaxpr(lambda x, eps, key: attacks.pgd(
      logits_fn, x, LABELS, key, epsilon=eps, **kwargs))(IMAGES, 0.1, KEY)
  unchecked = jax.make_jaxpr(lambda x, eps, key: _pgd(
      logits_fn, x, LABELS, key, epsilon=eps, **kwargs))(IMAGES, 0.1, KEY)
  assert str(checked) == str(unchecked)


def test_number_of_classes_comes_from_shapes_without_running_the_model():
  seen = []

  def recording_logits_fn(x):
    seen.append(isinstance(x, jax.core.Tracer))
    return logits_fn(x)

  assert arguments.check_inputs(recording_logits_fn, IMAGES, LABELS) == NUM_CLASSES
  assert seen == [True]
