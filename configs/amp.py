r"""AMP, adversarial model perturbation (robust_jax/methods/amp.py).

    python -m robust_jax.main --config=configs/amp.py:cifar10_preact_resnet18 --workdir=W

Variants other than fashion_mnist are the AMP rows of the paper's tables, in the official trainer's
recipe (`config_defaults.amp_recipe`, papers.md 1.3: SGD 0.1, momentum 0.9, Nesterov, weight decay
1e-4, batch 50, 200 epochs, ×0.1 at 100 and 150, gradient clip 50 outer and inner), N = 1,
per-tensor ball, batch-norm statistics updated by every pass, and (ε, ζ) from the official README
commands: PreActResNet-18 (0.5, 1), VGG-16 (0.1, 0.2), WRN-28-10 vanilla (0.5, 1), Cutout (0.3, 0.5),
AutoAugment (0.1, 0.1). {svhn,cifar10,cifar100}_{preact_resnet18,vgg16},
{svhn,cifar10,cifar100}_wrn28_10_{vanilla,cutout,autoaugment}. Published test error (papers.md 1.6),
e.g. PreActResNet-18 C10 3.97 ± 0.09 %, C100 21.51 ± 0.31 %; every row is in README.md.
Variant fashion_mnist (offline, our choice): the default CNN with ε = 0.1, ζ = 1.
"""
from robust_jax.config import defaults as config_defaults

VARIANTS = ('fashion_mnist',) + config_defaults.AMP_TABLE_VARIANTS
# (ε, ζ) per model and augmentation, from the official README commands.
AMP_SETTINGS = {('preact_resnet18', 'standard'): (0.5, 1.0), ('vgg16', 'standard'): (0.1, 0.2),
                ('wrn28_10', 'vanilla'): (0.5, 1.0), ('wrn28_10', 'cutout'): (0.3, 0.5),
                ('wrn28_10', 'autoaugment'): (0.1, 0.1)}


# Published test error (%), mean ± std over the authors' runs (papers.md 1.6, from the authors'
# poster and slides; the number of runs is not stated): variant -> {'erm': ..., 'amp': ...}.
PUBLISHED_TEST_ERROR = {
    'svhn_preact_resnet18': {'erm': (2.95, 0.063), 'amp': (2.30, 0.025)},
    'svhn_vgg16': {'erm': (3.14, 0.060), 'amp': (2.73, 0.015)},
    'cifar10_preact_resnet18': {'erm': (5.02, 0.212), 'amp': (3.97, 0.091)},
    'cifar10_vgg16': {'erm': (6.32, 0.193), 'amp': (5.65, 0.147)},
    'cifar100_preact_resnet18': {'erm': (24.31, 0.303), 'amp': (21.51, 0.308)},
    'cifar100_vgg16': {'erm': (27.84, 0.297), 'amp': (25.60, 0.168)},
    'svhn_wrn28_10_vanilla': {'erm': (2.57, 0.067), 'amp': (2.19, 0.036)},
    'svhn_wrn28_10_cutout': {'erm': (2.27, 0.085), 'amp': (1.83, 0.018)},
    'svhn_wrn28_10_autoaugment': {'erm': (1.91, 0.059), 'amp': (1.61, 0.024)},
    'cifar10_wrn28_10_vanilla': {'erm': (3.87, 0.167), 'amp': (3.00, 0.059)},
    'cifar10_wrn28_10_cutout': {'erm': (3.38, 0.081), 'amp': (2.67, 0.043)},
    'cifar10_wrn28_10_autoaugment': {'erm': (2.78, 0.134), 'amp': (2.32, 0.097)},
    'cifar100_wrn28_10_vanilla': {'erm': (19.17, 0.270), 'amp': (17.33, 0.110)},
    'cifar100_wrn28_10_cutout': {'erm': (18.12, 0.114), 'amp': (16.04, 0.071)},
    'cifar100_wrn28_10_autoaugment': {'erm': (17.79, 0.185), 'amp': (14.95, 0.088)},
}


def amp_section(epsilon: float, inner_lr: float) -> dict:
  """The registered AMP section with the table row's (ε, ζ) and the official trainer's inner
  gradient clipping at 50."""
  return config_defaults.registered('weight_perturbation', 'amp', epsilon=epsilon,
                                    inner_lr=inner_lr, inner_grad_clip=50.0)


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'fashion_mnist')
  if variant == 'fashion_mnist':
    config = config_defaults.default_config()
    config.weight_perturbation = config_defaults.registered('weight_perturbation', 'amp')
    return config
  dataset, model, augmentation = config_defaults.amp_table_variant(variant)
  config = config_defaults.amp_recipe(dataset, model, augmentation)
  config.weight_perturbation = amp_section(*AMP_SETTINGS[model, augmentation])
  return config
