"""The CPU-only fast paths (`pooling.max_pool`'s reshape, `input_conv.conv`'s patches tangent) are
CPU-only: a program lowered for GPU or TPU has the same computing operations, with the same operand
and result types, as the same model built from `flax.linen.max_pool` and `lax.conv_general_dilated`
(issue #15: "the GPU path gets no slower"); `inner_loop` unrolls for CPU only. Lowered with
`jax.export` for another platform, so no GPU is needed.
"""
from __future__ import annotations

import collections
import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from robust_jax.kernels import input_conv, pooling
from robust_jax.kernels.inner_loop import inner_loop
from robust_jax.models import cnn, vgg

# `lax.platform_dependent` lowers to single-branch `case`s on a constant index, which XLA inlines;
# their returns and index constants, and the zero-filled placeholders for the saved values of the
# branch not taken (broadcasts of a scalar), are bookkeeping, not computation.
_BOOKKEEPING = {'case', 'return', 'constant'}
_SCALAR_FILL = re.compile(r'^\(tensor<\w+>\) -> ')
# Ops whose result type is printed after their region, not on their own line.
_REGION_OPS = {'reduce', 'reduce_window', 'select_and_scatter', 'scatter', 'sort', 'while'}


def _gradient(model: nn.Module, images: jax.Array):
  """(jitted gradient of the summed logits w.r.t. the variables and the images, variables)."""
  variables = model.init(jax.random.key(0), images, train=False)

  def summed_logits(variables, images):
    return model.apply(variables, images, train=False).sum()

  return jax.jit(jax.grad(summed_logits, argnums=(0, 1))), variables


def _computing_ops(model: nn.Module, images: jax.Array, platform: str) -> collections.Counter:
  """Counts of (StableHLO op, its operand -> result types), bookkeeping excluded, in the program
  for the gradient of the summed logits with respect to the parameters and the images."""
  gradient, variables = _gradient(model, images)
  text = jax.export.export(gradient, platforms=[platform])(variables, images).mlir_module()
  ops = collections.Counter()
  for line in text.splitlines():
    found = re.search(r'stablehlo\.(\w+)', line)
    if not found or found.group(1) in _BOOKKEEPING:
      continue
    op = found.group(1)
    types = '' if op in _REGION_OPS else re.sub(r' loc\(.*\)$', '', line).rsplit(' : ', 1)[-1]
    if op == 'broadcast_in_dim' and _SCALAR_FILL.match(types):
      continue
    ops[op, types] += 1
  return ops


def _count(ops: collections.Counter, op: str) -> int:
  return sum(n for (name, _), n in ops.items() if name == op)


def _with_flax_ops(monkeypatch):
  monkeypatch.setattr(input_conv, 'conv', lax.conv_general_dilated)
  monkeypatch.setattr(pooling, 'max_pool', nn.max_pool)


_MODELS = {
    'cnn': (lambda: cnn.CNN(num_classes=3, widths=(8, 8), kernel_size=3, hidden_size=8),
            jnp.zeros((2, 8, 8, 1))),
    'vgg16': (lambda: vgg.VGG16(num_classes=3), jnp.zeros((1, 32, 32, 3))),
}


@pytest.mark.parametrize('platform', ['cuda', 'tpu'])
@pytest.mark.parametrize('name', sorted(_MODELS))
def test_accelerator_program_is_flax(name, platform, monkeypatch):
  build, images = _MODELS[name]
  ours = _computing_ops(build(), images, platform)
  _with_flax_ops(monkeypatch)
  flax_ops = _computing_ops(build(), images, platform)
  assert ours == flax_ops
  assert _count(ours, 'select_and_scatter') >= 1 and _count(ours, 'convolution') >= 4


def test_cpu_program_takes_the_fast_paths(monkeypatch):
  build, images = _MODELS['cnn']
  ours = _computing_ops(build(), images, 'cpu')
  _with_flax_ops(monkeypatch)
  flax_ops = _computing_ops(build(), images, 'cpu')
  assert _count(ours, 'select_and_scatter') == _count(ours, 'reduce_window') == 0
  assert _count(flax_ops, 'select_and_scatter') == 2 and _count(flax_ops, 'reduce_window') == 2
  # Both convs' forward, weight and input gradients, but the first (1-channel) conv's input
  # gradient is patches, not a convolution.
  assert (_count(ours, 'convolution'), _count(flax_ops, 'convolution')) == (5, 6)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='compiles for the default backend')
def test_the_choice_costs_nothing_on_cpu():
  """XLA inlines the constant-index `case`s: the compiled CPU program has no conditional (nor,
  for `inner_loop`, a loop)."""
  build, images = _MODELS['cnn']
  gradient, variables = _gradient(build(), images)
  compiled = gradient.lower(variables, images).compile().as_text()
  assert 'conditional' not in compiled
  loop_gradient = jax.jit(jax.grad(_inner_loop_loss))
  compiled = loop_gradient.lower(*_INNER_LOOP_ARGS).compile().as_text()
  assert 'conditional' not in compiled and 'while' not in compiled


@pytest.mark.parametrize('platform, whiles', [('cpu', 0), ('cuda', 2), ('tpu', 2)])
def test_inner_loop_unrolls_for_cpu_only(platform, whiles):
  """The gradient of a 3-step inner loop: a `while` forward and one backward on GPU/TPU, and on
  CPU the 3 steps unrolled, whatever the default backend (the choice is made at lowering); the
  gradient is that of the same 3 steps written out by hand."""
  text = jax.export.export(jax.jit(jax.grad(_inner_loop_loss)), platforms=[platform])(
      *_INNER_LOOP_ARGS).mlir_module()
  assert text.count('stablehlo.while') == whiles
  assert text.count('stablehlo.tanh') == (3 if platform == 'cpu' else 1)
  rolled = jax.grad(functools.partial(_inner_loop_loss, unroll=False))(*_INNER_LOOP_ARGS)
  np.testing.assert_allclose(jax.grad(_inner_loop_loss)(*_INNER_LOOP_ARGS), rolled, rtol=1e-6)

  def by_hand(weights, carry):
    carry = carry + 1 * jnp.tanh(carry @ weights)
    carry = carry + 2 * jnp.tanh(carry @ weights)
    return (carry + 3 * jnp.tanh(carry @ weights)).sum()

  np.testing.assert_allclose(rolled, jax.grad(by_hand)(*_INNER_LOOP_ARGS), rtol=1e-6)


def _inner_loop_loss(weights, carry, unroll=None):
  return inner_loop(3, lambda t, c: c + (t + 1) * jnp.tanh(c @ weights), carry, unroll).sum()


_INNER_LOOP_ARGS = (0.1 * jnp.ones((4, 4)), jnp.ones((2, 4)))
