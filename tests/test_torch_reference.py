"""The PyTorch twins (tests/oracles/torch_reference.py) are robust_jax's models and objectives.

With robust_jax's weights copied in, the twin gives the same logits and batch-norm statistics, and
one train step gives the same loss, the same new parameters and the same running statistics as
robust_jax's own train step, for ERM (SGD and Adam), PGD-AT and FGSM-AT (random start off; attacks
in eval and train mode) and AMP; channels_last leaves the step unchanged. The shipped configs map to
their twins, the others are one-line errors. Skipped without torch (an optional extra).
"""
import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from tests.oracles import torch_reference  # noqa: E402
from robust_jax import data, objectives, sharding  # noqa: E402
from robust_jax.training import step as train_step  # noqa: E402
from robust_jax.config import overrides as config_overrides
from robust_jax.training import optim
from robust_jax.training import state as train_state  # noqa: E402
from robust_jax.data import pipeline  # noqa: E402
from robust_jax.models import build_model  # noqa: E402
from robust_jax.models.preact_resnet import PreActResNet18  # noqa: E402
from robust_jax.config.files import load_config_file  # noqa: E402
from tests import helpers  # noqa: E402

SPEC = data.SPECS['fashion_mnist']
CIFAR = data.SPECS['cifar10']


def _jittered(tree, seed):
  """`tree` + N(0, 0.1²) noise per leaf, so BN scales, offsets and statistics are not 1 / 0."""
  leaves, treedef = jax.tree.flatten(tree)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(treedef, [np.asarray(x) + 0.1 * rng.standard_normal(np.shape(x))
                                      .astype(np.float32) for x in leaves])


def _twin(model_kwargs, params, model_state):
  model = torch_reference.make_model(**model_kwargs)
  torch_reference.load_flax_variables(model, params, model_state.get('batch_stats'))
  return model


def _nchw(images):
  return torch.from_numpy(np.ascontiguousarray(np.moveaxis(images, -1, 1)))


def _assert_same_model(model, expected):
  """`model`'s parameters and buffers equal those of `expected` (a twin loaded from robust_jax)."""
  actual, wanted = model.state_dict(), expected.state_dict()
  for name, value in wanted.items():
    if value.is_floating_point():
      np.testing.assert_allclose(actual[name].numpy(), value.numpy(), rtol=2e-4, atol=2e-6,
                                 err_msg=name)


def _cnn_config(**model):
  config = load_config_file('configs/fashion_mnist_cnn.py')
  config.model.update(widths=(4, 8), hidden_size=16, **model)
  return config


def _with_stats(model_state, seed):
  """Random running statistics (variances kept positive)."""
  if not model_state:
    return model_state
  jittered = _jittered(model_state, seed)
  return jax.tree.map_with_path(
      lambda path, x: np.abs(x) + 0.5 if path[-1].key == 'var' else x, jittered)


@pytest.mark.parametrize('kernel_size,batch_norm', [(3, False), (4, True), (5, True)])
def test_cnn_twin_gives_robust_jax_logits_and_statistics(kernel_size, batch_norm):
  config = _cnn_config(kernel_size=kernel_size, batch_norm=batch_norm)
  model = build_model(config.model, SPEC)
  params, state = model.init(jax.random.key(0), SPEC.image_shape)
  params, state = _jittered(params, 1), _with_stats(state, 2)
  twin = _twin(torch_reference.config_kwargs(config, SPEC)[0], params, state)
  images = helpers.quadrant_images(4, seed=3)[0].astype(np.float32) / 255
  assert sum(p.numel() for p in twin.parameters()) == sum(
      np.size(x) for x in jax.tree.leaves(params))
  twin.eval()
  expected, _ = model.apply(params, state, images, train=False)
  np.testing.assert_allclose(twin(_nchw(images)).detach().numpy(), expected, atol=1e-4)
  twin.train()
  expected, new_state = model.apply(params, state, images, train=True, key=jax.random.key(0))
  np.testing.assert_allclose(twin(_nchw(images)).detach().numpy(), expected, atol=1e-4)
  _assert_same_model(twin, _twin(torch_reference.config_kwargs(config, SPEC)[0], params,
                                 new_state))


