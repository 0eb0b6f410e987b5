r"""Adversarial training of PreActResNet-18 on CIFAR-10/100: L∞ ε = 8/255, step 2/255, 10 steps.

    python -m robust_jax.main --config=configs/cifar_adversarial.py:cifar10_pgd --workdir=W
    python -m robust_jax.evaluate --workdir=W

Variants {cifar10,cifar100}_{pgd,fgsm,trades}: PGD-AT (Madry et al.), FGSM-AT with random start and
step 1.25 ε (Wong et al. 2020), TRADES β = 6. Standard recipe (SGD 0.1, weight decay 5e-4, 200
epochs, ×0.1 at 100 and 150). PGD-AT and FGSM-AT craft their examples with batch norm in training
mode (batch statistics, not updated), as most PyTorch AT code does; TRADES crafts them in eval mode
(running statistics), as the TRADES reference code does.
"""
from robust_jax.config import defaults as config_defaults

VARIANTS = tuple(f'{d}_{m}' for d in ('cifar10', 'cifar100') for m in ('pgd', 'fgsm', 'trades'))
EPSILON, STEP = 8 / 255, 2 / 255


def get_config(arg=None):
  dataset, method = config_defaults.parse_variant(arg, VARIANTS, 'cifar10_pgd').split('_')
  config = config_defaults.cifar_config(dataset, 'preact_resnet18')
  common = dict(epsilon=EPSILON, norm='linf', model_mode='train')
  if method == 'pgd':
    config.adversary = dict(name='pgd', step_size=STEP, num_steps=10, random_start=True, **common)
  elif method == 'fgsm':
    config.adversary = dict(name='fgsm', step_size=1.25 * EPSILON, random_start=True, **common)
  else:
    config.loss = dict(name='trades', beta=6.0, step_size=STEP, num_steps=10,
                       **dict(common, model_mode='eval'))
  return config
