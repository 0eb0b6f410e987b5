r"""Class-similarity targets (robust_jax/methods/class_similarity.py); PROPOSAL settings (papers.md 5.2).

    python -m robust_jax.main --config=configs/class_similarity.py:fashion_mnist --workdir=W

S̃ for Fashion-MNIST ships in configs/data/fashion_mnist_class_similarity.npy; it was made by
    python -m robust_jax.main --config=configs/erm.py:fashion_mnist --workdir=workdirs/erm
    python experiments/estimate_class_similarity.py --workdir=workdirs/erm
and copied there. For CIFAR, estimate it from an ERM run the same way and pass
--config.targets.matrix_path=ERM_WORKDIR/class_similarity.npy. α = 0.1.
Variant fashion_mnist_dropattack combines the targets with DropAttack.
"""
import os

from robust_jax.config import defaults as config_defaults

VARIANTS = ('fashion_mnist', 'fashion_mnist_dropattack', 'cifar10', 'cifar100')
FASHION_MNIST_MATRIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                                    'fashion_mnist_class_similarity.npy')


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'fashion_mnist')
  if variant.startswith('fashion_mnist'):
    config = config_defaults.default_config()
    matrix = FASHION_MNIST_MATRIX
  else:
    config = config_defaults.cifar_config(variant, 'preact_resnet18')
    matrix = ''  # set --config.targets.matrix_path
  config.targets = config_defaults.registered('targets', 'class_similarity', matrix_path=matrix)
  if variant.endswith('_dropattack'):  # as configs/dropattack.py
    config.weight_perturbation = config_defaults.registered('weight_perturbation', 'dropattack')
  return config