@pytest.mark.parametrize('shortcut_input', ['preactivated', 'input'])
def test_preact_resnet18_twin_at_tiny_width_gives_robust_jax_logits(shortcut_input):
  widths = (4, 8, 8, 8)
  module = PreActResNet18(widths=widths, shortcut_input=shortcut_input, num_classes=10,
                          mean=CIFAR.mean, std=CIFAR.std)
  variables = module.init(jax.random.key(0), np.zeros((1, 32, 32, 3)), train=False)
  params = _jittered(variables['params'], 1)
  state = _with_stats({'batch_stats': variables['batch_stats']}, 2)
  twin = _twin(dict(name='preact_resnet18', num_classes=10, in_channels=3, image_size=32,
                    mean=CIFAR.mean, std=CIFAR.std, widths=widths,
                    shortcut_input=shortcut_input), params, state)
  images = np.random.default_rng(3).uniform(size=(4, 32, 32, 3)).astype(np.float32)
  twin.eval()
  expected = module.apply({'params': params, **state}, images, train=False)
  np.testing.assert_allclose(twin(_nchw(images)).detach().numpy(), expected, atol=1e-4)
  twin.train()
  expected, new_state = module.apply({'params': params, **state}, images, train=True,
                                     mutable=['batch_stats'])
  np.testing.assert_allclose(twin(_nchw(images)).detach().numpy(), expected, atol=1e-4)
  reference = _twin(dict(name='preact_resnet18', num_classes=10, in_channels=3, image_size=32,
                         mean=CIFAR.mean, std=CIFAR.std, widths=widths,
                         shortcut_input=shortcut_input), params, new_state)
  _assert_same_model(twin, reference)


def test_full_size_twins_have_robust_jax_parameter_counts():
  preact = torch_reference.make_model('preact_resnet18', 10, 3, 32, mean=CIFAR.mean,
                                      std=CIFAR.std)
  assert sum(p.numel() for p in preact.parameters()) == 11_176_906  # the official model's
  config = load_config_file('configs/fashion_mnist_cnn.py')
  cnn = torch_reference.make_model(**torch_reference.config_kwargs(config, SPEC)[0])
  params, _ = build_model(config.model, SPEC).init(jax.random.key(0), SPEC.image_shape)
  assert sum(p.numel() for p in cnn.parameters()) == sum(
      np.size(x) for x in jax.tree.leaves(params))


def _sgd(config):
  config.optimizer.update(name='sgd', learning_rate=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4, schedule='constant')
  return config


def _adversary(name, mode, **model):
  config = _sgd(_cnn_config(**model))
  config.adversary = dict(name=name, epsilon=0.1, step_size=0.025 if name == 'pgd' else 0.1,
                          norm='linf', random_start=False, model_mode=mode)
  if name == 'pgd':
    config.adversary.num_steps = 10
  return config


def _amp():
  config = _sgd(_cnn_config(batch_norm=True))
  config.optimizer.grad_clip_norm = 1.0
  config.weight_perturbation = dict(name='amp', epsilon=0.05, inner_lr=1.0, inner_steps=2,
                                    ball='per_tensor', inner_grad_clip=0.5,
                                    update_bn_on_inner_passes=True)
  return config


def _adam():
  config = _cnn_config(batch_norm=True)
  config.optimizer.update(grad_clip_norm=1.0, weight_decay=1e-4, schedule='constant')
  return config


STEP_CASES = {
    'erm_sgd': lambda: _sgd(_cnn_config()),
    'erm_adam_batch_norm_clipped': _adam,
    'pgd_at_eval_mode_batch_norm': lambda: _adversary('pgd', 'eval', batch_norm=True),
    'pgd_at_train_mode_batch_norm': lambda: _adversary('pgd', 'train', batch_norm=True),
    'fgsm_at': lambda: _adversary('fgsm', 'eval'),
    'amp_two_inner_steps_batch_norm': _amp,
}


@pytest.mark.parametrize('name', sorted(STEP_CASES))
def test_one_train_step_matches_robust_jax(name):
  config = STEP_CASES[name]()
  model = build_model(config.model, SPEC)
  optimizer, _ = optim.make_optimizer(config.optimizer, 10, 100)
  params, state = jax.tree.map(np.array, model.init(jax.random.key(0), SPEC.image_shape))
  state = _with_stats(state, 2)  # copies: the library's step donates its state
  model_kwargs, step_kwargs = torch_reference.config_kwargs(config, SPEC)
  twin = _twin(model_kwargs, params, state)
  images, labels = helpers.quadrant_images(8, seed=3)
  library_step = train_step.make_train_step(
      objectives.build_loss_fn(config, model, SPEC.num_classes), optimizer,
      pipeline.make_augment_fn('none', 0), jax.random.key(1),
      sharding.make_mesh(jax.devices()[:1]))
  library_state, metrics = library_step(
      train_state.TrainState(np.zeros((), np.int32), params, state, optimizer.init(params)),
      {'image': images, 'label': labels})
  loss = torch_reference.make_train_step(model=twin, **step_kwargs)(
      _nchw(images), torch.from_numpy(labels).long())
  np.testing.assert_allclose(loss.item(), metrics['loss'], rtol=1e-5)
  _assert_same_model(twin, _twin(model_kwargs, library_state.params, library_state.model_state))
  moved = sum(float(np.abs(np.asarray(a) - np.asarray(b)).sum())
              for a, b in zip(jax.tree.leaves(library_state.params), jax.tree.leaves(params)))
  assert moved > 0


