"""Methods on text: DropAttack's embedding-table attack by hand, embedding-space FGM / PGD, AMP and
MDL on text models, 1 vs 8 devices, and one-line errors for what does not apply to text."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import data, objectives, sharding
from robust_jax.config import defaults as config_defaults, schema as config_schema, validation
from robust_jax.methods import dropattack, embedding_adversary
from robust_jax.models import MODELS, build_model
from robust_jax.training import optim, state as train_state, step as train_step

VOCAB, LENGTH, CLASSES = 40, 12, 4


def _config(model, weight_perturbation=None, adversary=None, **model_overrides):
  config = config_defaults.default_config()
  config.dataset.update(name='ag_news', source='csv', vocab_size=VOCAB, max_length=LENGTH)
  config.model = MODELS.default_section('config.model.name', model) | dict(
      embedding_size=6) | model_overrides
  if weight_perturbation:
    config.weight_perturbation = objectives.WEIGHT_PERTURBATIONS.default_section(
        '', weight_perturbation[0]) | weight_perturbation[1]
  if adversary:
    config.adversary = objectives.ADVERSARIES.default_section('', adversary[0]) | adversary[1]
  config.optimizer.learning_rate = 1e-2
  return config


def _batch(size=16, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, LENGTH + 1, size)
  tokens = np.where(np.arange(LENGTH) < lengths[:, None], rng.integers(1, VOCAB, (size, LENGTH)),
                    0).astype(np.int32)
  return {'image': tokens, 'label': rng.integers(0, CLASSES, size).astype(np.int32)}


def _run_steps(config, devices, num_steps=2):
  validation.validate_config(config)
  mesh = sharding.make_mesh(devices)
  spec = data.spec_for(config.dataset)
  model = build_model(config.model, spec, objectives.build_feature_transforms(config))
  optimizer, _ = optim.make_optimizer(config.optimizer, 10, 100)
  step = train_step.make_train_step(objectives.build_loss_fn(config, model, spec.num_classes),
                                    optimizer, data.augment_fn_for(config.dataset),
                                    jax.random.key(5), mesh)
  state = jax.jit(lambda k: train_state.init_train_state(model, optimizer, k, spec.image_shape),
                  out_shardings=sharding.replicated(mesh))(jax.random.key(0))
  batch = jax.device_put(_batch(), sharding.batch_sharded(mesh))
  losses = []
  for _ in range(num_steps):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  return losses, jax.device_get(state.params)


# The notebooks' settings on tiny models: DropAttack-1 (p 0.7, ε 5 on the embedding table and
# the first forward input kernel), embedding FGM / PGD, AMP on TextCNN (ε 1, ζ 0.1), MDL.
CONFIGS = {
    'erm_gru': lambda: _config('gru', hidden_size=5, num_layers=1),
    'dropattack_lstm': lambda: _config('lstm', ('dropattack_embedding', {}), hidden_size=5),
    'embedding_fgm_lstm': lambda: _config('lstm', adversary=('embedding_fgm', {}), hidden_size=5),
    'embedding_pgd_lstm': lambda: _config('lstm', adversary=('embedding_pgd', {'num_steps': 2}),
                                          hidden_size=5),
    'amp_textcnn': lambda: _config('textcnn', ('amp', {'epsilon': 1.0, 'inner_lr': 0.1}),
                                   num_filters=4, filter_widths=(2, 3)),
}


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_one_and_eight_devices_agree_on_text(name, eight_devices):
  losses_1, params_1 = _run_steps(CONFIGS[name](), eight_devices[:1])
  losses_8, params_8 = _run_steps(CONFIGS[name](), eight_devices)
  np.testing.assert_allclose(losses_1, losses_8, rtol=2e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=3e-5),
               params_1, params_8)
  assert losses_1[0] != losses_1[1]  # the steps did train


def _bag_of_embeddings():
  """A tiny model written by hand: logits = mean of the text's embeddings @ w."""
  rng = np.random.default_rng(0)
  params = {'embedding': {'embedding': jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)},
            'w': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
  # Token 2 twice in text 0, token 3 in both texts; tokens 1 and 4 absent; 0 = <pad>.
  tokens = jnp.array([[2, 3, 2, 0], [3, 5, 0, 0]])
  labels = jnp.array([0, 1])

  def loss_fn(p, tokens, key, *, state):
    del key, state
    valid = (tokens != 0)[..., None]
    features = jnp.sum(p['embedding']['embedding'][tokens] * valid, 1) / jnp.sum(valid, 1)
    logits = features @ p['w']
    loss = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels])
    return loss, p['embedding']['embedding']  # the state: the table this pass saw
  return params, tokens, labels, loss_fn


