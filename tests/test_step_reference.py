"""robust_jax's train step against an independent hand-written step, for every objective.

The reference (`tests/oracles/reference_steps.py`) is written without robust_jax's objectives,
losses, attacks or registries, and follows the library's documented randomness contract, so both
must give the same numbers, step for step: the loss, the gradient, the new batch-norm statistics,
the parameters and the optimizer state, over two full train steps (augmentation, per-step keys,
dropout, feature masks, attack starts, DropAttack masks all lined up). The image model has batch
norm and dropout; the text cases train 2-layer GRUs / LSTMs and a TextCNN, all with dropout, on
token ids of random lengths. The optimizer is SGD with momentum (which, unlike Adam, passes a wrong
gradient scale on to the parameters): its momentum buffer after the first step is the gradient
itself, so comparing optimizer states compares gradients.
"""
import chex
import jax
import numpy as np
import pytest

from robust_jax import data, objectives, sharding
from robust_jax.config import validation
from robust_jax.data import pipeline
from robust_jax.models import MODELS, build_model
from robust_jax.training import optim, state as train_state, step as train_step
from tests import helpers
from tests.oracles import reference_steps

SPEC = data.SPECS['fashion_mnist']
STEP_KEY = jax.random.key(1)


def _base():
  config = helpers.tiny_config('unused.npz')
  config.model.update(widths=(3, 4), hidden_size=8, batch_norm=True, dropout_rate=0.25,
                      dropout_sites=('classifier',))
  config.optimizer.update(name='sgd', learning_rate=0.5, momentum=0.9, weight_decay=0.0,
                          schedule='constant')
  return config


def _with(**sections):
  def build():
    config = _base()
    for name, section in sections.items():
      if name == 'model':
        config.model.update(section)
      else:
        config[name] = section
    return config
  return build


def _pgd(steps=3, mode='eval', **overrides):
  return dict(name='pgd', epsilon=0.1, step_size=0.03, num_steps=steps, norm='linf',
              random_start=True, model_mode=mode) | overrides


def _fgsm(random_start):
  return dict(name='fgsm', epsilon=0.1, step_size=0.125 if random_start else 0.1, norm='linf',
              random_start=random_start, model_mode='eval')


def _trades(mode):
  return dict(name='trades', beta=6.0, epsilon=0.1, step_size=0.03, num_steps=3, norm='linf',
              model_mode=mode)


def _amp(ball, steps, clip, update_bn):
  return dict(name='amp', epsilon=0.05, inner_lr=1.0, inner_steps=steps, ball=ball,
              inner_grad_clip=clip, update_bn_on_inner_passes=update_bn)


def _dropattack(steps, attack_input=True, attack_weights=True, input_norm='batch',
                paths=('Conv_0/kernel',)):
  return dict(name='dropattack', attack_probability=0.5, num_steps=steps,
              attack_input=attack_input, input_epsilon=1.0, input_norm=input_norm,
              attack_weights=attack_weights, weight_paths=paths, weight_epsilon=0.1,
              weight_epsilon_relative=True)


def _lfm(mode):
  return dict(name='lfm', sites=('conv1',), probability=1.0, channel_fraction=0.5,
              area_range=(0.02, 0.4), aspect_range=(0.3, 1 / 0.3), fill='uniform', mode=mode,
              official_code_samples=4)


def _class_similarity():
  from configs import class_similarity as config_file
  return dict(name='class_similarity', matrix_path=config_file.FASHION_MNIST_MATRIX, alpha=0.3)


MDL = dict(name='mdl', num_subnetworks=3, orthogonality_weight=0.7)

CASES = {
    'erm': _with(),
    'erm_without_batch_norm': _with(model=dict(batch_norm=False)),
    'label_smoothing': _with(targets=dict(name='label_smoothing', smoothing=0.2)),
    'class_similarity': _with(targets=_class_similarity()),
    'pgd_at_eval_mode': _with(adversary=_pgd()),
    'pgd_at_train_mode': _with(adversary=_pgd(mode='train')),
    'pgd_at_no_random_start': _with(adversary=_pgd(random_start=False)),
    'fgsm_at_random_start': _with(adversary=_fgsm(True)),
    'fgsm_at': _with(adversary=_fgsm(False)),
    'trades_eval_mode': _with(loss=_trades('eval')),
    'trades_train_mode': _with(loss=_trades('train')),
    'amp_per_tensor': _with(weight_perturbation=_amp('per_tensor', 1, 0.0, True)),
    'amp_global_two_steps_clipped': _with(weight_perturbation=_amp('global', 2, 0.5, False)),
    'amp_per_tensor_two_steps': _with(weight_perturbation=_amp('per_tensor', 2, 0.0, True)),
    'dropattack_input_k1': _with(weight_perturbation=_dropattack(1, attack_weights=False)),
    'dropattack_input_k2_per_example': _with(weight_perturbation=_dropattack(
        2, attack_weights=False, input_norm='per_example')),
    'dropattack_weights_k1': _with(weight_perturbation=_dropattack(1, attack_input=False)),
    'dropattack_weights_k2_two_tensors': _with(weight_perturbation=_dropattack(
        2, attack_input=False, paths=('Conv_0/kernel', 'Dense_1/kernel'))),
    'dropattack_both_k1': _with(weight_perturbation=_dropattack(1)),
    'dropattack_both_k2_per_example': _with(weight_perturbation=_dropattack(
        2, input_norm='per_example')),
    'mdl': _with(loss=MDL),
    'lfm_paper': _with(feature_mask=_lfm('paper')),
    'lfm_official_code': _with(feature_mask=_lfm('official_code')),
    # The composed configs the README lists.
    'mdl_on_pgd': _with(loss=MDL, adversary=_pgd()),
    'amp_with_lfm': _with(weight_perturbation=_amp('per_tensor', 1, 0.0, True),
                          feature_mask=_lfm('paper')),
    'dropattack_with_class_similarity': _with(weight_perturbation=_dropattack(1),
                                              targets=_class_similarity()),
}


