"""Word-level text classifiers: LSTM / GRU (DropAttack's notebooks) and TextCNN (Kim 2014; AMP).

Inputs are token ids (B, L), int in [0, vocab_size) (concrete ids outside it, and non-integer
dtypes, are refused with a one-line error), `<pad>` = 0 after each text's last token
(`robust_jax.data.text`); lengths are the counts of nonzero ids. The embedded sequence is zero
beyond each length, and every model's logits depend only on the ids before it: a text padded to
any L ≥ its length gives the same logits (padding invariance, tested).

* `RecurrentClassifier` (registered 'lstm' and 'gru'): embedding (300, N(0, 1) as PyTorch's
  `nn.Embedding`) -> `num_layers` recurrent layers of `hidden_size`, forward or both directions
  (layer l + 1 reads layer l's outputs, both directions concatenated) -> Dense(num_classes) on the
  last layer's final states: the forward direction's state after the last token, and with
  `bidirectional` the backward direction's state after the first token, concatenated as
  (backward, forward), the notebooks' `cat(h[-1], h[-2])`. DropAttack's IMDB LSTM is 1 layer,
  forward only; its AG News GRU is 2 layers, bidirectional (papers.md 2.3).
* `TextCNN` (registered 'textcnn'): embedding -> for each width w in `filter_widths` a 1-D conv of
  `num_filters` filters, ReLU, max over the windows inside the text (the L - w + 1 windows of a
  text of length L ≥ w; one zero-padded window when L < w) -> concatenation -> Dense. Kim's
  (2014) widths 3, 4, 5 × 100 filters with dropout 0.5 before the classifier (the config's
  dropout site 'features'); AMP's code uses 128 filters and also drops out embeddings
  ('embedding').

Recurrent layers have PyTorch's formulas and fused gates: one input kernel W_ih (D, G·H) and one
recurrent kernel W_hh (H, G·H) per direction (PyTorch's weight_ih / weight_hh transposed), gates in
PyTorch's order (LSTM: i, f, g, o; GRU:
r, z, n with n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))), every weight and bias
~ U(-1/√H, 1/√H). The input projection x W_ih + b_ih of all positions is one matmul before the
`flax.linen.RNN` scan, which carries only h W_hh. Parameter paths: 'embedding/embedding' (the
table, DropAttack's 'embed.weight'), 'forward_{l}/input_kernel' (PyTorch's `weight_ih_l{l}`;
'backward_{l}/...' is `weight_ih_l{l}_reverse`), 'forward_{l}/cell/recurrent_kernel'
(`weight_hh_l{l}`), with biases 'input_bias' and 'cell/recurrent_bias'; 'classifier/kernel'.

Embedding-space attacks pass `PerturbedTokens(tokens, embedding_perturbation)` instead of the ids:
the perturbation (B, L, E) is added to the embedded sequence (then masked beyond each length).

Mixed precision (`compute_dtype`, `base.Classifier`): the embedding lookup and the perturbation's
addition run in float32, then the embedded sequence is cast to `compute_dtype`, as the image
models' input normalisation (so the table's gradient, summed over a token's occurrences, and the
perturbation's gradient are float32); convolutions, recurrent matmuls and states compute in
`compute_dtype` from float32 parameters; the head (`Classifier.logits`) and logits are float32.
"""
from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from robust_jax import arguments
from robust_jax.models import torch_init
# FeatureTransform: the inherited `feature_transforms` annotation resolves here (API reference).
from robust_jax.models.base import Classifier, FeatureTransform  # noqa: F401

__all__ = ['CELLS', 'PerturbedTokens', 'RecurrentClassifier', 'TextCNN', 'TextClassifier']

CELLS = ('lstm', 'gru')
_GATES = {'lstm': 4, 'gru': 3}
_PAD_ID = 0