def test_embedding_table_perturbation_against_a_hand_computation():
  params, tokens, labels, loss_fn = _bag_of_embeddings()
  key = jax.random.key(3)
  result = dropattack.gradient(loss_fn, params, tokens, key, attack_probability=0.5, num_steps=1,
                               input_epsilon=5.0, input_paths=('embedding/embedding',),
                               attack_weights=False, state=jnp.zeros((6, 3)))
  table, w = np.asarray(params['embedding']['embedding']), np.asarray(params['w'])
  # By hand: dL/dlogits_b = (softmax - onehot) / B; each occurrence of v in text b adds
  # dL/dlogits_b @ w.T / length_b to row v: one row per token, however often it occurs.
  lengths = np.array([3, 2])
  logits = np.stack([table[[2, 3, 2]].mean(0), table[[3, 5]].mean(0)]) @ w
  softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  dlogits = (softmax - np.eye(2)[np.asarray(labels)]) / 2
  g0 = np.zeros_like(table)
  for b, text in enumerate(([2, 3, 2], [3, 5])):
    for v in text:
      g0[v] += dlogits[b] @ w.T / lengths[b]
  mask = np.asarray(jax.random.bernoulli(jax.random.fold_in(jax.random.split(key, 5)[1], 0), 0.5,
                                         (6, 3)))
  expected = 5.0 * mask * g0 / np.linalg.norm(g0)
  perturbation = np.asarray(result.state) - table
  np.testing.assert_allclose(perturbation, expected, rtol=1e-5, atol=1e-6)
  assert np.all(perturbation[[0, 1, 4]] == 0)  # <pad> and absent tokens: unchanged rows
  assert 0 < mask.sum() < mask.size and np.abs(perturbation[2]).sum() > 0
  # The total gradient: clean + the gradient at the perturbed table, every parameter.
  grad = jax.grad(lambda p: loss_fn(p, tokens, None, state=None)[0])
  perturbed = {**params, 'embedding': {'embedding': params['embedding']['embedding'] + expected}}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), result.grads,
               jax.tree.map(jnp.add, grad(params), grad(perturbed)))


def test_fgm_is_the_per_example_normalised_gradient_and_pgd_stays_in_the_ball():
  direction = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4, 5)), jnp.float32)
  linear = lambda delta, step: jnp.sum(direction * delta)
  fgm = embedding_adversary.perturbation(linear, (3, 4, 5), epsilon=2.0, step_size=2.0,
                                         num_steps=1)
  norms = np.linalg.norm(np.asarray(direction).reshape(3, -1), axis=1)[:, None, None]
  np.testing.assert_allclose(fgm, 2.0 * direction / norms, rtol=1e-5)
  # Towards 10 · direction, outside the ball: three steps of 0.7 reach the ball's edge, where
  # the projection keeps δ at ε along the direction.
  towards = lambda delta, step: -jnp.sum((delta - 10 * direction) ** 2)
  pgd = embedding_adversary.perturbation(towards, (3, 4, 5), epsilon=2.0, step_size=0.7,
                                         num_steps=4)
  np.testing.assert_allclose(pgd, fgm, rtol=1e-5, atol=1e-6)


def test_mdl_and_class_similarity_style_targets_work_on_text():
  config = _config('textcnn', num_filters=4, filter_widths=(2, 3))
  config.loss = objectives.LOSSES.default_section('', 'mdl')
  config.targets = objectives.TARGETS.default_section('', 'label_smoothing')
  losses, _ = _run_steps(config, jax.devices()[:1])
  assert np.all(np.isfinite(losses)) and losses[0] != losses[1]


@pytest.mark.parametrize('change, match', [
    (lambda c: setattr(c, 'weight_perturbation',
                       objectives.WEIGHT_PERTURBATIONS.default_section('', 'dropattack')),
     r"^config.weight_perturbation.attack_input=True: perturbs the inputs, but ag_news is text "
     r"\(token ids\); use weight_perturbation 'dropattack_embedding'"),
    (lambda c: c.dataset.update(name='fashion_mnist', source='idx'),
     r"^config.model.name='lstm': a model for text data, but config.dataset.name='fashion_mnist' "
     r"is image data$"),
    (lambda c: (c.dataset.update(name='fashion_mnist', source='idx'),
                setattr(c, 'model', config_defaults.cnn_model())),
     r"^config.weight_perturbation.name='dropattack_embedding': perturbs a text model's "
     r"embedding table, but fashion_mnist is image data; use 'dropattack'$"),
    (lambda c: c.feature_mask.update(sites=('conv1',)),
     r"^config.feature_mask.sites=\('conv1',\): lstm has feature sites none$"),
    (lambda c: setattr(c, 'adversary', objectives.ADVERSARIES.default_section('', 'fgsm')),
     r"^config.adversary.name='fgsm': attacks pixels, but ag_news is text \(token ids\); use "
     r"adversary 'embedding_pgd' or 'embedding_fgm'"),
    (lambda c: setattr(c, 'loss', objectives.LOSSES.default_section('', 'trades')),
     r"^config.loss.name='trades': attacks pixels, but ag_news is text \(token ids\); use loss "
     r"'cross_entropy' with adversary 'embedding_pgd'$"),
])
def test_text_config_mistakes_are_one_line(change, match):
  config = _config('lstm', ('dropattack_embedding', {}), hidden_size=5)
  change(config)
  with pytest.raises(config_schema.ConfigError, match=match):
    validation.validate_config(config)


