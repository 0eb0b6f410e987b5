r"""Adversarial training of the small CNN on MNIST, L∞ ε = 0.3 (the usual MNIST setting).

    python -m robust_jax.main --config=configs/mnist_adversarial.py:pgd --workdir=W
    python -m robust_jax.evaluate --workdir=W

Data from TFDS (`tfds build mnist --file_format=array_record` on a host with internet), or from a
folder of the IDX files: --config.dataset.source=idx --config.dataset.path=DIR.
Variants: `pgd` (PGD-AT as Madry et al.: 40 steps of 0.01 from a random start), `fgsm` (FGSM-AT
with random start, step 1.25 ε), `trades` (β = 6, 40 KL steps of 0.01). The papers' LeNet-like
CNN (5×5 convs, 1024 hidden units), Adam 1e-3, 10 epochs.
"""
from robust_jax.config import defaults as config_defaults

EPSILON = 0.3
VARIANTS = ('pgd', 'fgsm', 'trades')


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'pgd')
  config = config_defaults.default_config()
  config.dataset.update(name='mnist', source='tfds', path='')
  config.model = config_defaults.cnn_model()
  config.train.num_epochs = 10
  # The registered sections (L∞, random start, eval mode, TRADES β = 6) with MNIST's ε and steps.
  if variant == 'pgd':
    config.adversary = config_defaults.registered('adversary', 'pgd', epsilon=EPSILON,
                                                  step_size=0.01, num_steps=40)
  elif variant == 'fgsm':
    config.adversary = config_defaults.registered('adversary', 'fgsm', epsilon=EPSILON,
                                                  step_size=1.25 * EPSILON)
  else:
    config.loss = config_defaults.registered('loss', 'trades', epsilon=EPSILON, step_size=0.01,
                                             num_steps=40)
  config.robustness.update(epsilons=('0', '0.1', '0.2', '0.3'), pgd_steps=40,
                           pgd_relative_step_size=0.1, large_epsilon='0.6')
  return config
