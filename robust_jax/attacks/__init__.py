"""Adversarial attacks as pure functions of (logits_fn, images, labels, key); no Flax needed.

    x_adv = attacks.pgd(logits_fn, images, labels, key, epsilon=8/255, step_size=2/255, num_steps=10)

Images are in [0, 1]; every result lies in the ε-ball and in [0, 1] and leaves through
`stop_gradient`. Loops are `jax.lax.fori_loop`, so compile time does not grow with the step count.
"""
from robust_jax.attacks.apgd import APGD_LOSSES, apgd
from robust_jax.attacks.attack_losses import ATTACK_LOSSES
from robust_jax.attacks.pgd import LogitsFn, fgsm, pgd
from robust_jax.attacks.threat_model import NORMS, distance

__all__ = ['APGD_LOSSES', 'ATTACK_LOSSES', 'LogitsFn', 'NORMS', 'apgd', 'distance', 'fgsm', 'pgd']
