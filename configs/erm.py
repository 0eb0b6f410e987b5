r"""Plain cross-entropy training (ERM), the baseline of every comparison.

    python -m robust_jax.main --config=configs/erm.py:fashion_mnist --workdir=W
    python -m robust_jax.main --config=configs/erm.py:cifar10_preact_resnet18 --workdir=W

Variants: fashion_mnist (the offline default CNN), and the ERM rows of the AMP paper's tables in the
official trainer's recipe (`config_defaults.amp_recipe`: batch 50, weight decay 1e-4, gradient
clipping 50): {svhn,cifar10,cifar100}_{preact_resnet18,vgg16} and
{svhn,cifar10,cifar100}_wrn28_10_{vanilla,cutout,autoaugment}. Published test error (papers.md
1.6), e.g. PreActResNet-18 C10 5.02 ± 0.21 %, C100 24.31 ± 0.30 %, SVHN 2.95 ± 0.06 %; every row
is in README.md beside its command.
"""
from robust_jax.config import defaults as config_defaults

VARIANTS = ('fashion_mnist',) + config_defaults.AMP_TABLE_VARIANTS


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'fashion_mnist')
  if variant == 'fashion_mnist':
    return config_defaults.default_config()
  return config_defaults.amp_recipe(*config_defaults.amp_table_variant(variant))
