r"""PyTorch twins of robust_jax's models and train steps: the "PyTorch column" of `benchmark.py`.

    model_kwargs, step_kwargs = torch_reference.config_kwargs(config, data.spec_for(config.dataset))
    model = torch_reference.make_model(**model_kwargs)
    step = torch_reference.make_train_step(model=model, **step_kwargs)
    loss = step(images, labels)   # images (B, C, H, W) uint8 or float in [0, 1]; labels (B,) int

An optional extra (`torch`; robust_jax never imports it and this module imports nothing of
robust_jax). What a researcher would write in plain PyTorch for the same model and objective;
`tests/test_torch_reference.py` copies robust_jax weights in (`load_flax_variables`) and checks
logits, losses and parameter updates against robust_jax number for number.

Models (NCHW images in [0, 1], normalised inside with the dataset's mean / std, as robust_jax's):
* 'cnn' = robust_jax's `CNN`: conv(k×k, widths[0], 'same') -> [BN] -> ReLU -> maxpool 2 ->
  conv(k×k, widths[1], 'same') -> [BN] -> ReLU -> maxpool 2 -> flatten -> Linear(hidden) -> ReLU
  -> Linear(classes); conv bias only without BN; only the first two widths are used (robust_jax
  zips them with its two feature sites). Flax's initialisers: lecun_normal kernels (truncated
  normal, variance 1 / fan_in), zero biases. Flattens in PyTorch's (C, H, W) order (Flax: (H, W,
  C); `load_flax_variables` permutes the first Linear's columns).
* 'preact_resnet18' = robust_jax's `PreActResNet18` = the official AMP code's model
  (hiyouga/AMP-Regularizer models/preresnet.py): stem conv3×3 without bias, 4 stages of 2
  pre-activation blocks, BN -> ReLU -> global mean pool -> Linear. Block: out = ReLU(BN(x));
  conv3×3(stride, padding 1, bias) -> BN -> ReLU -> conv3×3(bias); shortcut conv1×1(stride, bias)
  of `out` when the shape changes, else `out` ('preactivated', the official code) or x ('input').
  The official init: conv kernels kaiming_normal fan_out, conv biases PyTorch's default, Linear
  weight PyTorch's default and bias 0, BN 1 / 0. `widths` other than (64, 128, 256, 512) make the
  same network at another width (robust_jax's module field of that name).
BatchNorm2d everywhere is PyTorch's default (momentum 0.1, ε 1e-5), which robust_jax's copies.

Steps (`make_train_step`), each what robust_jax does for that config:
* 'erm': mean cross-entropy, backward, [clip by global norm], optimizer step.
* 'pgd_at' / 'fgsm_at': L∞ PGD-k (FGSM: one step) on the summed cross-entropy, from x or, with
  `random_start`, from clip(x + U(-ε, ε), 0, 1), each step
  x' ← clip(x + clip(x' + α sign(∇) - x, -ε, ε), 0, 1); the attack runs with the model in
  `attack_mode`, 'eval' (running batch-norm statistics) or 'train' (batch statistics, running
  statistics left unchanged); no gradient reaches the weights. Then the 'erm' step on the result.
* 'amp': the official AMP optimizer's algorithm (hiyouga/AMP-Regularizer amp.py): gradient g at
  θ; N times Δ ← Π_ε(Δ + ζ g) per tensor (Π: scale by min(1, ε / (‖Δ‖₂ + 1e-12))) and g ← the
  gradient at θ + Δ; then θ is restored and the optimizer steps with the last g. Every pass runs
  in training mode, so batch-norm statistics are updated by each (robust_jax's
  `update_bn_on_inner_passes=True`). Gradients of the N inner passes are clipped at
  `amp_inner_grad_clip`, the last at `grad_clip_norm` (the official code clips both at 50). The
  loss returned is L(θ + Δ), the one robust_jax logs.
Optimizers: 'sgd' (momentum, Nesterov, coupled weight decay), 'adam' (coupled), 'adamw'
(decoupled): optax's and torch.optim's updates agree. The learning rate is constant (the twin times
steps; robust_jax's schedule is not modelled).
`augmentation` ('none', 'crop', 'crop_flip') runs inside the step on the step's device, on the
batch as given: every example a window of the batch padded by `crop_padding` pixels of `crop_fill`
(uint8 units) at a uniform offset, then a left-right flip with probability 1/2: robust_jax's
distribution, PyTorch's random numbers. Switches, off by default (plain eager): `channels_last`
(model and inputs in NHWC memory), `compile` (`torch.compile` of the model), `autocast_dtype`
('bfloat16' / 'float16': forward passes under `torch.autocast`; parameters, optimizer, losses and
attack projections stay float32).
"""
from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['AUGMENTATIONS', 'METHODS', 'MODELS', 'OPTIMIZERS', 'config_kwargs',
           'load_flax_variables', 'make_model', 'make_train_step']

