"""AutoAugment's tables as the AMP reference code has them (hiyouga/AMP-Regularizer
`data_utils.py`): each op's magnitude per level, and the CIFAR10 and SVHN policies of 25
sub-policies each, and the argument each step passes to its op. `autoaugment` runs them.

The level l in 0..9 picks the op's magnitude m = `MAGNITUDES[op][l]`; the op is then called with
the argument Pillow got there:

  shearX/Y       shear s·m                    affine x' = x + s·m·y (resp. y' = y + s·m·x), bicubic
  translateX/Y   s·m·W (resp. s·m·H) pixels   affine, nearest
  rotate         m degrees, never negated     counter-clockwise about the centre, nearest
  color, contrast, sharpness, brightness      factor 1 + s·m: blend(degenerate, image, factor)
  posterize      m bits kept                  solarize: invert values >= m
  autocontrast, equalize, invert              no magnitude

where s = ±1 with probability 1/2 each (rotate, posterize and solarize are never negated: a quirk of
the reference, kept). Out-of-image pixels of the geometric ops take the reference's fill colour 128.
"""
from __future__ import annotations

import numpy as np

__all__ = ['CIFAR10_POLICY', 'MAGNITUDES', 'POLICIES', 'SVHN_POLICY', 'op_argument']

# Magnitude of each level 0..9, as the reference's `SubPolicy.ranges`.
MAGNITUDES: dict[str, np.ndarray] = {
    'shearX': np.linspace(0, 0.3, 10),
    'shearY': np.linspace(0, 0.3, 10),
    'translateX': np.linspace(0, 150 / 331, 10),
    'translateY': np.linspace(0, 150 / 331, 10),
    'rotate': np.linspace(0, 30, 10),
    'color': np.linspace(0.0, 0.9, 10),
    'posterize': np.round(np.linspace(8, 4, 10), 0).astype(int),
    'solarize': np.linspace(256, 0, 10),
    'contrast': np.linspace(0.0, 0.9, 10),
    'sharpness': np.linspace(0.0, 0.9, 10),
    'brightness': np.linspace(0.0, 0.9, 10),
    'autocontrast': np.zeros(10),
    'equalize': np.zeros(10),
    'invert': np.zeros(10),
}

# (p1, op1, level1, p2, op2, level2), the reference's `CIFAR10Policy` and `SVHNPolicy` in order.
CIFAR10_POLICY = (
    (0.1, 'invert', 7, 0.2, 'contrast', 6),
    (0.7, 'rotate', 2, 0.3, 'translateX', 9),
    (0.8, 'sharpness', 1, 0.9, 'sharpness', 3),
    (0.5, 'shearY', 8, 0.7, 'translateY', 9),
    (0.5, 'autocontrast', 8, 0.9, 'equalize', 2),
    (0.2, 'shearY', 7, 0.3, 'posterize', 7),
    (0.4, 'color', 3, 0.6, 'brightness', 7),
    (0.3, 'sharpness', 9, 0.7, 'brightness', 9),
    (0.6, 'equalize', 5, 0.5, 'equalize', 1),
    (0.6, 'contrast', 7, 0.6, 'sharpness', 5),
    (0.7, 'color', 7, 0.5, 'translateX', 8),
    (0.3, 'equalize', 7, 0.4, 'autocontrast', 8),
    (0.4, 'translateY', 3, 0.2, 'sharpness', 6),
    (0.9, 'brightness', 6, 0.2, 'color', 8),
    (0.5, 'solarize', 2, 0.0, 'invert', 3),
    (0.2, 'equalize', 0, 0.6, 'autocontrast', 0),
    (0.2, 'equalize', 8, 0.6, 'equalize', 4),
    (0.9, 'color', 9, 0.6, 'equalize', 6),
    (0.8, 'autocontrast', 4, 0.2, 'solarize', 8),
    (0.1, 'brightness', 3, 0.7, 'color', 0),
    (0.4, 'solarize', 5, 0.9, 'autocontrast', 3),
    (0.9, 'translateY', 9, 0.7, 'translateY', 9),
    (0.9, 'autocontrast', 2, 0.8, 'solarize', 3),
    (0.8, 'equalize', 8, 0.1, 'invert', 3),
    (0.7, 'translateY', 9, 0.9, 'autocontrast', 1),
)
SVHN_POLICY = (
    (0.9, 'shearX', 4, 0.2, 'invert', 3),
    (0.9, 'shearY', 8, 0.7, 'invert', 5),
    (0.6, 'equalize', 5, 0.6, 'solarize', 6),
    (0.9, 'invert', 3, 0.6, 'equalize', 3),
    (0.6, 'equalize', 1, 0.9, 'rotate', 3),
    (0.9, 'shearX', 4, 0.8, 'autocontrast', 3),
    (0.9, 'shearY', 8, 0.4, 'invert', 5),
    (0.9, 'shearY', 5, 0.2, 'solarize', 6),
    (0.9, 'invert', 6, 0.8, 'autocontrast', 1),
    (0.6, 'equalize', 3, 0.9, 'rotate', 3),
    (0.9, 'shearX', 4, 0.3, 'solarize', 3),
    (0.8, 'shearY', 8, 0.7, 'invert', 4),
    (0.9, 'equalize', 5, 0.6, 'translateY', 6),
    (0.9, 'invert', 4, 0.6, 'equalize', 7),
    (0.3, 'contrast', 3, 0.8, 'rotate', 4),
    (0.8, 'invert', 5, 0.0, 'translateY', 2),
    (0.7, 'shearY', 6, 0.4, 'solarize', 8),
    (0.6, 'invert', 4, 0.8, 'rotate', 4),
    (0.3, 'shearY', 7, 0.9, 'translateX', 3),
    (0.1, 'shearX', 6, 0.6, 'invert', 5),
    (0.7, 'solarize', 2, 0.6, 'translateY', 7),
    (0.8, 'shearY', 4, 0.8, 'invert', 8),
    (0.7, 'shearX', 9, 0.8, 'translateY', 3),
    (0.8, 'shearY', 5, 0.7, 'autocontrast', 3),
    (0.7, 'shearX', 2, 0.1, 'invert', 5),
)
POLICIES = {'cifar10': CIFAR10_POLICY, 'svhn': SVHN_POLICY}

_UNSIGNED = ('rotate', 'posterize', 'solarize', 'autocontrast', 'equalize', 'invert')
_ENHANCE = ('color', 'contrast', 'sharpness', 'brightness')


def op_argument(op: str, level: int, sign: int, height: int, width: int) -> float:
  """The argument the reference passes to Pillow for `op` at `level` (0..9) and random sign ±1."""
  magnitude = MAGNITUDES[op][level] * (1 if op in _UNSIGNED else sign)
  if op in _ENHANCE:
    return 1 + magnitude
  return magnitude * {'translateX': width, 'translateY': height}.get(op, 1)
