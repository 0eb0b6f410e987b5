r"""DropAttack, masked input and weight perturbations (robust_jax/methods/dropattack.py).

    python -m robust_jax.main --config=configs/dropattack.py:fashion_mnist --workdir=W

The official settings are for NLP (ε = 5 on GloVe embeddings, p = 0.5, K = 1 or 3, Adam 1e-3);
papers.md 2.4 found no image settings, so these are PROPOSALs: K = 1, p = 0.5, input step
ε_x = 1.0 along the per-image unit gradient direction and first-conv-kernel step ε_W = 5 % of the
kernel's norm. The mask then keeps a fraction p of each step's coordinates, so the perturbations
actually applied are smaller: about sqrt(p) ε (≈ 0.71 per image, ≈ 3.5 % of the kernel norm) when the
gradient's mass is spread evenly.
CIFAR variants use PreActResNet-18 with the standard recipe. No published image numbers.
"""
from robust_jax.config import defaults as config_defaults

VARIANTS = ('fashion_mnist', 'cifar10', 'cifar100')


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'fashion_mnist')
  if variant == 'fashion_mnist':
    config = config_defaults.default_config()
  else:
    config = config_defaults.cifar_config(variant, 'preact_resnet18')
  config.weight_perturbation = config_defaults.registered('weight_perturbation', 'dropattack')
  return config