MODELS = ('cnn', 'preact_resnet18')
METHODS = ('erm', 'fgsm_at', 'pgd_at', 'amp')
OPTIMIZERS = ('sgd', 'adam', 'adamw')
AUGMENTATIONS = ('none', 'crop', 'crop_flip')
ATTACK_MODES = ('eval', 'train')
SHORTCUT_INPUTS = ('preactivated', 'input')
AUTOCAST_DTYPES = ('bfloat16', 'float16')


def _check_choice(name: str, value, choices: Sequence[str]) -> None:
  if value not in choices:
    raise ValueError(f'{name}={value!r}: must be one of {", ".join(map(repr, choices))}')


def _lecun_normal_(weight: torch.Tensor) -> None:
  """Flax's default kernel init: normal truncated at ±2σ, rescaled to variance 1 / fan_in."""
  std = math.sqrt(1.0 / weight[0].numel()) / .87962566103423978
  nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class Normalize(nn.Module):
  """(x - mean) / std per channel of (B, C, H, W) images in [0, 1]."""

  def __init__(self, mean: Sequence[float], std: Sequence[float]):
    super().__init__()
    self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
    self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    return (images - self.mean) / self.std


class CNN(nn.Module):
  """robust_jax's `CNN` (module docstring): (B, C, H, W) -> logits (B, num_classes)."""

  def __init__(self, num_classes: int, in_channels: int, image_size, *, mean, std,
               widths: Sequence[int] = (32, 64), kernel_size: int = 5, hidden_size: int = 1024,
               batch_norm: bool = False):
    super().__init__()
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    self.normalize = Normalize(mean, std)
    layers, channels = [], in_channels
    for features in tuple(widths)[:2]:
      layers.append(nn.Conv2d(channels, features, kernel_size, padding='same',
                              bias=not batch_norm))
      if batch_norm:
        layers.append(nn.BatchNorm2d(features))
      layers += [nn.ReLU(), nn.MaxPool2d(2)]
      channels, height, width = features, height // 2, width // 2
    self.features = nn.Sequential(*layers)
    self.feature_shape = (channels, height, width)
    self.hidden = nn.Linear(channels * height * width, hidden_size)
    self.classifier = nn.Linear(hidden_size, num_classes)
    for module in self.modules():
      if isinstance(module, (nn.Conv2d, nn.Linear)):
        _lecun_normal_(module.weight)
        if module.bias is not None:
          nn.init.zeros_(module.bias)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = self.features(self.normalize(images)).flatten(1)
    return self.classifier(F.relu(self.hidden(x)))


class PreActBlock(nn.Module):
  """Pre-activation basic block: (B, C, H, W) -> (B, width, ⌈H / stride⌉, ⌈W / stride⌉)."""

  def __init__(self, in_channels: int, width: int, stride: int, shortcut_input: str):
    super().__init__()
    _check_choice('shortcut_input', shortcut_input, SHORTCUT_INPUTS)
    self.bn1 = nn.BatchNorm2d(in_channels)
    self.conv1 = nn.Conv2d(in_channels, width, 3, stride, padding=1)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, padding=1)
    changes_shape = stride != 1 or in_channels != width
    self.shortcut = nn.Conv2d(in_channels, width, 1, stride) if changes_shape else None
    self.shortcut_input = shortcut_input

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out = F.relu(self.bn1(x))
    if self.shortcut is not None:
      shortcut = self.shortcut(out)
    else:
      shortcut = out if self.shortcut_input == 'preactivated' else x
    return shortcut + self.conv2(F.relu(self.bn2(self.conv1(out))))