class PerturbedTokens(typing.NamedTuple):
  """A text model's input with a perturbation of its embedded sequence.

  tokens: (B, L) int token ids. embedding_perturbation: (B, L, embedding_size) float, added to
  the embeddings of `tokens` (positions beyond each text's length are ignored).
  """

  tokens: jax.Array
  embedding_perturbation: jax.Array


class TextClassifier(Classifier):
  """Base of the text models: `__call__(tokens or PerturbedTokens, train) -> logits (B, C)`."""

  vocab_size: int = 2
  embedding_size: int = 300

  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ('embedding', 'features')

  def embed(self, inputs: jax.Array | PerturbedTokens) -> tuple[jax.Array, jax.Array]:
    """(embedded (B, L, E) in `compute_dtype`, zero from each length on; lengths int32 (B,)) of
    the inputs; the lookup and the perturbation's addition in float32."""
    tokens, perturbation = (inputs if isinstance(inputs, PerturbedTokens) else (inputs, None))
    if not self.is_initializing():  # `ModelFns.init` passes float zeros
      # Integer (B, L); where concrete, ids in [0, vocab_size) (an id beyond the table would give
      # NaN embeddings). Traced ids are not read: nothing is added to a compiled step.
      arguments.check_token_ids('tokens', tokens, self.vocab_size)
    if perturbation is not None:
      expected = (*tokens.shape, self.embedding_size)
      if not hasattr(perturbation, 'dtype') or not jnp.issubdtype(perturbation.dtype,
                                                                  jnp.floating):
        raise TypeError(f'embedding_perturbation.dtype='
                        f'{getattr(perturbation, "dtype", type(perturbation).__name__)}: must be '
                        'floating point')
      if tuple(perturbation.shape) != expected:
        raise ValueError(f'embedding_perturbation.shape={tuple(perturbation.shape)}: must be '
                         f'(B, L, embedding_size) = {expected}, like the tokens')
    tokens = tokens.astype(jnp.int32)
    embedded = nn.Embed(self.vocab_size, self.embedding_size,
                        embedding_init=nn.initializers.normal(1.0), name='embedding')(tokens)
    if perturbation is not None:
      embedded = embedded + perturbation
    embedded = embedded.astype(self.compute_dtype)
    valid = tokens != _PAD_ID
    return jnp.where(valid[..., None], embedded, 0.0), jnp.sum(valid, axis=-1, dtype=jnp.int32)

  def classify(self, features: jax.Array, train: bool) -> jax.Array:
    """The float32 head `logits` (PyTorch's default init) after dropout site 'features'."""
    features = self.dropout('features', features, train)
    return self.logits(features, kernel_init=torch_init.DEFAULT_KERNEL_INIT,
                       bias_init=torch_init.default_bias_init(features.shape[-1]),
                       name='classifier')


def _gate_affine(module: nn.Module, name: str, x: jax.Array, kind: str, hidden_size: int,
                 dtype: Dtype) -> jax.Array:
  """x (..., D) @ W + b -> (..., G·H) in `dtype`, G the gates of `kind`: the float32 parameters
  `{name}_kernel` (D, G·H) and `{name}_bias` (G·H,) of `module`, PyTorch's U(±1/√H) init."""
  init = torch_init.default_bias_init(hidden_size)
  size = _GATES[kind] * hidden_size
  kernel = module.param(f'{name}_kernel', init, (x.shape[-1], size))
  bias = module.param(f'{name}_bias', init, (size,))
  return x @ kernel.astype(dtype) + bias.astype(dtype)


