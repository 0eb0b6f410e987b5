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
  # The registered sections (L∞, random start, 10 steps, TRADES β = 6 and eval mode) with this
  # recipe's ε and step; the adversaries of PGD-AT and FGSM-AT attack in train mode.
  if method == 'pgd':
    config.adversary = config_defaults.registered('adversary', 'pgd', epsilon=EPSILON,
                                                  step_size=STEP, model_mode='train')
  elif method == 'fgsm':
    config.adversary = config_defaults.registered('adversary', 'fgsm', epsilon=EPSILON,
                                                  step_size=1.25 * EPSILON, model_mode='train')
  else:
    config.loss = config_defaults.registered('loss', 'trades', epsilon=EPSILON, step_size=STEP)
  return config
