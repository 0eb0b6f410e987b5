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


def lfm_section(site: str, mode: str = 'paper') -> dict:
  return dict(name='lfm', sites=(site,), probability=0.15, channel_fraction=0.5,
              area_range=(0.02, 0.4), aspect_range=(0.3, 1 / 0.3), fill='uniform', mode=mode,
              official_code_samples=8)


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'fashion_mnist')
  if variant.startswith('fashion_mnist'):
    config = config_defaults.default_config()
    mode = 'official_code' if variant.endswith('official_code') else 'paper'
    config.feature_mask = lfm_section('conv1', mode)
    if variant.endswith('_amp'):
      config.weight_perturbation = dict(name='amp', epsilon=0.1, inner_lr=1.0, inner_steps=1,
                                        ball='per_tensor', inner_grad_clip=0.0,
                                        update_bn_on_inner_passes=True)
    return config
  config = config_defaults.cifar_config(variant, 'preact_resnet18')
  config.feature_mask = lfm_section('stem')
  return config
