r"""Standalone reproduction of what XLA:CPU runs slowly in a small CNN's forward+backward
(robust_jax issue #15; findings in `experiments/xla_cpu_profile.md`). Needs only jax and numpy.

    python experiments/xla_cpu_repro.py [--reps=10]
        [--sections=pool,conv,input_conv,model,precision,widths]
        [--flag_variants]    # also reruns conv and model in subprocesses under other XLA_FLAGS

Per-op timings under `jax.jit`, batch 128, float32, NHWC: the median and the minimum over `--reps`
calls after one compiling call, each call ended with `block_until_ready`. The shapes are those of
the Fashion-MNIST CNN conv3×3-32 -> ReLU -> maxpool 2 -> conv3×3-64 -> ReLU -> maxpool 2 ->
dense 256 -> ReLU -> dense 10 (cross-entropy):

* pool: 2×2/2 max-pool of (128, 28, 28, 32): `lax.reduce_window` max (what `flax.linen.max_pool`
  runs; its gradient is `select_and_scatter_add`) against `x.reshape(B, 14, 2, 14, 2, C).max(axis=
  (2, 4))` (gradient: compare and select, fused), forward alone and forward+backward; plus
  robust_jax's `pooling.max_pool` (same gradients as reduce_window) when robust_jax is importable.
* conv: the second conv, (128, 14, 14, 32) * (3, 3, 32, 64) SAME: forward, input gradient and
  weight gradient as JAX's transpose rules emit them, the weight gradient also as the same
  convolution with NCHW / 'CHWN' physical layouts, as 9 shifted matmuls and as patches + einsum.
  All have the forward's 0.92 GFLOP; GFLOP/s is printed.
* input_conv: the first conv, (128, 28, 28, 1) * (3, 3, 1, 32) SAME: its input gradient (what
  every attack needs) as JAX's transpose rule emits it, a convolution with 1 output channel,
  against the same linear map written as image patches and a matmul, whose transpose is a
  matmul and 9 shifted adds (`robust_jax/kernels/input_conv.py`).
* model: the whole loss forward+backward (parameter gradients) with either pool;
  precision: the same under each `jax.default_matmul_precision`; widths: other conv widths and
  hidden sizes.
* --flag_variants: conv and model again in a child process per setting (`FLAG_VARIANTS`: one
  thread, NPROC=1, YNNPACK off, YNNPACK for convolutions only), as XLA_FLAGS must be set before
  the backend starts.
Estimated on a quiet 2-core machine: about 35 s, and 8 s more per flag variant.
"""
from __future__ import annotations

import argparse
from importlib import metadata
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

BATCH = 128
CONV_FLOP = 2 * BATCH * 14 * 14 * 32 * 64 * 9  # the second conv: forward, each gradient alike
# (XLA_FLAGS added, other environment variables) per child process. NPROC (or PJRT_NPROC) sizes
# XLA:CPU's thread pool; in jaxlib 0.10 convolutions (and other ops the flag lists) run in
# YNNPACK ('__ynn_fusion' in the compiled HLO), an empty list gives XLA's own (Eigen) kernels.
FLAG_VARIANTS = (('--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1', {}),
                 ('', {'NPROC': '1'}),
                 ('--xla_cpu_experimental_ynn_fusion_type=', {}),
                 ('--xla_cpu_experimental_ynn_fusion_type=individual_convolution', {}))