class _FusedCell(nn.RNNCellBase):
  """One step of an LSTM or GRU given the projected input x W_ih + b_ih (B, G·H); states and
  matmuls in `dtype`, parameters float32."""

  kind: str
  hidden_size: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, projected):
    recurrent = _gate_affine(self, 'recurrent', carry[1] if self.kind == 'lstm' else carry,
                             self.kind, self.hidden_size, self.dtype)
    if self.kind == 'lstm':
      i, f, g, o = jnp.split(projected + recurrent, 4, axis=-1)
      cell = nn.sigmoid(f) * carry[0] + nn.sigmoid(i) * jnp.tanh(g)
      hidden = nn.sigmoid(o) * jnp.tanh(cell)
      return (cell, hidden), hidden
    input_r, input_z, input_n = jnp.split(projected, 3, axis=-1)
    hidden_r, hidden_z, hidden_n = jnp.split(recurrent, 3, axis=-1)
    reset, update = nn.sigmoid(input_r + hidden_r), nn.sigmoid(input_z + hidden_z)
    new = jnp.tanh(input_n + reset * hidden_n)
    hidden = (1.0 - update) * new + update * carry
    return hidden, hidden

  def initialize_carry(self, rng, input_shape):
    del rng
    zeros = jnp.zeros((*input_shape[:-1], self.hidden_size), self.dtype)
    return (zeros, zeros) if self.kind == 'lstm' else zeros

  @property
  def num_feature_axes(self) -> int:
    return 1


class _Direction(nn.Module):
  """One direction of one recurrent layer: (x (B, L, D), lengths (B,)) -> (outputs (B, L, H) in
  input order, final hidden state (B, H)), computed in `dtype`."""

  kind: str
  hidden_size: int
  reverse: bool
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, lengths):
    projected = _gate_affine(self, 'input', x, self.kind, self.hidden_size, self.dtype)
    cell = _FusedCell(self.kind, self.hidden_size, self.dtype, name='cell')
    carry, outputs = nn.RNN(cell, return_carry=True, reverse=self.reverse, keep_order=True)(
        projected, seq_lengths=lengths)
    return outputs, carry[1] if self.kind == 'lstm' else carry


class RecurrentClassifier(TextClassifier):
  cell: str = 'lstm'
  hidden_size: int = 300
  num_layers: int = 1
  bidirectional: bool = False

  @nn.compact
  def __call__(self, inputs, train: bool) -> jax.Array:
    x, lengths = self.embed(inputs)
    x = self.dropout('embedding', x, train)
    directions = ('forward', 'backward') if self.bidirectional else ('forward',)
    for layer in range(self.num_layers):
      results = [_Direction(self.cell, self.hidden_size, reverse=d == 'backward',
                            dtype=self.compute_dtype, name=f'{d}_{layer}')(x, lengths)
                 for d in directions]
      x = jnp.concatenate([outputs for outputs, _ in results], axis=-1)
    finals = [final for _, final in reversed(results)]  # (backward, forward), as the notebooks
    return self.classify(jnp.concatenate(finals, axis=-1), train)


class TextCNN(TextClassifier):
  filter_widths: Sequence[int] = (3, 4, 5)
  num_filters: int = 100

  @nn.compact
  def __call__(self, inputs, train: bool) -> jax.Array:
    x, lengths = self.embed(inputs)
    x = self.dropout('embedding', x, train)
    widest = max(self.filter_widths)
    if x.shape[1] < widest:
      x = jnp.pad(x, ((0, 0), (0, widest - x.shape[1]), (0, 0)))
    pooled = []
    for width in self.filter_widths:
      fan_in = width * self.embedding_size
      windows = nn.Conv(self.num_filters, (width,), padding='VALID', dtype=self.compute_dtype,
                        kernel_init=torch_init.DEFAULT_KERNEL_INIT,
                        bias_init=torch_init.default_bias_init(fan_in), name=f'conv_{width}')(x)
      inside = jnp.arange(windows.shape[1]) < jnp.maximum(lengths - width + 1, 1)[:, None]
      # ReLU outputs are ≥ 0, so zeros at the windows outside the text leave the maximum as is.
      pooled.append(jnp.max(jnp.where(inside[..., None], nn.relu(windows), 0.0), axis=1))
    return self.classify(jnp.concatenate(pooled, axis=-1), train)
