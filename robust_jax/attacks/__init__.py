"""Adversarial attacks as pure functions of (logits_fn, images, labels, key); no Flax needed.

    x_adv = attacks.pgd(logits_fn, images, labels, key, epsilon=8/255, step_size=2/255, num_steps=10)
    x_adv, broken_by = attacks.autoattack(logits_fn, images, labels, key, epsilon=8/255)

Images are in [0, 1]; every result lies in the ε-ball and in [0, 1] and leaves through
`stop_gradient`. Loops are `jax.lax.fori_loop`, so compile time does not grow with the step count.
`autoattack` runs APGD-CE, APGD-T, FAB-T and Square in sequence, outside `jit` (module docstring).
"""
from robust_jax.attacks.apgd import APGD_LOSSES, APGD_STARTS, apgd, apgd_targeted
from robust_jax.attacks.attack_losses import ATTACK_LOSSES
from robust_jax.attacks.autoattack import (AUTOATTACK_VERSIONS, AutoAttackSettings, autoattack,
                                           autoattack_names, autoattack_sequence)
from robust_jax.attacks.fab import fab
from robust_jax.attacks.pgd import LogitsFn, fgsm, pgd
from robust_jax.attacks.square import square
from robust_jax.attacks.threat_model import NORMS, distance

__all__ = ['APGD_LOSSES', 'APGD_STARTS', 'ATTACK_LOSSES', 'AUTOATTACK_VERSIONS',
           'AutoAttackSettings', 'LogitsFn', 'NORMS', 'apgd', 'apgd_targeted', 'autoattack',
           'autoattack_names', 'autoattack_sequence', 'distance', 'fab', 'fgsm', 'pgd', 'square']
