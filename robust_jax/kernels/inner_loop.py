"""The fixed-length inner loop of the weight-gradient methods (AMP, DropAttack).

    inner_loop(num_steps, body, init) == jax.lax.fori_loop(0, num_steps, body, init)

On GPU/TPU it is that `fori_loop`: compile time does not grow with the step count. On the CPU
backend the loop is unrolled in Python instead, because XLA:CPU (jax 0.10.2) cannot give a
convolution's weight gradient its fast layout inside a while-loop body and falls back to a generic
kernel: measured on the Fashion-MNIST CNN, one forward-backward pass with weight gradients takes
2.85 s inside a `fori_loop` (rolled or `unroll=True`) and 0.36 s outside it. These loops have 1-5
steps, so unrolling costs little compile time. Loops that only take input gradients (the attacks)
do not hit this and stay `fori_loop`s.

The choice is `lax.platform_dependent`, made when a jitted program is lowered for its platform (not
by the default backend at trace time), so a program compiled for another device than the default
one still gets its own loop (called eagerly, it is the default device's). Both versions are
traced; a program for one platform keeps one of them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax

__all__ = ['inner_loop']

Carry = TypeVar('Carry')


def inner_loop(num_steps: int, body: Callable[[int, Carry], Carry], init: Carry,
               unroll: bool | None = None) -> Carry:
  """`body(t, carry)` applied for t = 0 .. num_steps - 1; `unroll=None` unrolls on CPU only."""

  def rolled(carry: Carry) -> Carry:
    return jax.lax.fori_loop(0, num_steps, body, carry)

  def unrolled(carry: Carry) -> Carry:
    for step in range(num_steps):
      carry = body(step, carry)
    return carry

  if unroll is None:
    return jax.lax.platform_dependent(init, cpu=unrolled, default=rolled)
  return unrolled(init) if unroll else rolled(init)
