"""AutoAugment's ops at the edges the policy tests do not reach, each against Pillow (#28): the
luminance's rounding, the blend factor's exact split, the shears' image border, autocontrast on
two adjacent values and at its table's last key, equalize with a step of 1."""
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from robust_jax.data import autoaugment
from tests.data.test_augmentation import _pillow


def _same_as_pillow(ours, theirs):
  np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_luminance_rounds_half_up_as_pillow_where_it_decides():
  """(19595 R + 38470 G + 7471 B + 2^15) >> 16: the 247 colours whose weighted sum is 32767
  (mod 2^16) are where adding 2^15 + 1 would round up one too many."""
  r = np.arange(256)
  weighted = r[:, None, None] * 19595 + r[None, :, None] * 38470 + r[None, None, :] * 7471
  colours = np.argwhere(weighted % 65536 == 32767).astype(np.uint8)
  assert len(colours) == 247
  image = colours.reshape(1, -1, 3)
  _same_as_pillow(autoaugment._luminance(jnp.asarray(image)),  # pylint: disable=protected-access
                  Image.fromarray(image).convert('L'))


@pytest.mark.parametrize('factor,values', [(1.2828282117843628, (99, 198)), (1.6206895, (87,))])
def test_a_blend_rounds_factor_times_delta_once_as_pillow(factor, values):
  """Factors whose product with the pixel lies within an ulp of an integer: a split of the
  factor into two parts that are not both exact in the product rounds twice and lands one above
  Pillow (found by a search over 2 · 10^8 products)."""
  image = np.asarray(values, np.uint8)[None, :, None].repeat(3, -1)
  factor = float(np.float32(factor))
  _same_as_pillow(autoaugment.brightness(jnp.asarray(image), jnp.float32(factor)),
                  ImageEnhance.Brightness(Image.fromarray(image)).enhance(factor))


@pytest.mark.parametrize('op,shear', [('shearX', 1.0), ('shearX', -1.0), ('shearY', 1.0),
                                      ('shearY', -1.0)])
@pytest.mark.parametrize('level', [0, 255])
def test_shears_keep_a_source_point_at_0_and_fill_one_at_the_far_edge(op, shear, level):
  """With shear ±1 whole diagonals of source points fall exactly on the border: a point at 0 is
  inside, one at W (or H) outside (FILL), as Pillow's `xin < 0 || xin >= xsize`. The image is
  constant 0 or 255, so inside pixels keep that value exactly (0 stays 0, not clipped up)."""
  image = np.full((8, 8, 3), level, np.uint8)
  ours = np.asarray(autoaugment.OPS[op](jnp.asarray(image), jnp.float32(shear)))
  _same_as_pillow(ours, _pillow(op, Image.fromarray(image), shear))
  y, x = np.mgrid[0:8, 0:8]
  along, across = (x, y) if op == 'shearX' else (y, x)
  source = along + shear * across + (1 if shear > 0 else 0)  # in pixel-edge units: integers
  np.testing.assert_array_equal(ours[..., 0], np.where((source >= 0) & (source < 8), level,
                                                        autoaugment.FILL))
  assert (source == 0).any() or (source == 8).any()


def test_autocontrast_of_two_adjacent_values_stretches_them_to_0_and_255():
  image = np.zeros((4, 4, 3), np.uint8)
  image[..., 0], image[..., 1], image[..., 2] = 100, 7, 254
  image[:2, :, 0], image[:2, :, 1], image[:2, :, 2] = 101, 8, 255
  ours = autoaugment.autocontrast(jnp.asarray(image), 0.0)
  _same_as_pillow(ours, ImageOps.autocontrast(Image.fromarray(image)))
  assert set(np.unique(ours)) == {0, 255}


def test_autocontrast_at_the_last_key_of_its_rounding_table():
  """The table's largest key (lo, hi, v) is rounded down by Pillow too: a lookup that could not
  reach the table's last entry would miss it."""
  table = autoaugment._autocontrast_rounded_down()  # pylint: disable=protected-access
  lo_hi, v = divmod(int(table[-1]), 256)
  lo, hi = divmod(lo_hi, 256)
  channel = np.asarray([lo, hi, v, v], np.uint8).reshape(2, 2)
  image = np.stack([channel] * 3, -1)
  _same_as_pillow(autoaugment.autocontrast(jnp.asarray(image), 0.0),
                  ImageOps.autocontrast(Image.fromarray(image)))


def test_equalize_with_a_step_of_one():
  """16 × 16 = 256 pixels, the top value once: step = (256 - 1) // 255 = 1, the smallest step
  that equalizes."""
  rng = np.random.default_rng(3)
  image = rng.permutation(np.repeat(np.arange(128), 2)).reshape(16, 16).astype(np.uint8)
  image[0, 0], image[0, 1] = 200, 0  # 200 once: the top value
  image = np.stack([image] * 3, -1)
  ours = autoaugment.equalize(jnp.asarray(image), 0.0)
  _same_as_pillow(ours, ImageOps.equalize(Image.fromarray(image)))
  assert not np.array_equal(np.asarray(ours), image)


def test_autocontrast_and_equalize_divide_exactly_where_xla_would_round_below():
  """XLA on the CPU divides by a run-time value as a product with its reciprocal, so an exact
  quotient can come out just below its integer (41 · fl(1/41) = 0.99999994): both maps divide
  in integers. Autocontrast over [0, 41] sends 41 to 255; equalize with step 41 (a numerator of
  41 at value 1) sends 1 to 1."""
  image = np.zeros((4, 4, 3), np.uint8)
  image[0, 0], image[0, 1] = 41, 20
  _same_as_pillow(autoaugment.autocontrast(jnp.asarray(image), 0.0),
                  ImageOps.autocontrast(Image.fromarray(image)))
  values = np.concatenate([np.zeros(21), np.ones(10434), [2]]).astype(np.uint8)
  image = np.stack([values] * 3, -1)[None]  # step = (10456 - 1) // 255 = 41
  ours = autoaugment.equalize(jnp.asarray(image), 0.0)
  _same_as_pillow(ours, ImageOps.equalize(Image.fromarray(image)))
  assert np.asarray(ours)[0, 21, 0] == 1
