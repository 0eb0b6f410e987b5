"""Losses an attack maximises. Each maps (logits (B, C), labels (B,), clean_logits (B, C)) -> (B,).

* ce     cross-entropy CE(z, y)
* margin Carlini-Wagner margin  max_{j≠y} z_j - z_y
* dlr    difference of logits ratio (Croce & Hein 2020, eq. 4):
         -(z_y - max_{j≠y} z_j) / (z_π1 - z_π3 + 1e-12), π = logits sorted in decreasing order
* kl     KL(softmax(clean) || softmax(z)), the TRADES inner objective (labels unused)

A targeted attack passes the target classes as `labels` and maximises the negated loss ('ce' and
'margin'). DLR has its own targeted form, which needs the true labels y and the targets t
(Croce & Hein 2020, APGD-T; `apgd.apgd_targeted`):

* dlr_targeted  -(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2 + 1e-12)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from robust_jax import losses

__all__ = ['ATTACK_LOSSES', 'ce', 'dlr', 'dlr_targeted', 'get', 'kl', 'margin', 'success']

ATTACK_LOSSES = ('ce', 'margin', 'dlr', 'kl')


def _true_and_best_other(logits, labels):
  true = jnp.take_along_axis(logits, labels[:, None], -1)[:, 0]
  others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
  return true, jnp.max(others, -1)


def margin(logits, labels, clean_logits=None):
  del clean_logits
  true, best_other = _true_and_best_other(logits, labels)
  return best_other - true


def dlr(logits, labels, clean_logits=None):
  del clean_logits
  true, best_other = _true_and_best_other(logits, labels)
  top = jnp.sort(logits, -1)
  return -(true - best_other) / (top[:, -1] - top[:, -3] + 1e-12)


def dlr_targeted(logits, labels, target_labels):
  """(B,): -(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2 + 1e-12); needs C >= 4 classes."""
  pick = lambda classes: jnp.take_along_axis(logits, classes[:, None], -1)[:, 0]
  top = jnp.sort(logits, -1)
  return -(pick(labels) - pick(target_labels)) / (
      top[:, -1] - (top[:, -3] + top[:, -4]) / 2 + 1e-12)


def ce(logits, labels, clean_logits=None):
  del clean_logits
  return losses.cross_entropy(logits, labels)


def kl(logits, labels, clean_logits=None):
  del labels
  return losses.kl_divergence(clean_logits, logits)


def get(name: str, targeted: bool = False):
  """The per-example loss to maximise; negated for targeted attacks ('ce' and 'margin' only).

  Targeted DLR is not the negated DLR at the target: it needs the true labels too, so
  `get('dlr', targeted=True)` is refused (use `apgd.apgd_targeted`).
  """
  fn = {'ce': ce, 'margin': margin, 'dlr': dlr, 'kl': kl}[name]
  if not targeted:
    return fn
  if name == 'dlr':
    raise ValueError("loss='dlr' with targeted=True: targeted DLR needs the true labels as well as "
                     "the targets; use attacks.apgd_targeted (APGD-T)")
  return lambda logits, labels, clean_logits=None: -fn(logits, labels, clean_logits)


def success(logits, labels, targeted: bool = False) -> jax.Array:
  """(B,) bool: misclassified (untargeted) or classified as the target (targeted)."""
  predicted = jnp.argmax(logits, -1)
  return predicted == labels if targeted else predicted != labels
