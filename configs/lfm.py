r"""LFM, local feature masking (robust_jax/methods/lfm.py); PROPOSAL settings (papers.md 3.3).

    python -m robust_jax.main --config=configs/lfm.py:fashion_mnist --workdir=W
    python -m robust_jax.main --config=configs/lfm.py:fashion_mnist_amp --workdir=W   # AMP + LFM

The paper's settings: after the first conv, probability 0.15 per example, half the channels
(32 of 64), Random-Erasing boxes (area 2-40 %, aspect 0.3-3.3), filled with one U(0, 1) value.
CIFAR variants mask PreActResNet-18's stem. `official_code` reproduces the released code's
per-batch behaviour (papers.md 3.2). No published classification numbers.
"""
from robust_jax.config import defaults as config_defaults

VARIANTS = ('fashion_mnist', 'fashion_mnist_amp', 'fashion_mnist_official_code', 'cifar10',
            'cifar100')


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'fashion_mnist')
  if variant.startswith('fashion_mnist'):
    config = config_defaults.default_config()
    # The registered LFM section is the paper's settings after the CNN's first conv, 'conv1'.
    config.feature_mask = config_defaults.registered('feature_mask', 'lfm')
    if variant.endswith('official_code'):
      config.feature_mask.mode = 'official_code'
    if variant.endswith('_amp'):  # as configs/amp.py:fashion_mnist
      config.weight_perturbation = config_defaults.registered('weight_perturbation', 'amp')
    return config
  config = config_defaults.cifar_config(variant, 'preact_resnet18')
  config.feature_mask = config_defaults.registered('feature_mask', 'lfm', sites=('stem',))
  return config