def test_embedding_adversary_on_images_is_a_config_error():
  config = config_defaults.default_config()
  config.adversary = objectives.ADVERSARIES.default_section('', 'embedding_fgm')
  with pytest.raises(config_schema.ConfigError, match=r"^config.adversary.name='embedding_fgm': "
                     r'perturbs the embeddings of a text model, but fashion_mnist is image data'):
    validation.validate_config(config)


def _loss_on_text(config):
  spec = data.spec_for(config.dataset)
  model = build_model(config.model, spec)
  loss_fn = objectives.build_loss_fn(config, model, spec.num_classes)
  params, state = model.init(jax.random.key(0), spec.image_shape)
  return lambda: jax.jit(loss_fn)(params, state, _batch(4), jax.random.key(1))


def test_pixel_attacks_on_token_ids_and_bad_paths_are_one_line_errors():
  pgd = _config('lstm', adversary=('pgd', {}), hidden_size=5)
  with pytest.raises(TypeError, match=r'^images.dtype=int32: must be floating point'):
    _loss_on_text(pgd)()
  bad_path = _config('lstm', ('dropattack_embedding', {'weight_paths': ('rnn/weight_ih_l0',)}),
                     hidden_size=5)
  with pytest.raises(config_schema.ConfigError,
                     match=r"^config.weight_perturbation.weight_paths: 'rnn/weight_ih_l0' is not "
                     r"a parameter; parameters: .*forward_0/input_kernel"):
    _loss_on_text(bad_path)()


def test_text_configs_validate_and_take_the_registered_recipes(tmp_path):
  from configs import text as text_configs
  for variant in text_configs.VARIANTS:
    validation.validate_config(text_configs.get_config(variant))
  dropattack_config = text_configs.get_config('offline_ag_news_gru_dropattack')
  perturbation = dropattack_config.weight_perturbation  # the registered defaults, pinned
  assert (perturbation.attack_probability, perturbation.input_epsilon, perturbation.weight_epsilon,
          perturbation.weight_epsilon_relative) == (0.7, 5.0, 5.0, False)
  assert perturbation.weight_paths == ('forward_0/input_kernel',)
  assert dict(text_configs.get_config('offline_ag_news_gru_fgm').adversary) == dict(
      name='embedding_fgm', epsilon=5.0, include_clean=True)
  imdb = text_configs.get_config('imdb_lstm_dropattack').weight_perturbation
  assert (imdb.attack_probability, imdb.num_steps, imdb.input_epsilon) == (0.5, 3, 5.0)
  dropattack_config.dataset.update(path=str(tmp_path), cache_dir=str(tmp_path))
  with pytest.raises(data.DatasetError, match=r"^config.dataset.path='.*': CSV file "
                     r"'.*val_ag1.csv' not found; path must be a folder holding"):
    data.load_splits(dropattack_config.dataset)


# ------------------------------------------------------------------------------- argument bounds
def test_embedding_perturbation_takes_the_smallest_shapes_and_budgets_and_refuses_the_rest():
  """ε = 0 and ε < 1 are budgets, (1, 1) and lists are shapes; (B,) alone, a 0 size, a bool size
  are not (`embedding_adversary.perturbation`'s documented ranges, each at its edge)."""
  def loss_fn(delta, step):  # pylint: disable=unused-argument
    return jnp.sum((delta - 1.0) ** 2)
  common = dict(step_size=0.5, num_steps=1)
  assert float(jnp.abs(embedding_adversary.perturbation(
      loss_fn, (2, 3), epsilon=0.0, **common)).max()) == 0.0
  delta = embedding_adversary.perturbation(loss_fn, [1, 1], epsilon=0.25, **common)
  assert delta.shape == (1, 1) and float(delta[0, 0]) == pytest.approx(-0.25)  # towards -g
  for shape in ((3,), (2, 0), (2, True), 'ab'):
    with pytest.raises(TypeError, match='must be'):
      embedding_adversary.perturbation(loss_fn, shape, epsilon=0.25, **common)
