r"""Adversarial training of the small CNN on Fashion-MNIST (offline), L∞ ε = 0.1.

    python -m robust_jax.main --config=configs/fashion_mnist_adversarial.py:pgd --workdir=W
    python -m robust_jax.evaluate --workdir=W

Variants: `pgd` (PGD-AT, 10 steps of 0.025 from a random start), `fgsm` (FGSM-AT with random start,
step 1.25 ε), `trades` (β = 6, 10 KL steps). Attacks run with the model in eval mode.
`pgd_selection`: PGD-AT for 10 epochs with 5,000 training examples held out for validation, robust
accuracy (PGD-20 at ε = 0.1) on 1,000 validation and 1,000 test examples every epoch, and the best
checkpoint by robust validation accuracy kept in W/best (experiments/results/robust_selection/).
Expected (PGD-AT, 3 epochs, 2 CPU cores, ~25 min): see the table in README.md.
"""
from robust_jax.config import defaults as config_defaults

VARIANTS = ('pgd', 'fgsm', 'trades', 'pgd_selection')


def get_config(arg=None):
  arg = config_defaults.parse_variant(arg, VARIANTS, 'pgd')
  config = config_defaults.default_config()
  # This recipe is the registered defaults of each method (robust_jax/methods/), so that
  # `--config.adversary.name=pgd` on any config gives it.
  if arg == 'trades':
    config.loss = config_defaults.registered('loss', 'trades')
  else:
    config.adversary = config_defaults.registered('adversary', arg.removesuffix('_selection'))
  config.robustness.epsilons = ('0', '0.05', '0.1', '0.2')
  if arg == 'pgd_selection':
    config.train.update(num_epochs=10, select_by='robust')
    config.dataset.validation_examples = 5000
    config.eval.robust_examples = 1000
    config.robustness.epsilons = ('0', '0.1')  # the check during training attacks at the largest
  return config
