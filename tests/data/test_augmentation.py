"""Training augmentation against the AMP reference code: crop fill, Cutout, AutoAugment.

Every AutoAugment op is compared with the Pillow call the reference makes (`data_utils.py` of
hiyouga/AMP-Regularizer, restated in `_pillow`) at every level and sign: exactly, but for shear's
bicubic, where under 1 % of pixels may differ (the policy tables: `test_autoaugment_tables.py`);
the whole augmentation under `jit`, per key and on 1 and 8 devices.
"""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from robust_jax import data, sharding
from robust_jax.config import defaults as config_defaults, schema as config_schema
from robust_jax.data import autoaugment, pipeline

SHEARS = ('shearX', 'shearY')


def _pillow(op, image, argument):
  """What the reference does for `op` with `argument` (its magnitude after sign and scaling)."""
  fill = (128, 128, 128)
  if op in ('shearX', 'shearY', 'translateX', 'translateY'):
    matrix = {'shearX': (1, argument, 0, 0, 1, 0), 'shearY': (1, 0, 0, argument, 1, 0),
              'translateX': (1, 0, argument, 0, 1, 0), 'translateY': (1, 0, 0, 0, 1, argument)}
    resample = Image.BICUBIC if op.startswith('shear') else Image.NEAREST
    return image.transform(image.size, Image.AFFINE, matrix[op], resample, fillcolor=fill)
  if op == 'rotate':
    rotated = image.convert('RGBA').rotate(argument)
    grey = Image.new('RGBA', rotated.size, (128,) * 4)
    return Image.composite(rotated, grey, rotated).convert(image.mode)
  enhancers = {'color': ImageEnhance.Color, 'contrast': ImageEnhance.Contrast,
               'sharpness': ImageEnhance.Sharpness, 'brightness': ImageEnhance.Brightness}
  if op in enhancers:
    return enhancers[op](image).enhance(argument)
  if op == 'posterize':
    return ImageOps.posterize(image, int(argument))
  if op == 'solarize':
    return ImageOps.solarize(image, argument)
  return {'autocontrast': ImageOps.autocontrast, 'equalize': ImageOps.equalize,
          'invert': ImageOps.invert}[op](image)


