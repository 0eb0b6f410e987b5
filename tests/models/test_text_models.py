"""Text models: padding invariance, PyTorch's recurrence formulas, parameter counts, errors."""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robust_jax import data
from robust_jax.config import defaults as config_defaults, schema as config_schema
from robust_jax.models import MODELS, PerturbedTokens, build_model
from tests.test_mixed_precision import _operand_dtypes

SMALL = {'lstm': dict(embedding_size=6, hidden_size=5),
         'gru': dict(embedding_size=6, hidden_size=5),
         'textcnn': dict(embedding_size=6, num_filters=4)}


def _spec(vocab_size=30, num_classes=3, length=20):
  return dataclasses.replace(data.SPECS['ag_news'], num_classes=num_classes,
                             vocab_size=vocab_size, image_shape=(length,))


def _model(name, spec=None, compute_dtype='float32', **overrides):
  section = MODELS.default_section('config.model.name', name) | SMALL[name] | overrides
  model = build_model(ml_collections.ConfigDict(section), spec or _spec(),
                      compute_dtype=compute_dtype)
  params, state = model.init(jax.random.key(0), (20,))
  return model, params, state


def _padded(texts, length):
  return jnp.array([t + [0] * (length - len(t)) for t in texts], jnp.int32)


TEXTS = [[5], [7, 3], [2, 9, 4, 4], [11, 12, 13, 14, 15, 16, 17]]


@pytest.mark.parametrize('name', sorted(SMALL))
def test_padding_changes_no_logit(name):
  model, params, state = _model(name)
  logits = jax.jit(lambda tokens: model.apply(params, state, tokens, train=False)[0])
  padded = np.asarray(logits(_padded(TEXTS, 20)))
  np.testing.assert_allclose(logits(_padded(TEXTS, 7)), padded, rtol=1e-5, atol=1e-6)
  for i in (0, 2):  # one token (shorter than every TextCNN filter), four tokens: unpadded
    np.testing.assert_allclose(logits(_padded([TEXTS[i]], len(TEXTS[i])))[0], padded[i],
                               rtol=1e-5, atol=1e-6)
  assert np.abs(padded[0] - padded[1]).max() > 1e-4  # the texts do give different logits


def _torch_formulas(kind, p, x, length, reverse):
  """PyTorch's LSTM / GRU equations in numpy over the first `length` steps of x (L, D); the
  final hidden state. Gate order: LSTM i, f, g, o; GRU r, z, n."""
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  w_ih, b_ih = np.asarray(p['input_kernel']), np.asarray(p['input_bias'])
  w_hh, b_hh = np.asarray(p['cell']['recurrent_kernel']), np.asarray(p['cell']['recurrent_bias'])
  size = w_hh.shape[0]
  h, c = np.zeros(size), np.zeros(size)
  steps = range(length - 1, -1, -1) if reverse else range(length)
  for t in steps:
    gi, gh = x[t] @ w_ih + b_ih, h @ w_hh + b_hh
    if kind == 'lstm':
      i, f, g, o = np.split(gi + gh, 4)
      c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
      h = sigmoid(o) * np.tanh(c)
    else:
      r, z = sigmoid(gi[:size] + gh[:size]), sigmoid(gi[size:2 * size] + gh[size:2 * size])
      n = np.tanh(gi[2 * size:] + r * gh[2 * size:])
      h = (1 - z) * n + z * h
  return h


@pytest.mark.parametrize('kind, bidirectional', [('lstm', False), ('gru', True)])
def test_recurrent_models_compute_pytorchs_formulas_on_the_last_valid_states(kind, bidirectional):
  model, params, state = _model(kind, num_layers=1, bidirectional=bidirectional)
  tokens = _padded(TEXTS, 9)
  logits, _ = model.apply(params, state, tokens, train=False)
  table = np.asarray(params['embedding']['embedding'])
  for i, text in enumerate(TEXTS):
    x = table[np.asarray(text)]
    finals = [_torch_formulas(kind, params['forward_0'], x, len(text), reverse=False)]
    if bidirectional:  # (backward, forward), the notebooks' cat(h[-1], h[-2])
      finals.insert(0, _torch_formulas(kind, params['backward_0'], x, len(text), reverse=True))
    expected = (np.concatenate(finals) @ np.asarray(params['classifier']['kernel'])
                + np.asarray(params['classifier']['bias']))
    np.testing.assert_allclose(logits[i], expected, rtol=1e-4, atol=1e-5)


