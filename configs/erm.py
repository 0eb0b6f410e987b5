r"""Plain cross-entropy training (ERM), the baseline of every comparison.

    python -m robust_jax.main --config=configs/erm.py:fashion_mnist --workdir=W
    python -m robust_jax.main --config=configs/erm.py:cifar10_preact_resnet18 --workdir=W

Variants: fashion_mnist (the offline default CNN), {cifar10,cifar100}_{preact_resnet18,vgg16}
(the AMP paper's ERM rows: batch 50, weight decay 1e-4, papers.md 1.3; targets: PreActResNet-18
5.02 % / 24.31 % test error, VGG-16 6.32 % / 27.84 %).
"""
from robust_jax import config_defaults

VARIANTS = ('fashion_mnist', 'cifar10_preact_resnet18', 'cifar10_vgg16',
            'cifar100_preact_resnet18', 'cifar100_vgg16')


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'fashion_mnist')
  if variant == 'fashion_mnist':
    return config_defaults.default_config()
  dataset, model = variant.split('_', 1)
  config = config_defaults.cifar_config(dataset, model)
  config.train.batch_size = 50  # the AMP paper's recipe for its ERM baseline
  config.optimizer.weight_decay = 1e-4
  return config