class PreActResNet18(nn.Module):
  """robust_jax's `PreActResNet18` (module docstring): (B, C, H, W) -> logits (B, num_classes)."""

  def __init__(self, num_classes: int, in_channels: int, *, mean, std,
               widths: Sequence[int] = (64, 128, 256, 512), shortcut_input: str = 'preactivated'):
    super().__init__()
    self.normalize = Normalize(mean, std)
    self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
    blocks, channels = [], widths[0]
    for stage, width in enumerate(widths):
      for block in range(2):
        stride = 2 if stage > 0 and block == 0 else 1
        blocks.append(PreActBlock(channels, width, stride, shortcut_input))
        channels = width
    self.blocks = nn.Sequential(*blocks)
    self.bn = nn.BatchNorm2d(channels)
    self.classifier = nn.Linear(channels, num_classes)
    for module in self.modules():
      if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
    nn.init.zeros_(self.classifier.bias)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = self.blocks(self.stem(self.normalize(images)))
    return self.classifier(F.relu(self.bn(x)).mean((2, 3)))


def make_model(name: str, num_classes: int, in_channels: int, image_size, **kw) -> nn.Module:
  """The twin of robust_jax model `name` ('cnn', 'preact_resnet18') on the CPU, in training mode.

  image_size: H (square) or (H, W). kw: `mean`, `std` (per channel, [0, 1] units; required), and
  the model's own options: cnn `widths`, `kernel_size`, `hidden_size`, `batch_norm`;
  preact_resnet18 `widths`, `shortcut_input`.
  """
  _check_choice('name', name, MODELS)
  if name == 'cnn':
    return CNN(num_classes, in_channels, image_size, **kw)
  return PreActResNet18(num_classes, in_channels, **kw)


def _flax_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
  """(robust_jax's variable path, twin layer) for every layer of `model` that holds variables."""
  if isinstance(model, CNN):
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    return ([(f'Conv_{i}', m) for i, m in enumerate(convs)]
            + [(f'BatchNorm_{i}', m) for i, m in enumerate(norms)]
            + [('Dense_0', model.hidden), ('Dense_1', model.classifier)])
  layers = [('Conv_0', model.stem)]
  for i, block in enumerate(model.blocks):
    layers += [(f'PreActBlock_{i}/{name}', getattr(block, name))
               for name in ('bn1', 'conv1', 'bn2', 'conv2', 'shortcut')
               if getattr(block, name) is not None]
  return layers + [('BatchNorm_0', model.bn), ('Dense_0', model.classifier)]


def load_flax_variables(model: nn.Module, params, batch_stats=None) -> None:
  """Copies robust_jax's variables of the same model into the twin `model`, in place.

  params: robust_jax's parameter pytree ({'Conv_0': {'kernel', 'bias'}, ...}, arrays of any kind);
  batch_stats: its `model_state['batch_stats']` (None: running statistics left as they are).
  Conv kernels (kh, kw, in, out) -> (out, in, kh, kw); Dense kernels (in, out) -> (out, in), the
  CNN's first one with its rows reordered from Flax's (H, W, C) flattening to PyTorch's (C, H, W).
  """
  def tensor(path, name, tree=params):
    node = tree
    for key in path.split('/'):
      node = node[key]
    return torch.tensor(np.asarray(node[name]), dtype=torch.float32)

  layers = _flax_layers(model)
  num_params = sum(len(dict(m.named_parameters(recurse=False))) for _, m in layers)
  num_leaves = sum(1 for _ in _leaves(params))
  if num_leaves != num_params:
    raise ValueError(f'params: {num_leaves} arrays; the twin {type(model).__name__} has '
                     f'{num_params} parameters (is it the same model and width?)')
  with torch.no_grad():
    for path, module in layers:
      if isinstance(module, nn.BatchNorm2d):
        module.weight.copy_(tensor(path, 'scale'))
        module.bias.copy_(tensor(path, 'bias'))
        if batch_stats is not None:
          module.running_mean.copy_(tensor(path, 'mean', batch_stats))
          module.running_var.copy_(tensor(path, 'var', batch_stats))
        continue
      kernel = tensor(path, 'kernel')
      if isinstance(module, nn.Conv2d):
        module.weight.copy_(kernel.permute(3, 2, 0, 1))
      elif isinstance(model, CNN) and module is model.hidden:
        channels, height, width = model.feature_shape
        module.weight.copy_(kernel.reshape(height, width, channels, -1).permute(3, 2, 0, 1)
                            .reshape(-1, channels * height * width))
      else:
        module.weight.copy_(kernel.T)
      if module.bias is not None:
        module.bias.copy_(tensor(path, 'bias'))