def test_textcnn_is_max_over_windows_inside_the_text():
  model, params, state = _model('textcnn', filter_widths=(2,), num_filters=3)
  text = [4, 8, 15, 16]
  logits, _ = model.apply(params, state, _padded([text], 20), train=False)
  x = np.asarray(params['embedding']['embedding'])[np.asarray(text)]
  kernel, bias = np.asarray(params['conv_2']['kernel']), np.asarray(params['conv_2']['bias'])
  windows = [np.maximum(x[t] @ kernel[0] + x[t + 1] @ kernel[1] + bias, 0) for t in range(3)]
  expected = np.max(windows, axis=0) @ np.asarray(params['classifier']['kernel']) + np.asarray(
      params['classifier']['bias'])
  np.testing.assert_allclose(logits[0], expected, rtol=1e-5, atol=1e-6)


def test_parameter_counts_equal_the_official_models():
  """PyTorch's counts: nn.Embedding V×E; nn.LSTM / nn.GRU per layer and direction
  G·H·(D + H) + 2·G·H; nn.Linear; Kim's Conv1d w·E·F + F per width."""
  def count(name, num_classes, vocab_size=20_000):
    model = build_model(ml_collections.ConfigDict(MODELS.default_section('', name)),
                        _spec(vocab_size, num_classes, 256))
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), (256,)))[0]
    return sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))

  embedding = 20_000 * 300
  lstm = 4 * 300 * (300 + 300) + 2 * 4 * 300
  gru_first, gru_second = (3 * 300 * (d + 300) + 2 * 3 * 300 for d in (300, 600))
  assert count('lstm', 2) == embedding + lstm + 300 * 2 + 2  # IMDB
  assert count('gru', 4) == embedding + 2 * (gru_first + gru_second) + 600 * 4 + 4  # AG News
  convolutions = sum(w * 300 * 100 + 100 for w in (3, 4, 5))
  assert count('textcnn', 2) == embedding + convolutions + 300 * 2 + 2


def test_recurrences_are_scans_compiled_once_not_loops_over_tokens():
  model, params, state = _model('gru')
  equations = lambda length: len(jax.make_jaxpr(lambda t: model.apply(
      params, state, t, train=False)[0])(jnp.ones((2, length), jnp.int32)).eqns)
  assert equations(8) == equations(64)
  assert 'scan' in str(jax.make_jaxpr(lambda t: model.apply(params, state, t, train=False)[0])(
      jnp.ones((2, 8), jnp.int32)))


def test_embedding_perturbation_moves_logits_only_through_positions_inside_the_text():
  model, params, state = _model('gru')
  tokens = _padded(TEXTS, 9)
  clean, _ = model.apply(params, state, tokens, train=False)
  beyond = jnp.zeros((4, 9, 6)).at[:, 7:].set(3.0)
  inside = jnp.zeros((4, 9, 6)).at[:, 0].set(3.0)
  shifted, _ = model.apply(params, state, PerturbedTokens(tokens, beyond), train=False)
  moved, _ = model.apply(params, state, PerturbedTokens(tokens, inside), train=False)
  np.testing.assert_array_equal(shifted, clean)
  assert np.abs(np.asarray(moved - clean)).min() > 1e-6


@pytest.mark.parametrize('name, primitive', [('gru', 'dot_general'),
                                             ('textcnn', 'conv_general_dilated')])
def test_bfloat16_text_models_keep_float32_parameters_and_logits(name, primitive):
  model, params, state = _model(name, compute_dtype='bfloat16')
  assert {str(leaf.dtype) for leaf in jax.tree.leaves(params)} == {'float32'}
  tokens = _padded(TEXTS, 9)
  forward = lambda p: model.apply(p, state, tokens, train=False)[0]
  logits = forward(params)
  assert logits.dtype == jnp.float32
  assert 'bfloat16' in _operand_dtypes(jax.make_jaxpr(forward)(params))[primitive]
  float32_model, _, _ = _model(name)  # same initial parameters, float32 compute
  float32_logits = float32_model.apply(params, state, tokens, train=False)[0]
  np.testing.assert_allclose(logits, float32_logits, rtol=0.05, atol=0.02)
  assert np.abs(np.asarray(logits - float32_logits)).max() > 0  # bfloat16 did round something


def test_text_and_image_mismatches_are_one_line_errors():
  image_model = ml_collections.ConfigDict(config_defaults.default_config().model)
  with pytest.raises(config_schema.ConfigError, match=r"^config.model.name='cnn': a model for "
                     r"image data, but config.dataset.name='ag_news' is text data$"):
    build_model(image_model, _spec())
  text_model = ml_collections.ConfigDict(MODELS.default_section('', 'textcnn'))
  with pytest.raises(config_schema.ConfigError, match=r"^config.model.name='textcnn': a model for "
                     r"text data, but config.dataset.name='mnist' is image data$"):
    build_model(text_model, data.SPECS['mnist'])
  model, params, state = _model('lstm')
  with pytest.raises(TypeError, match=r'^tokens.dtype=float32: a text model takes integer token '
                     r'ids \(B, L\)'):
    model.apply(params, state, jnp.zeros((2, 20)), train=False)