def _test_images():
  """(9, 32, 32, 3) uint8: noise and smooth images over random narrow ranges, plus channels
  spanning [0, 25] (where Pillow's autocontrast maps the top value to 254) and a constant one."""
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:32, 0:32]
  images = []
  for i in range(8):
    low = rng.integers(0, 200, 3)
    high = low + rng.integers(1, 56, 3)
    if i % 2:
      wave = (np.sin(x / 5 + i) + np.cos(y / 7)) / 4 + 0.5
      images.append(low + (high - low) * wave[..., None])
    else:
      images.append(rng.integers(low, high, (32, 32, 3)))
  ramp = np.stack([(x + y) * 25 // 62, 3 + (x * y) % 51, np.full_like(x, 10)], -1)
  return np.stack(images + [ramp]).astype(np.uint8)


@pytest.mark.parametrize('op', list(autoaugment.OPS))
def test_op_matches_pillow_at_every_level_and_sign(op):
  images = _test_images()
  batched = jax.jit(jax.vmap(autoaugment.OPS[op], (0, None)))
  differing, total = 0, 0
  for level in range(10):
    for sign in (-1, 1):
      argument = autoaugment.op_argument(op, level, sign, 32, 32)
      ours = np.asarray(batched(images, np.float32(argument)))
      for image, mine in zip(images, ours):
        expected = np.asarray(_pillow(op, Image.fromarray(image), argument))
        if op in SHEARS:
          differing += np.sum(mine != expected)
          total += mine.size
        else:
          np.testing.assert_array_equal(mine, expected, err_msg=f'{op} level {level} sign {sign}')
  if op in SHEARS:  # bicubic in float32 against Pillow's float64 (autoaugment's docstring)
    assert differing <= 0.01 * total, (op, differing / total)


def test_autocontrast_reproduces_pillows_float64_truncation():
  ramp = np.zeros((32, 32, 3), np.uint8)
  ramp[..., 0] = np.arange(32 * 32).reshape(32, 32) % 26  # values 0..25
  out = np.asarray(autoaugment.autocontrast(ramp, 0.0))
  assert out[..., 0].max() == 254  # int(25 · (255/25)) = 254 in float64
  np.testing.assert_array_equal(out, np.asarray(ImageOps.autocontrast(Image.fromarray(ramp))))


def test_every_policy_op_is_implemented_and_its_arguments_are_the_references():
  """The tables themselves, whole: `test_autoaugment_tables.py`."""
  for row in autoaugment.CIFAR10_POLICY + autoaugment.SVHN_POLICY:
    assert row[1] in autoaugment.OPS and row[4] in autoaugment.OPS
  argument = autoaugment.op_argument
  assert argument('translateX', 9, -1, 32, 32) == -150 / 331 * 32
  assert argument('rotate', 9, -1, 32, 32) == 30.0  # never negated, as in the reference
  assert argument('solarize', 1, -1, 32, 32) == pytest.approx(256 - 256 / 9)
  assert argument('color', 1, -1, 32, 32) == pytest.approx(0.9)
  assert argument('shearY', 9, 1, 32, 32) == pytest.approx(0.3)


def test_policy_applies_steps_with_their_probability_and_sign():
  images = _test_images()[np.arange(64) % 9]
  key = jax.random.key(3)
  always = ((1.0, 'invert', 0, 1.0, 'translateX', 9),)
  out = np.asarray(jax.jit(autoaugment.apply_policy, static_argnums=2)(images, key, always))
  shift = autoaugment.op_argument('translateX', 9, 1, 32, 32)
  candidates = [np.asarray(jax.vmap(autoaugment.translate_x, (0, None))(255 - images, s * shift))
                for s in (-1, 1)]
  negated = np.all(out == candidates[0], axis=(1, 2, 3))
  assert np.all(negated | np.all(out == candidates[1], axis=(1, 2, 3)))
  assert 16 < negated.sum() < 48  # a fair sign per example
  never = ((0.0, 'invert', 0, 0.0, 'equalize', 0),)
  np.testing.assert_array_equal(autoaugment.apply_policy(images, key, never), images)
  half = ((0.5, 'invert', 0, 0.0, 'invert', 0), (0.0, 'invert', 0, 0.0, 'invert', 0))
  inverted = np.all(np.asarray(autoaugment.apply_policy(images, key, half)) != images, (1, 2, 3))
  assert 6 < inverted.sum() < 26  # rows drawn uniformly (1/2), then applied with p = 1/2


def test_crop_pads_with_the_fill_value_and_flips_only_when_asked():
  images = (np.arange(16 * 8 * 8).reshape(16, 8, 8, 1) % 120 + 1).astype(np.uint8)
  key = jax.random.key(0)
  padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], constant_values=128)
  windows = lambda b: [padded[b, t:t + 8, s:s + 8] for t in range(5) for s in range(5)]
  as_uint8 = lambda out: np.round(np.asarray(out) * 255).astype(np.uint8)
  crops = as_uint8(pipeline.make_augment_fn('crop', 2, crop_fill=128)(images, key))
  flipped = as_uint8(pipeline.make_augment_fn('crop_flip', 2, crop_fill=128)(images, key))
  assert (crops == 128).any()  # 128/255 in [0, 1] units
  num_flipped = 0
  for b in range(16):
    assert any(np.array_equal(crops[b], w) for w in windows(b))
    is_mirror = any(np.array_equal(flipped[b], w[:, ::-1]) for w in windows(b))
    assert is_mirror or any(np.array_equal(flipped[b], w) for w in windows(b))
    num_flipped += is_mirror
  assert 2 < num_flipped < 14


def test_cutout_zeroes_one_clipped_square_per_example():
  images = np.ones((256, 32, 32, 3), np.float32)
  out = np.asarray(pipeline.cutout(images, jax.random.key(1), 16))
  centres = []
  for example in out:
    hole = example == 0
    assert np.all(hole == hole[..., :1])  # every channel
    rows, columns = np.nonzero(hole[..., 0].any(1))[0], np.nonzero(hole[..., 0].any(0))[0]
    np.testing.assert_array_equal(hole[..., 0], np.outer(hole[..., 0].any(1), hole[..., 0].any(0)))
    for run in (rows, columns):
      assert np.all(np.diff(run) == 1)
      length = len(run)
      clipped = run[0] == 0 or run[-1] == 31
      assert length == 16 or (clipped and 8 <= length < 16)
      centres.append(run[0] + 8 if run[0] > 0 else run[-1] + 1 - 8)
  centres = np.array(centres)
  assert centres.min() == 0 and centres.max() == 31  # centre uniform over the image
  assert len({c.tobytes() for c in out[:32]}) > 25  # independent per example
  np.testing.assert_array_equal(pipeline.cutout(images[:5], jax.random.key(1), 16), out[:5])


