r"""AMP, adversarial model perturbation (robust_jax/methods/amp.py).

    python -m robust_jax.main --config=configs/amp.py:cifar10_preact_resnet18 --workdir=W

CIFAR variants reproduce the official recipe (papers.md 1.3): SGD lr 0.1, momentum 0.9, Nesterov,
weight decay 1e-4, batch 50, 200 epochs, lr ×0.1 at 100 and 150, gradient clip 50 (outer and inner),
N = 1, per-tensor ball, batch-norm statistics updated by every pass; PreActResNet-18: ε = 0.5,
ζ = 1; VGG-16: ε = 0.1, ζ = 0.2. Published test error (papers.md 1.6): PreActResNet-18
C10 3.97 ± 0.09 %, C100 21.51 ± 0.31 %; VGG-16 C10 5.65 ± 0.15 %, C100 25.60 ± 0.17 %.
Variant fashion_mnist (offline, our choice): the default CNN with ε = 0.1, ζ = 1.
"""
from robust_jax import config_defaults

VARIANTS = ('fashion_mnist', 'cifar10_preact_resnet18', 'cifar10_vgg16',
            'cifar100_preact_resnet18', 'cifar100_vgg16')
# (ε, ζ) per model, from the official README commands.
AMP_SETTINGS = {'preact_resnet18': (0.5, 1.0), 'vgg16': (0.1, 0.2)}


def amp_section(epsilon: float, inner_lr: float, inner_grad_clip: float = 50.0) -> dict:
  return dict(name='amp', epsilon=epsilon, inner_lr=inner_lr, inner_steps=1, ball='per_tensor',
              inner_grad_clip=inner_grad_clip, update_bn_on_inner_passes=True)


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'fashion_mnist')
  if variant == 'fashion_mnist':
    config = config_defaults.default_config()
    config.weight_perturbation = amp_section(0.1, 1.0, inner_grad_clip=0.0)
    return config
  dataset, model = variant.split('_', 1)
  config = config_defaults.cifar_config(dataset, model)
  config.train.batch_size = 50
  config.optimizer.update(weight_decay=1e-4, grad_clip_norm=50.0)
  config.weight_perturbation = amp_section(*AMP_SETTINGS[model])
  return config