def _leaves(tree):
  if isinstance(tree, Mapping):
    for value in tree.values():
      yield from _leaves(value)
  else:
    yield tree


def _make_optimizer(name: str, parameters, lr: float, momentum: float, nesterov: bool,
                    weight_decay: float) -> torch.optim.Optimizer:
  _check_choice('optimizer_name', name, OPTIMIZERS)
  if name == 'sgd':
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum,
                           nesterov=nesterov and momentum > 0, weight_decay=weight_decay)
  optimizer = torch.optim.Adam if name == 'adam' else torch.optim.AdamW
  return optimizer(parameters, lr=lr, weight_decay=weight_decay)


def _random_crop(images: torch.Tensor, padding: int, fill: float) -> torch.Tensor:
  """Example b of (B, C, H, W): the H×W window at a uniform offset in {0..2·padding}² of the image
  padded on every side by `padding` pixels of value `fill`."""
  batch, channels, height, width = images.shape
  padded = F.pad(images, (padding,) * 4, value=fill)
  offsets = torch.randint(0, 2 * padding + 1, (2, batch, 1), device=images.device)
  rows = offsets[0] + torch.arange(height, device=images.device)
  columns = offsets[1] + torch.arange(width, device=images.device)
  return padded[torch.arange(batch, device=images.device)[:, None, None, None],
                torch.arange(channels, device=images.device)[None, :, None, None],
                rows[:, None, :, None], columns[:, None, None, :]]


def _random_flip(images: torch.Tensor) -> torch.Tensor:
  """Flips each example of (B, C, H, W) left-right with probability 1/2."""
  flip = torch.rand(images.shape[0], device=images.device) < 0.5
  return torch.where(flip[:, None, None, None], images.flip(3), images)


@contextlib.contextmanager
def _attack_mode(model: nn.Module, mode: str):
  """The model in `mode` for an attack: 'eval', or 'train' with batch statistics that leave the
  running statistics unchanged (`track_running_stats=False` in training mode); training mode
  after."""
  frozen = [] if mode == 'eval' else [m for m in model.modules()
                                      if isinstance(m, nn.BatchNorm2d)]
  if mode == 'eval':
    model.eval()
  for norm in frozen:
    norm.track_running_stats = False
  try:
    yield
  finally:
    for norm in frozen:
      norm.track_running_stats = True
    model.train()


