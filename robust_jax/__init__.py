"""robust_jax: pure-functional losses, masks and attacks, and one compiled data-parallel trainer.

Public entry points:
  robust_jax.attacks        fgsm, pgd, apgd on any `logits_fn(x) -> logits`
  robust_jax.objectives     how a config becomes the loss the train step differentiates
  robust_jax.methods        one module per method (amp, dropattack, mdl, lfm, class_similarity, ...)
  robust_jax.train          train_and_evaluate(config, workdir)
"""
__version__ = '0.1.0'
