"""One module per method, each in two layers: pure functions below, a config adapter above.

    module                pure functions (any JAX model, no config)       adapters (config)
    adversarial_training  attack, then your loss (robust_jax.attacks)     pgd_adversary, ...
    amp                   perturbation, project                           amp
    class_similarity      targets, similarity_targets_matrix              class_similarity_targets
    dropattack            gradient                                        dropattack, ...
    embedding_adversary   perturbation (text: embedded sequence)          embedding_fgm, ...
    erm                   robust_jax.losses.soft_cross_entropy            cross_entropy_loss, ...
    lfm                   mask, local_feature_mask, official_code_mask    lfm
    mdl                   loss, terms, orthogonality                      mdl_loss
    trades                loss, adversarial_examples, terms               trades_loss

Importing this package registers every adapter in `robust_jax.objectives`; the pure functions know
nothing of configs or registries. `loss_calls` documents how functions that call a user's loss
several times (AMP, DropAttack) call it: `has_aux` as in `jax.grad`, and an optional `state`.
`modality` is where the adapters' config checks ask whether the dataset is images or text.
"""
from robust_jax.methods import adversarial_training, amp, class_similarity, dropattack
from robust_jax.methods import embedding_adversary, erm, lfm, loss_calls, mdl, modality, trades

__all__ = ['adversarial_training', 'amp', 'class_similarity', 'dropattack', 'embedding_adversary',
           'erm', 'lfm', 'loss_calls', 'mdl', 'modality', 'trades']