def timed(fn, *args, reps: int) -> tuple[float, float]:
  """(median ms, min ms) of `reps` calls of jitted `fn` after one compiling call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times)), 1e3 * min(times)


def report(name: str, fn, *args, reps: int, flop: float = 0.0) -> None:
  median, best = timed(jax.jit(fn), *args, reps=reps)
  rate = f'{flop / median / 1e6:8.1f}' if flop else ''
  print(f'  {name:<62} {median:9.2f} {best:9.2f} {rate}', flush=True)


def header(title: str) -> None:
  print(f'{title:<64} {"median ms":>9} {"min ms":>9}  GFLOP/s')


def reduce_window_pool(x):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')


def reshape_pool(x):
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def pools() -> dict:
  found = {'reduce_window (flax.linen.max_pool)': reduce_window_pool,
           'reshape + max (jnp.max: ties split)': reshape_pool}
  try:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from robust_jax.models import pooling  # pylint: disable=g-import-not-at-top
    found['robust_jax pooling.max_pool (ties as flax)'] = (
        lambda x: pooling.max_pool(x, (2, 2), (2, 2)))
  except ImportError:
    pass
  return found


def conv(x, w, dimension_numbers=('NHWC', 'HWIO', 'NHWC')):
  return lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=dimension_numbers)


def section_pool(rng, reps):
  x = jnp.asarray(rng.standard_normal((BATCH, 28, 28, 32), np.float32))
  ct = jnp.asarray(rng.standard_normal((BATCH, 14, 14, 32), np.float32))
  header('max-pool 2x2/2 of (128, 28, 28, 32)')
  for name, pool in pools().items():
    report(f'{name}: forward', pool, x, reps=reps)
    report(f'{name}: forward+backward', lambda x, ct, pool=pool: _value_and_vjp(pool, x, ct),
           x, ct, reps=reps)


def _value_and_vjp(fn, x, cotangent):
  y, vjp = jax.vjp(fn, x)
  return y, vjp(cotangent)[0]


def weight_gradient_nchw(x, ct):
  """dW through the same conv with NCHW activations and an OIHW kernel, back to HWIO."""
  nchw = lambda a: a.transpose(0, 3, 1, 2)
  w0 = jnp.zeros((64, 32, 3, 3), x.dtype)
  _, vjp = jax.vjp(lambda w: conv(nchw(x), w, ('NCHW', 'OIHW', 'NCHW')), w0)
  return vjp(nchw(ct))[0].transpose(2, 3, 1, 0)


def weight_gradient_as_conv(x, ct):
  """dW[i, j, c, o] = Σ_{b,h,w} x_pad[b, h+i, w+j, c] ct[b, h, w, o] as one conv whose batch is
  c and whose contracted feature is b, operands transposed so each is physically NHWC/HWIO."""
  lhs = x.transpose(3, 1, 2, 0)  # (C, H, W, B): batch = input channel, feature = example
  rhs = ct.transpose(1, 2, 0, 3)  # (H, W, B, O): a 14×14 "kernel"
  out = lax.conv_general_dilated(lhs, rhs, (1, 1), ((1, 1), (1, 1)),
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))  # (C, 3, 3, O)
  return out.transpose(1, 2, 0, 3)


def weight_gradient_shifted_matmuls(x, ct):
  """dW[i, j] = x_pad[:, i:i+H, j:j+W, :]ᵀ ct, one (C × B·H·W) @ (B·H·W × O) matmul per offset."""
  x_pad = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = [[jnp.einsum('bhwc,bhwo->co', x_pad[:, i:i + 14, j:j + 14], ct) for j in range(3)]
          for i in range(3)]
  return jnp.stack([jnp.stack(row) for row in rows])


def weight_gradient_patches(x, ct):
  patches = lax.conv_general_dilated_patches(x, (3, 3), (1, 1), 'SAME',
                                             dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  dw = jnp.einsum('bhwp,bhwo->po', patches, ct)  # patches' features are (c, i, j), c slowest
  return dw.reshape(32, 3, 3, 64).transpose(1, 2, 0, 3)


def section_conv(rng, reps):
  x = jnp.asarray(rng.standard_normal((BATCH, 14, 14, 32), np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, 32, 64), np.float32) / 17.0)
  ct = jnp.asarray(rng.standard_normal((BATCH, 14, 14, 64), np.float32))
  reference = jax.jit(lambda x, ct: jax.vjp(lambda w: conv(x, w), w)[1](ct)[0])(x, ct)
  for name, fn in (('NCHW', weight_gradient_nchw), ('as conv', weight_gradient_as_conv),
                   ('shifted matmuls', weight_gradient_shifted_matmuls),
                   ('patches', weight_gradient_patches)):
    np.testing.assert_allclose(jax.jit(fn)(x, ct), reference, rtol=1e-3, atol=1e-2, err_msg=name)
  header('conv 3x3 SAME, (128, 14, 14, 32) -> 64 channels')
  report('forward (NHWC, HWIO)', conv, x, w, reps=reps, flop=CONV_FLOP)
  report('input gradient (JAX transpose rule)',
         lambda w, ct: jax.vjp(lambda x: conv(x, w), x)[1](ct)[0], w, ct, reps=reps,
         flop=CONV_FLOP)
  report('weight gradient (JAX transpose rule)',
         lambda x, ct: jax.vjp(lambda w: conv(x, w), w)[1](ct)[0], x, ct, reps=reps,
         flop=CONV_FLOP)
  report('weight gradient, NCHW / OIHW', weight_gradient_nchw, x, ct, reps=reps, flop=CONV_FLOP)
  report("weight gradient as conv, physical 'CHWN' lhs", weight_gradient_as_conv, x, ct,
         reps=reps, flop=CONV_FLOP)
  report('weight gradient as 9 shifted matmuls', weight_gradient_shifted_matmuls, x, ct,
         reps=reps, flop=CONV_FLOP)
  report('weight gradient as patches + einsum', weight_gradient_patches, x, ct, reps=reps,
         flop=CONV_FLOP)


def cnn_params(rng, widths=(32, 64), hidden=256):
  shapes = [(3, 3, 1, widths[0]), (widths[0],), (3, 3, widths[0], widths[1]), (widths[1],),
            (7 * 7 * widths[1], hidden), (hidden,), (hidden, 10), (10,)]
  return [jnp.asarray(rng.standard_normal(s, np.float32) / np.sqrt(np.prod(s[:-1]) or 1))
          for s in shapes]


def cnn_loss(params, images, labels, pool):
  w1, b1, w2, b2, w3, b3, w4, b4 = params
  x = pool(jax.nn.relu(conv(images, w1) + b1))
  x = pool(jax.nn.relu(conv(x, w2) + b2))
  x = jax.nn.relu(x.reshape(x.shape[0], -1) @ w3 + b3)
  logits = x @ w4 + b4
  return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1).mean()


def batch(rng):
  images = jnp.asarray(rng.integers(0, 256, (BATCH, 28, 28, 1)).astype(np.float32) / 255.0)
  return images, jnp.asarray(rng.integers(0, 10, BATCH))


def section_model(rng, reps):
  params, (images, labels) = cnn_params(rng), batch(rng)
  header('CNN loss forward+backward (parameter gradients), batch 128')
  for name, pool in pools().items():
    report(f'pool = {name}', jax.grad(lambda p, x, y, pool=pool: cnn_loss(p, x, y, pool)),
           params, images, labels, reps=reps)


def patches_conv(x, w):
  """conv(x, w) 3×3 SAME as patches (B, H, W, 9·C) @ w (9·C, O): 9 shifted slices, one matmul."""
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w_ = x.shape[1:3]
  patches = jnp.concatenate([padded[:, i:i + h, j:j + w_] for i in range(3) for j in range(3)], -1)
  return patches @ w.reshape(-1, w.shape[-1])


def section_input_conv(rng, reps):
  x = jnp.asarray(rng.uniform(size=(BATCH, 28, 28, 1)).astype(np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, 1, 32), np.float32) / 3.0)
  ct = jnp.asarray(rng.standard_normal((BATCH, 28, 28, 32), np.float32))
  input_gradient = lambda conv_fn: (lambda w, ct: jax.vjp(lambda x: conv_fn(x, w), x)[1](ct)[0])
  np.testing.assert_allclose(jax.jit(input_gradient(patches_conv))(w, ct),
                             jax.jit(input_gradient(conv))(w, ct), rtol=1e-4, atol=1e-4)
  flop = 2 * BATCH * 28 * 28 * 32 * 9
  header('first conv 3x3 SAME, (128, 28, 28, 1) -> 32 channels')
  report('forward (NHWC, HWIO)', conv, x, w, reps=reps, flop=flop)
  report('input gradient (JAX rule: a conv with 1 output channel)',
         input_gradient(conv), w, ct, reps=reps, flop=flop)
  report('input gradient, patches form (matmul + 9 shifted adds)',
         input_gradient(patches_conv), w, ct, reps=reps, flop=flop)
  block = lambda conv_fn: (lambda x, w: reshape_pool(jax.nn.relu(conv_fn(x, w))))
  pooled_ct = ct[:, ::2, ::2]
  for name, conv_fn in (('JAX rule', conv), ('patches form', patches_conv)):
    report(f'conv -> ReLU -> max-pool, input gradient, {name}',
           lambda w, ct, conv_fn=conv_fn: jax.vjp(lambda x: block(conv_fn)(x, w), x)[1](ct)[0],
           w, pooled_ct, reps=reps, flop=flop)


def section_precision(rng, reps):
  params, (images, labels) = cnn_params(rng), batch(rng)
  header('CNN forward+backward, reduce_window pool, by default_matmul_precision')
  for precision in ('bfloat16', 'tensorfloat32', 'float32'):
    with jax.default_matmul_precision(precision):
      report(f'{precision}', jax.grad(lambda p, x, y: cnn_loss(p, x, y, reduce_window_pool)),
             params, images, labels, reps=reps)


def section_widths(rng, reps):
  images, labels = batch(rng)
  header('CNN forward+backward, reshape pool, other widths / hidden sizes')
  for widths, hidden in (((32, 64), 256), ((32, 64), 128), ((16, 32), 256), ((32, 32), 256),
                         ((64, 64), 256)):
    report(f'widths {widths}, hidden {hidden}',
           jax.grad(lambda p, x, y: cnn_loss(p, x, y, reshape_pool)),
           cnn_params(rng, widths, hidden), images, labels, reps=reps)


SECTIONS = {'pool': section_pool, 'conv': section_conv, 'input_conv': section_input_conv,
            'model': section_model,
            'precision': section_precision, 'widths': section_widths}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--reps', type=int, default=10)
  parser.add_argument('--sections', default=','.join(SECTIONS))
  parser.add_argument('--flag_variants', action='store_true')
  args = parser.parse_args()
  print(f'jax {jax.__version__}, jaxlib {metadata.version("jaxlib")}, {platform.platform()}, '
        f'{platform.processor() or "?"}, {os.cpu_count()} CPUs, {jax.devices()}, '
        f'NPROC={os.environ.get("NPROC")}, XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  rng = np.random.default_rng(0)
  for name in args.sections.split(','):
    SECTIONS[name](rng, args.reps)
  if args.flag_variants:
    for flags, variables in FLAG_VARIANTS:
      env = {**os.environ, **variables,
             'XLA_FLAGS': f'{os.environ.get("XLA_FLAGS", "")} {flags}'.strip()}
      settings = ' '.join([*(f'{k}={v}' for k, v in variables.items()), f'XLA_FLAGS={flags!r}'])
      print(f'\n=== child process, {settings}', flush=True)
      subprocess.run([sys.executable, __file__, f'--reps={args.reps}',
                      '--sections=conv,model'], env=env, check=True)


if __name__ == '__main__':
  main()
