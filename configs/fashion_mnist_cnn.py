r"""The offline default: a small CNN on the real Fashion-MNIST (IDX files from Debian's package).

    python -m robust_jax.main --config=configs/fashion_mnist_cnn.py --workdir=/tmp/fmnist_cnn

Expected: >= 90% test accuracy on the 10,000 test images after 3 epochs (~2.5 min on 2 CPU cores).
`:quick` (the modifier every config takes, `robust_jax.config.files.MODIFIERS`) trains one epoch
(about 88-89%).
"""
from robust_jax.config import defaults as config_defaults

VARIANTS = ('full',)


def get_config(arg=None):
  config_defaults.parse_variant(arg, VARIANTS, 'full')
  return config_defaults.default_config()
