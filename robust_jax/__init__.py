"""robust_jax: pure-functional losses, masks and attacks, and one compiled data-parallel trainer.

Use it from your own JAX code, with any model (a function of a parameter pytree, Flax or not):

    import robust_jax as rj

    x_adv = rj.attacks.pgd(logits_fn, images, labels, key, epsilon=0.1, step_size=0.025,
                           num_steps=10)                                      # PGD, FGSM, APGD
    loss = rj.trades.loss(apply_fn, params, images, labels, key, beta=6.0, epsilon=0.1,
                          step_size=0.025, num_steps=10)                      # TRADES
    delta = rj.amp.perturbation(loss_fn, params, epsilon=0.5, inner_lr=1.0,
                                inner_steps=1).delta                          # AMP's Δ
    loss = rj.mdl.loss(logits_k, labels, weight=1.0)                          # MDL, (K, B, C)
    result = rj.dropattack.gradient(loss_fn, params, images, key, ...)       # DropAttack
    features = rj.lfm.mask(features, key, probability=0.15, channel_fraction=0.5)   # LFM
    targets = rj.class_similarity.targets(labels, similarity, alpha=0.1)      # soft targets
    per_example = rj.losses.soft_cross_entropy(logits, targets)               # (B,)

Every method module (`rj.methods`) has two layers: pure functions with explicit keyword arguments
(no configs, no registries, no model class), and above them the config adapters that the trainer
builds from a config file (`robust_jax.objectives`, `robust_jax.training.loop.train_and_evaluate`,
`python3 -m robust_jax.main`). Importing robust_jax does not import TensorFlow.
"""
from robust_jax import attacks, data, losses, methods, models, objectives
from robust_jax.methods import (adversarial_training, amp, class_similarity, dropattack, erm, lfm,
                                mdl, trades)

__version__ = '0.1.0'

__all__ = ['adversarial_training', 'amp', 'attacks', 'class_similarity', 'data', 'dropattack',
           'erm', 'lfm', 'losses', 'mdl', 'methods', 'models', 'objectives', 'trades']