def test_channels_last_and_autocast_switches_keep_the_step():
  """channels_last changes only the memory layout: the same loss and update; bfloat16 autocast
  gives the loss to bfloat16 precision."""
  config = _sgd(_cnn_config(batch_norm=True))
  model_kwargs, step_kwargs = torch_reference.config_kwargs(config, SPEC)
  images, labels = helpers.quadrant_images(8, seed=3)
  results = []
  for options in ({}, {'channels_last': True}, {'autocast_dtype': 'bfloat16'}):
    torch.manual_seed(0)
    model = torch_reference.make_model(**model_kwargs)
    step = torch_reference.make_train_step(model=model, **(step_kwargs | options))
    results.append((step(_nchw(images), torch.from_numpy(labels).long()).item(), model))
  (plain, plain_model), (channels_last, channels_last_model), (bfloat16, _) = results
  np.testing.assert_allclose(channels_last, plain, rtol=1e-5)
  _assert_same_model(channels_last_model, plain_model)
  np.testing.assert_allclose(bfloat16, plain, rtol=2e-2)
  assert bfloat16 != plain  # autocast did run in bfloat16


@pytest.mark.parametrize('spec,method,model,augmentation', [
    ('configs/fashion_mnist_cnn.py', 'erm', 'cnn', 'none'),
    ('configs/fashion_mnist_adversarial.py:pgd', 'pgd_at', 'cnn', 'none'),
    ('configs/fashion_mnist_adversarial.py:fgsm', 'fgsm_at', 'cnn', 'none'),
    ('configs/amp.py:fashion_mnist', 'amp', 'cnn', 'none'),
    ('configs/cifar_adversarial.py:cifar10_pgd', 'pgd_at', 'preact_resnet18', 'crop_flip'),
    ('configs/amp.py:cifar10_preact_resnet18', 'amp', 'preact_resnet18', 'crop_flip'),
])
def test_shipped_configs_map_to_their_twin(spec, method, model, augmentation):
  config = load_config_file(spec)
  model_kwargs, step_kwargs = torch_reference.config_kwargs(config, data.spec_for(config.dataset))
  assert (step_kwargs['method'], model_kwargs['name'], step_kwargs['augmentation']) == (
      method, model, augmentation)
  assert step_kwargs['lr'] == config.optimizer.learning_rate
  if method == 'pgd_at':
    assert step_kwargs['num_steps'] == config.adversary.num_steps == 10


@pytest.mark.parametrize('spec,overrides,message', [
    ('configs/fashion_mnist_adversarial.py:trades', [],
     "config.loss.name='trades': no PyTorch twin; must be 'cross_entropy'"),
    ('configs/erm.py:cifar10_vgg16', [], "config.model.name='vgg16': no PyTorch twin; must be "),
    ('configs/fashion_mnist_adversarial.py:pgd', ['adversary.norm=l2'],
     "config.adversary.norm='l2': no PyTorch twin; must be 'linf'"),
    ('configs/amp.py', ['weight_perturbation.ball=global'],
     "config.weight_perturbation.ball='global': no PyTorch twin; must be 'per_tensor'"),
])
def test_configs_without_a_twin_are_one_line_errors(spec, overrides, message):
  config = config_overrides.apply_overrides(load_config_file(spec), overrides)
  with pytest.raises(ValueError, match=message) as error:
    torch_reference.config_kwargs(config, data.spec_for(config.dataset))
  assert '\n' not in str(error.value)


def test_crop_and_flip_cut_windows_of_the_padded_batch():
  torch.manual_seed(0)
  images = torch.arange(2 * 3 * 5 * 5, dtype=torch.uint8).reshape(2, 3, 5, 5)
  padded = torch.nn.functional.pad(images, (2,) * 4, value=7)
  windows = {(b, top, left): padded[b, :, top:top + 5, left:left + 5]
             for b in range(2) for top in range(5) for left in range(5)}
  offsets = set()
  for _ in range(20):
    cropped = torch_reference._random_crop(images, 2, 7)  # pylint: disable=protected-access
    for b in range(2):
      matches = [key[1:] for key, window in windows.items()
                 if key[0] == b and torch.equal(window, cropped[b])]
      assert len(matches) == 1
      offsets.add(matches[0])
  assert len(offsets) > 5  # the offset varies
  flipped = torch_reference._random_flip(images)  # pylint: disable=protected-access
  for b in range(2):
    assert torch.equal(flipped[b], images[b]) or torch.equal(flipped[b], images[b].flip(2))


def test_bad_arguments_are_one_line_errors():
  model = torch_reference.make_model('cnn', 10, 1, 28, mean=(0.5,), std=(0.5,))
  with pytest.raises(ValueError, match="method='trades': must be one of 'erm', "):
    torch_reference.make_train_step('trades', model, lr=0.1)
  with pytest.raises(ValueError, match="name='vgg16': must be one of 'cnn', 'preact_resnet18'"):
    torch_reference.make_model('vgg16', 10, 3, 32, mean=(0.5,), std=(0.5,))