def make_train_step(method: str, model: nn.Module, *, lr: float, momentum: float = 0.9,
                    weight_decay: float = 0.0, optimizer_name: str = 'sgd',
                    nesterov: bool = False, grad_clip_norm: float = 0.0, epsilon: float = 0.1,
                    step_size: float = 0.025, num_steps: int = 10, random_start: bool = True,
                    attack_mode: str = 'eval', amp_epsilon: float = 0.1,
                    amp_inner_lr: float = 1.0, amp_inner_steps: int = 1,
                    amp_inner_grad_clip: float = 0.0, augmentation: str = 'none',
                    crop_padding: int = 4, crop_fill: int = 0, channels_last: bool = False,
                    compile: bool = False, autocast_dtype: str | None = None):  # noqa: A002
  """`step(images, labels) -> loss` training `model` (on its device) with `method` (module
  docstring); the loss is a detached 0-d tensor, not synchronised (call `.item()` to wait).

  images: (B, C, H, W) uint8, or float in [0, 1]; labels: (B,) integer classes. `num_steps` is
  PGD's (FGSM takes one step); `epsilon`, `step_size` in [0, 1] pixel units.
  """
  for name, value, choices in (('method', method, METHODS),
                               ('augmentation', augmentation, AUGMENTATIONS),
                               ('attack_mode', attack_mode, ATTACK_MODES)):
    _check_choice(name, value, choices)
  if autocast_dtype is not None:
    _check_choice('autocast_dtype', autocast_dtype, AUTOCAST_DTYPES)
  device = next(model.parameters()).device
  memory_format = torch.channels_last if channels_last else torch.contiguous_format
  model.to(memory_format=memory_format).train()
  parameters = [p for p in model.parameters() if p.requires_grad]
  optimizer = _make_optimizer(optimizer_name, parameters, lr, momentum, nesterov, weight_decay)
  forward = torch.compile(model) if compile else model
  autocast = (functools.partial(torch.autocast, device.type, getattr(torch, autocast_dtype))
              if autocast_dtype else contextlib.nullcontext)
  attack_steps = num_steps if method == 'pgd_at' else 1

  def logits(x):
    with autocast():
      return forward(x).float()

  def backward(x, y, clip):
    """Mean cross-entropy at the current weights; gradients in `.grad`, clipped at `clip` > 0."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(logits(x), y)
    loss.backward()
    if clip > 0:
      nn.utils.clip_grad_norm_(parameters, clip)
    return loss.detach()

  def attack(x, y):
    with _attack_mode(model, attack_mode):
      x_adv = x
      if random_start:
        x_adv = (x + torch.empty_like(x).uniform_(-epsilon, epsilon)).clamp(0, 1)
      for _ in range(attack_steps):
        x_adv = x_adv.detach().requires_grad_(True)
        gradient, = torch.autograd.grad(F.cross_entropy(logits(x_adv), y, reduction='sum'),
                                        x_adv)
        with torch.no_grad():
          x_adv = (x + (x_adv + step_size * gradient.sign() - x).clamp(-epsilon, epsilon)
                   ).clamp(0, 1)
    return x_adv.detach()

  def amp(x, y):
    theta = [p.detach().clone() for p in parameters]
    deltas = [torch.zeros_like(p) for p in parameters]
    loss = backward(x, y, amp_inner_grad_clip)
    for n in range(amp_inner_steps):
      with torch.no_grad():
        torch._foreach_add_(deltas, [p.grad for p in parameters], alpha=amp_inner_lr)
        norms = torch._foreach_norm(deltas)
        torch._foreach_mul_(deltas, [torch.clamp(amp_epsilon / (norm + 1e-12), max=1.0)
                                     for norm in norms])
        torch._foreach_copy_(parameters, torch._foreach_add(theta, deltas))
      last = n == amp_inner_steps - 1
      loss = backward(x, y, grad_clip_norm if last else amp_inner_grad_clip)
    with torch.no_grad():
      torch._foreach_copy_(parameters, theta)
    return loss

  def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
    is_uint8 = images.dtype == torch.uint8
    if augmentation != 'none':
      images = _random_crop(images, crop_padding, crop_fill if is_uint8 else crop_fill / 255)
    if augmentation == 'crop_flip':
      images = _random_flip(images)
    x = (images.float() / (255.0 if is_uint8 else 1.0)).contiguous(memory_format=memory_format)
    if method in ('pgd_at', 'fgsm_at'):
      x = attack(x, labels)
    loss = amp(x, labels) if method == 'amp' else backward(x, labels, grad_clip_norm)
    optimizer.step()
    return loss

  return step


def _no_twin(key: str, value, expected: str) -> ValueError:
  return ValueError(f'config.{key}={value!r}: no PyTorch twin; {expected}')


def config_kwargs(config, spec) -> tuple[dict, dict]:
  """(`make_model` kwargs, `make_train_step` kwargs) of the PyTorch twin of a robust_jax config.

  config: a robust_jax config (ConfigDict); spec: its dataset's `DatasetSpec` (`image_shape`,
  `num_classes`, `mean`, `std`, `default_augmentation`). Twins exist for models cnn and
  preact_resnet18 without dropout, one-hot cross-entropy, adversary none / pgd / fgsm (L∞) or
  weight perturbation none / amp (per-tensor ball, batch norm updated by every pass), no feature
  mask, crop / flip augmentation only; anything else is a ValueError of one line.
  """
  model, dataset = config.model, config.dataset
  adversary, perturbation = config.adversary, config.weight_perturbation
  checks = [('model.name', model.name, model.name in MODELS,
             f'must be one of {", ".join(map(repr, MODELS))}'),
            ('model.dropout_rate', model.dropout_rate,
             model.dropout_rate == 0 or not model.dropout_sites, 'must be 0.0 (no dropout)'),
            ('targets.name', config.targets.name, config.targets.name == 'one_hot',
             "must be 'one_hot'"),
            ('loss.name', config.loss.name, config.loss.name == 'cross_entropy',
             "must be 'cross_entropy'"),
            ('feature_mask.name', config.feature_mask.name, config.feature_mask.name == 'none',
             "must be 'none'"),
            ('adversary.name', adversary.name, adversary.name in ('none', 'pgd', 'fgsm'),
             "must be 'none', 'pgd' or 'fgsm'"),
            ('weight_perturbation.name', perturbation.name,
             perturbation.name in ('none', 'amp') and not (
                 perturbation.name == 'amp' and adversary.name != 'none'),
             "must be 'none' or 'amp' (AMP without an adversary)"),
            ('dataset.autoaugment', dataset.autoaugment, dataset.autoaugment == 'none',
             "must be 'none'"),
            ('dataset.cutout_length', dataset.cutout_length, dataset.cutout_length == 0,
             'must be 0')]
  if adversary.name != 'none':
    checks.append(('adversary.norm', adversary.norm, adversary.norm == 'linf', "must be 'linf'"))
  if perturbation.name == 'amp':
    checks += [('weight_perturbation.ball', perturbation.ball, perturbation.ball == 'per_tensor',
                "must be 'per_tensor' (the official code's)"),
               ('weight_perturbation.update_bn_on_inner_passes',
                perturbation.update_bn_on_inner_passes, perturbation.update_bn_on_inner_passes,
                'must be True (the official code)')]
  for key, value, ok, expected in checks:
    if not ok:
      raise _no_twin(key, value, expected)
  compute_dtype = config.train.get('compute_dtype', 'float32')
  if compute_dtype not in ('float32', *AUTOCAST_DTYPES):
    raise _no_twin('train.compute_dtype', compute_dtype, 'must be float32, bfloat16 or float16')

  height, width, channels = spec.image_shape
  model_kwargs = dict(name=model.name, num_classes=spec.num_classes, in_channels=channels,
                      image_size=(height, width), mean=tuple(spec.mean), std=tuple(spec.std))
  if model.name == 'cnn':
    model_kwargs.update(widths=tuple(model.widths), kernel_size=model.kernel_size,
                        hidden_size=model.hidden_size, batch_norm=model.batch_norm)
  else:
    model_kwargs.update(shortcut_input=model.shortcut_input)
  optimizer = config.optimizer
  method = {'pgd': 'pgd_at', 'fgsm': 'fgsm_at'}.get(adversary.name, 'erm')
  step_kwargs = dict(method='amp' if perturbation.name == 'amp' else method,
                     lr=optimizer.learning_rate, momentum=optimizer.momentum,
                     nesterov=optimizer.nesterov, weight_decay=optimizer.weight_decay,
                     optimizer_name=optimizer.name, grad_clip_norm=optimizer.grad_clip_norm,
                     augmentation=(spec.default_augmentation if dataset.augmentation == 'default'
                                   else dataset.augmentation),
                     crop_padding=dataset.crop_padding, crop_fill=dataset.crop_fill,
                     autocast_dtype=None if compute_dtype == 'float32' else compute_dtype)
  if adversary.name != 'none':
    step_kwargs.update(epsilon=adversary.epsilon, step_size=adversary.step_size,
                       num_steps=adversary.get('num_steps', 1),
                       random_start=adversary.random_start, attack_mode=adversary.model_mode)
  if perturbation.name == 'amp':
    step_kwargs.update(amp_epsilon=perturbation.epsilon, amp_inner_lr=perturbation.inner_lr,
                       amp_inner_steps=perturbation.inner_steps,
                       amp_inner_grad_clip=perturbation.inner_grad_clip)
  return model_kwargs, step_kwargs