def _text(model, **sections):
  """A tiny text config (AG News shape: vocabulary 30, length 10, 4 classes) with `sections`."""
  def build():
    config = _base()
    config.dataset.update(name='ag_news', source='csv', vocab_size=30, max_length=10)
    config.model = MODELS.default_section('config.model.name', model) | dict(
        embedding_size=5, **({'num_filters': 3, 'filter_widths': (2, 3)} if model == 'textcnn'
                             else {'hidden_size': 4, 'num_layers': 2, 'dropout_rate': 0.3,
                                   'dropout_sites': ('embedding', 'features')}))
    for name, (component, overrides) in sections.items():
      registry = objectives.SECTIONS[name]
      config[name] = registry.default_section('', component) | overrides
    return config
  return build


TEXT_CASES = {
    'text_erm_gru': _text('gru'),
    'text_erm_lstm': _text('lstm'),
    'text_dropattack_k1_gru': _text('gru', weight_perturbation=('dropattack_embedding', {})),
    'text_dropattack_k2_lstm_input_only': _text('lstm', weight_perturbation=(
        'dropattack_embedding', {'num_steps': 2, 'attack_weights': False})),
    'text_dropattack_k2_gru_two_tensors': _text('gru', weight_perturbation=(
        'dropattack_embedding', {'num_steps': 2, 'attack_probability': 0.5,
                                 'weight_paths': ('forward_0/input_kernel',
                                                  'backward_1/cell/recurrent_kernel')})),
    'text_fgm_gru': _text('gru', adversary=('embedding_fgm', {})),
    'text_fgm_without_clean_lstm': _text('lstm', adversary=('embedding_fgm',
                                                            {'include_clean': False})),
    'text_pgd_gru': _text('gru', adversary=('embedding_pgd', {'num_steps': 2, 'epsilon': 1.0})),
    'text_amp_textcnn': _text('textcnn', weight_perturbation=(
        'amp', {'epsilon': 1.0, 'inner_lr': 0.1, 'inner_grad_clip': 50.0})),
    'text_erm_textcnn_dropout': _text('textcnn'),
}


def _close(actual, expected):
  chex.assert_trees_all_close(actual, expected, rtol=2e-4, atol=2e-6)


def _check_against_hand_written(config, spec, augment, images, labels, mesh):
  """Two steps of the library's train step and of the hand-written one, compared."""
  validation.validate_config(config)
  model = build_model(config.model, spec, objectives.build_feature_transforms(config))
  optimizer, _ = optim.make_optimizer(config.optimizer, 10, 100)
  state = train_state.init_train_state(model, optimizer, jax.random.key(0), spec.image_shape)
  library_step = train_step.make_train_step(
      objectives.build_loss_fn(config, model, spec.num_classes), optimizer, augment, STEP_KEY,
      mesh)
  hand_step = jax.jit(reference_steps.train_step(config, model.module, spec.num_classes,
                                                 optimizer, augment))
  hand = (state.params, state.model_state, state.opt_state)
  # A copy (the library's step donates its state), placed as the step places its output, so the
  # second step reuses the first one's program.
  library_state = jax.device_put(jax.tree.map(np.array, state), sharding.replicated(mesh))
  for step in range(2):
    library_state, metrics = library_step(library_state, {'image': images, 'label': labels})
    *hand, hand_loss = hand_step(*hand, images, labels, jax.random.fold_in(STEP_KEY, step))
    np.testing.assert_allclose(metrics['loss'], hand_loss, rtol=2e-5)
    _close(library_state.opt_state, hand[2])  # after step 0: the momentum buffer = the gradient
    _close(library_state.model_state, hand[1])
    _close(library_state.params, hand[0])
    if step == 0:
      first_gradient = jax.tree.leaves(hand[2])
      assert sum(float(np.abs(g).sum()) for g in first_gradient) > 0


@pytest.mark.parametrize('name', sorted(CASES))
def test_train_step_matches_hand_written_step(name, eight_devices):
  images, labels = helpers.quadrant_images(8, seed=3)
  _check_against_hand_written(CASES[name](), SPEC, pipeline.make_augment_fn('crop_flip', 2),
                              images, labels, sharding.make_mesh(eight_devices[:1]))


@pytest.mark.parametrize('name', sorted(TEXT_CASES))
def test_text_train_step_matches_hand_written_step(name, eight_devices):
  """Text: token ids of random lengths (<pad> = 0 after each), dropout where the model has it."""
  config = TEXT_CASES[name]()
  rng = np.random.default_rng(4)
  lengths = rng.integers(1, 11, 8)
  tokens = np.where(np.arange(10) < lengths[:, None], rng.integers(1, 30, (8, 10)), 0)
  _check_against_hand_written(config, data.spec_for(config.dataset),
                              data.augment_fn_for(config.dataset), tokens.astype(np.int32),
                              rng.integers(0, 4, 8).astype(np.int32),
                              sharding.make_mesh(eight_devices[:1]))


def test_the_cases_cover_every_registered_component():
  used = {section: set() for section in objectives.SECTIONS}
  for build in (*CASES.values(), *TEXT_CASES.values()):
    config = build()
    for section in objectives.SECTIONS:
      used[section].add(config[section].name)
  for section, registry in objectives.SECTIONS.items():
    assert used[section] == set(registry.names()), section