def test_cutout_fills_zero_in_unit_pixel_space_after_autoaugment(monkeypatch):
  always_invert = ((1.0, 'invert', 0, 0.0, 'invert', 0),)
  monkeypatch.setitem(autoaugment.POLICIES, 'cifar10', always_invert)
  augment = pipeline.make_augment_fn('none', 0, cutout_length=8, autoaugment_policy='cifar10')
  out = np.asarray(jax.jit(augment)(np.zeros((8, 32, 32, 3), np.uint8), jax.random.key(0)))
  assert out.dtype == np.float32 and set(np.unique(out)) == {0.0, 1.0}  # inverted, then the hole
  holes = (out == 0).sum(axis=(1, 2, 3)) // 3
  assert np.all((holes >= 4 * 4) & (holes <= 8 * 8))  # an 8×8 square, clipped at worst to 4×4


FULL = dict(augmentation='crop_flip', crop_padding=4, crop_fill=128, cutout_length=16,
            autoaugment_policy='cifar10')


def test_full_augmentation_is_jitted_vmapped_and_deterministic_per_key():
  images = _test_images()[np.arange(32) % 9]
  augment = jax.jit(pipeline.make_augment_fn(**FULL))
  first = np.asarray(augment(images, jax.random.key(5)))
  chex.assert_shape(first, images.shape)
  assert first.dtype == np.float32 and first.min() >= 0 and first.max() <= 1
  np.testing.assert_array_equal(augment(images, jax.random.key(5)), first)
  assert not np.array_equal(augment(images, jax.random.key(6)), first)
  np.testing.assert_array_equal(augment(images[:8], jax.random.key(5)), first[:8])
  assert len({o.tobytes() for o in first[:9]}) == 9


def test_same_augmentation_on_one_and_eight_devices(eight_devices):
  images = _test_images()[np.arange(16) % 9]
  augment = pipeline.make_augment_fn(**FULL)
  outputs = []
  for devices in (eight_devices[:1], eight_devices):
    mesh = sharding.make_mesh(devices)
    sharded = jax.device_put(images, sharding.batch_sharded(mesh))
    outputs.append(np.asarray(jax.jit(augment, out_shardings=sharding.batch_sharded(mesh))(
        sharded, jax.random.key(2))))
  np.testing.assert_array_equal(outputs[0], outputs[1])


def _svhn_section():
  return ml_collections.ConfigDict(dict(
      name='svhn', source='tfds', path='', download=False, augmentation='default', crop_padding=2,
      crop_fill=128, cutout_length=20, autoaugment='none', validation_examples=0,
      **config_defaults.TEXT_DATASET_DEFAULTS))


def test_augment_fn_for_resolves_the_dataset_default():
  section = _svhn_section()
  config_schema.check_section('config.dataset', section, data.SCHEMA)
  images = np.full((4, 32, 32, 3), 7, np.uint8)
  out = np.round(np.asarray(data.augment_fn_for(section)(images, jax.random.key(0))) * 255)
  assert data.augmentation_for(section) == 'crop'  # SVHN: crop without flip
  assert set(np.unique(out)) == {0, 7, 128}  # Cutout, the image, the crop's fill


def test_bad_augmentation_names_are_one_line_errors():
  with pytest.raises(ValueError, match="augmentation='flip': must be one of none, crop, crop_flip"):
    pipeline.make_augment_fn('flip', 4)
  with pytest.raises(ValueError, match="autoaugment='imagenet': must be one of none, cifar10,"):
    pipeline.make_augment_fn('crop', 4, autoaugment_policy='imagenet')
  section = _svhn_section()
  section.autoaugment = 'imagenet'
  with pytest.raises(config_schema.ConfigError, match="dataset.autoaugment='imagenet': must"):
    config_schema.check_section('config.dataset', section, data.SCHEMA)
  with pytest.raises(ValueError, match=r'images.shape=\(2, 8, 8, 1\): AutoAugment needs RGB'):
    autoaugment.apply_policy(jnp.zeros((2, 8, 8, 1), jnp.uint8), jax.random.key(0),
                             autoaugment.CIFAR10_POLICY)
