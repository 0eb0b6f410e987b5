"""AutoAugment's tables, whole, against the AMP reference code (hiyouga/AMP-Regularizer
`data_utils.py`: `SubPolicy.ranges`, `CIFAR10Policy`, `SVHNPolicy`), transcribed here from it
row by row in its own order and layout: p1 op1 level1 p2 op2 level2."""
import numpy as np

from robust_jax.data import autoaugment_policies

CIFAR10_ROWS = """
0.1 invert 7 0.2 contrast 6 | 0.7 rotate 2 0.3 translateX 9 | 0.8 sharpness 1 0.9 sharpness 3
0.5 shearY 8 0.7 translateY 9 | 0.5 autocontrast 8 0.9 equalize 2
0.2 shearY 7 0.3 posterize 7 | 0.4 color 3 0.6 brightness 7 | 0.3 sharpness 9 0.7 brightness 9
0.6 equalize 5 0.5 equalize 1 | 0.6 contrast 7 0.6 sharpness 5
0.7 color 7 0.5 translateX 8 | 0.3 equalize 7 0.4 autocontrast 8 | 0.4 translateY 3 0.2 sharpness 6
0.9 brightness 6 0.2 color 8 | 0.5 solarize 2 0.0 invert 3
0.2 equalize 0 0.6 autocontrast 0 | 0.2 equalize 8 0.6 equalize 4 | 0.9 color 9 0.6 equalize 6
0.8 autocontrast 4 0.2 solarize 8 | 0.1 brightness 3 0.7 color 0
0.4 solarize 5 0.9 autocontrast 3 | 0.9 translateY 9 0.7 translateY 9
0.9 autocontrast 2 0.8 solarize 3 | 0.8 equalize 8 0.1 invert 3 | 0.7 translateY 9 0.9 autocontrast 1
"""
SVHN_ROWS = """
0.9 shearX 4 0.2 invert 3 | 0.9 shearY 8 0.7 invert 5 | 0.6 equalize 5 0.6 solarize 6
0.9 invert 3 0.6 equalize 3 | 0.6 equalize 1 0.9 rotate 3
0.9 shearX 4 0.8 autocontrast 3 | 0.9 shearY 8 0.4 invert 5 | 0.9 shearY 5 0.2 solarize 6
0.9 invert 6 0.8 autocontrast 1 | 0.6 equalize 3 0.9 rotate 3
0.9 shearX 4 0.3 solarize 3 | 0.8 shearY 8 0.7 invert 4 | 0.9 equalize 5 0.6 translateY 6
0.9 invert 4 0.6 equalize 7 | 0.3 contrast 3 0.8 rotate 4
0.8 invert 5 0.0 translateY 2 | 0.7 shearY 6 0.4 solarize 8 | 0.6 invert 4 0.8 rotate 4
0.3 shearY 7 0.9 translateX 3 | 0.1 shearX 6 0.6 invert 5
0.7 solarize 2 0.6 translateY 7 | 0.8 shearY 4 0.8 invert 8 | 0.7 shearX 9 0.8 translateY 3
0.8 shearY 5 0.7 autocontrast 3 | 0.7 shearX 2 0.1 invert 5
"""
# The reference's ranges: np.linspace(first, last, 10) per op.
LINSPACE = {'shearX': (0, 0.3), 'shearY': (0, 0.3), 'translateX': (0, 150 / 331),
            'translateY': (0, 150 / 331), 'rotate': (0, 30), 'color': (0.0, 0.9),
            'solarize': (256, 0), 'contrast': (0.0, 0.9), 'sharpness': (0.0, 0.9),
            'brightness': (0.0, 0.9)}


def _rows(text):
  rows = []
  for entry in text.replace('\n', ' | ').split('|'):
    if entry.strip():
      p1, op1, level1, p2, op2, level2 = entry.split()
      rows.append((float(p1), op1, int(level1), float(p2), op2, int(level2)))
  return tuple(rows)


def test_the_policies_are_the_references_row_by_row():
  assert autoaugment_policies.CIFAR10_POLICY == _rows(CIFAR10_ROWS)
  assert autoaugment_policies.SVHN_POLICY == _rows(SVHN_ROWS)
  assert len(_rows(CIFAR10_ROWS)) == len(_rows(SVHN_ROWS)) == 25
  assert autoaugment_policies.POLICIES == {'cifar10': autoaugment_policies.CIFAR10_POLICY,
                                           'svhn': autoaugment_policies.SVHN_POLICY}


def test_the_magnitudes_are_the_references_ranges():
  magnitudes = autoaugment_policies.MAGNITUDES
  assert set(magnitudes) == set(LINSPACE) | {'posterize', 'autocontrast', 'equalize', 'invert'}
  for op, (first, last) in LINSPACE.items():
    np.testing.assert_array_equal(magnitudes[op], np.linspace(first, last, 10), err_msg=op)
  np.testing.assert_array_equal(magnitudes['posterize'], [8, 8, 7, 7, 6, 6, 5, 5, 4, 4])
  assert magnitudes['posterize'].dtype.kind == 'i'  # Pillow's posterize takes whole bits
  for op in ('autocontrast', 'equalize', 'invert'):
    np.testing.assert_array_equal(magnitudes[op], np.zeros(10), err_msg=op)
