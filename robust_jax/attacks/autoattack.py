"""AutoAttack (Croce & Hein, ICML 2020): a fixed sequence of attacks, a worst case per example.

    x_adv, broken_by = attacks.autoattack(logits_fn, images, labels, key, epsilon=8/255)
    attacks.autoattack_names('standard')[broken_by[i]]  # what broke example i (-1: robust)

Versions, as the reference's `set_version` (fra31/auto-attack, autoattack.py):

* 'standard': APGD-CE (1 run), APGD-T (9 target classes, at most C - 1), FAB-T (9 target classes),
  Square (5,000 queries); 100 iterations for APGD and FAB.
* 'plus': APGD-CE and APGD-DLR (5 restarts each), FAB (5 restarts), Square, APGD-T, FAB-T.
* 'rand', for randomised models: APGD-CE and APGD-DLR, each gradient averaged over 20 draws of
  the model's randomness (EOT). Here `logits_fn(images, key)` takes a PRNG key that drives its
  randomness (e.g. `model.apply(..., train=True, key=key)` with dropout on); the other versions
  call `logits_fn(images)`. A model that gives the same logits for two keys gets a warning.

Each attack runs only on the examples still robust, and an example keeps the first adversarial
image that fools the model (`sequence.run_sequence`, as the reference's `run_standard_evaluation`).
As in the reference, APGD-T and FAB-T run one target class at a time, and APGD with restarts one
restart at a time, each on the examples still robust after the previous one: after APGD-CE
typically few examples are left, and the first targets break most of those, so the later targets
run on fewer still. The still-robust examples are compacted on the host between these stages and
padded to a few size classes (`sequence.py`); the target rank and restart index are traced, so an
attack compiles once per size class for all its stages. Untargeted FAB's restarts ('plus') run in
one compiled loop that drops the examples already broken only from the loop's condition. With
`sharding` (e.g. `NamedSharding(mesh, P('data'))`) every chunk is split over the devices like the
train step's batches. Each attack's output is projected onto B_ε(x) ∩ [0, 1] and kept only where
the model then misclassifies it (for 'rand': one fresh draw of the model, as the reference).
Random draws depend on the chunking (`batch_size`, the device count), as the reference's depend on
its `bs`.

Deliberate differences from the reference, each kept on purpose and documented where it lives:
(1) APGD's first checkpoint counts its loss increases against the starting loss (`apgd`; the
reference compares the first step with an unset zero); (2) every attack's output is projected back
onto B_ε(x) ∩ [0, 1] before it is counted, so a point outside the threat model by float rounding
never counts as an adversarial example; (3) random draws are keyed per attack k and chunk c
(`fold_in(fold_in(key, k), c)`; `sequence.run_sequence`), inside APGD-T per target class
(`fold_in(key, rank - 2)`), inside APGD per restart r (`fold_in(key, r)` with restarts) and inside
FAB per run (target class × restart), where the reference draws everything from one torch
generator: results agree in distribution, not draw for draw.

Time: each attack's seconds (wall time, compilation included) are in `SequenceResult.seconds`
(`autoattack_sequence`); `robust_jax.evaluate --preset=autoattack` reports them.
"""
from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax.attacks import arguments, threat_model
from robust_jax.attacks.apgd import apgd, apgd_targeted
from robust_jax.attacks.fab import fab
from robust_jax.attacks.pgd import LogitsFn
from robust_jax.attacks.sequence import CLEAN, SequenceResult, run_sequence
from robust_jax.attacks.square import square

__all__ = ['AUTOATTACK_VERSIONS', 'AutoAttackSettings', 'autoattack', 'autoattack_names',
           'autoattack_sequence']

AUTOATTACK_VERSIONS = {
    'standard': ('apgd-ce', 'apgd-t', 'fab-t', 'square'),
    'plus': ('apgd-ce', 'apgd-dlr', 'fab', 'square', 'apgd-t', 'fab-t'),
    'rand': ('apgd-ce', 'apgd-dlr'),
}


@dataclasses.dataclass(frozen=True)
class AutoAttackSettings:
  """Budgets; the defaults are the reference's. `None` restarts take the version's (1; 'plus': 5).

  Shrink them for quick checks, e.g. `AutoAttackSettings(apgd_steps=5, square_queries=20)`.
  """
  apgd_steps: int = 100
  apgd_restarts: int | None = None
  num_target_classes: int = 9
  fab_steps: int = 100
  fab_restarts: int | None = None
  square_queries: int = 5000
  eot_samples: int = 20

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if value is not None:
        arguments.check_count(field.name, value)


def autoattack_names(version: str = 'standard') -> tuple[str, ...]:
  """('clean', attack 1, ...): what `broken_by` indexes (0: misclassified without an attack)."""
  arguments.check_choice('version', version, tuple(AUTOATTACK_VERSIONS))
  return (CLEAN, *AUTOATTACK_VERSIONS[version])


def _restarts(settings_value, version):
  return settings_value or (5 if version == 'plus' else 1)


def _stage_count(name: str, version: str, settings: AutoAttackSettings, num_classes: int) -> int:
  """How many stages attack `name` runs, each on the examples still robust (module docstring)."""
  if name in ('apgd-t', 'fab-t'):
    return min(settings.num_target_classes, num_classes - 1)
  if name in ('apgd-ce', 'apgd-dlr'):
    return _restarts(settings.apgd_restarts, version)
  return 1


def _attack_fn(name: str, version: str, settings: AutoAttackSettings):
  """fn(logits_fn, images, labels, key, epsilon, norm, stage) -> adversarial: stage `stage`
  (a traced int32 scalar) of the AutoAttack attack `name`."""
  eot = settings.eot_samples if version == 'rand' else None
  one_run = _restarts(settings.apgd_restarts, version) == 1

  def apgd_untargeted(loss):
    def run(f, x, y, k, e, n, stage):  # restart `stage`; a single run keeps `apgd`'s own keys
      key = k if one_run else jax.random.fold_in(k, stage)
      return apgd(f, x, y, key, epsilon=e, norm=n, loss=loss, num_steps=settings.apgd_steps,
                  eot_samples=eot)
    return run

  return {
      'apgd-ce': apgd_untargeted('ce'),
      'apgd-dlr': apgd_untargeted('dlr'),
      'apgd-t': lambda f, x, y, k, e, n, stage: apgd_targeted(
          f, x, y, k, epsilon=e, norm=n, num_steps=settings.apgd_steps,
          target_class_rank=stage + 2),
      'fab': lambda f, x, y, k, e, n, stage: fab(
          f, x, y, k, epsilon=e, norm=n, restarts=_restarts(settings.fab_restarts, version),
          num_steps=settings.fab_steps)[0],
      'fab-t': lambda f, x, y, k, e, n, stage: fab(
          f, x, y, k, epsilon=e, norm=n, targeted=True, target_class_rank=stage + 2,
          num_steps=settings.fab_steps)[0],
      'square': lambda f, x, y, k, e, n, stage: square(f, x, y, k, epsilon=e, norm=n,
                                                       num_queries=settings.square_queries),
  }[name]


@functools.partial(jax.jit, static_argnames=('name', 'version', 'norm', 'settings'))
def _attack(logits_fn, images, labels, key, epsilon, stage, *, name, version, norm, settings):
  """Stage `stage` (traced) of one attack of the sequence on one chunk, projected onto
  B_ε(images) ∩ [0, 1]."""
  found = _attack_fn(name, version, settings)(logits_fn, images, labels, key, epsilon, norm, stage)
  return threat_model.project(found, images, epsilon, norm)


@functools.partial(jax.jit, static_argnames=('version',))
def _classify(logits_fn, images, key, *, version):
  logits = logits_fn(images, key) if version == 'rand' else logits_fn(images)
  return jnp.argmax(logits, -1)


def _one_draw(logits_fn, version) -> LogitsFn:
  """images -> logits: `logits_fn`, or for 'rand' one draw of `logits_fn(images, key)`."""
  return (lambda x: logits_fn(x, jax.random.key(0))) if version == 'rand' else logits_fn


def _warn_if_deterministic(logits_fn, images) -> None:
  sample = jnp.asarray(images[:8])
  first, second = (logits_fn(sample, jax.random.key(seed)) for seed in (1, 2))
  if np.array_equal(np.asarray(first), np.asarray(second)):
    warnings.warn("version='rand': logits_fn(images, key) gave the same logits for two keys; the "
                  "model looks deterministic (use version='standard')", stacklevel=4)


def autoattack_sequence(logits_fn, images, labels, key: jax.Array, epsilon, norm: str = 'linf',
                        version: str = 'standard', *,
                        settings: AutoAttackSettings = AutoAttackSettings(),
                        batch_size: int = 500,
                        sharding: jax.sharding.Sharding | None = None) -> SequenceResult:
  """`autoattack` plus each attack's seconds (`SequenceResult`); arguments as `autoattack`."""
  return _sequence(logits_fn, images, labels, key, epsilon, norm, version, settings, batch_size,
                   sharding)


def _sequence(logits_fn, images, labels, key, epsilon, norm, version, settings, batch_size,
              sharding) -> SequenceResult:
  """`autoattack_sequence`; its warning names the caller of the public function (stacklevel 4)."""
  arguments.check_choice('version', version, tuple(AUTOATTACK_VERSIONS))
  arguments.check_choice('norm', norm, threat_model.NORMS)
  arguments.check_number('epsilon', epsilon, 0.0)
  arguments.check_key(key)
  arguments.check_count('batch_size', batch_size)
  if not isinstance(settings, AutoAttackSettings):
    raise TypeError(f'settings={type(settings).__name__}: must be an AutoAttackSettings')
  if not isinstance(logits_fn, jax.tree_util.Partial):
    logits_fn = jax.tree_util.Partial(logits_fn)  # a pytree: jit takes it as an argument
  num_classes = arguments.check_inputs(_one_draw(logits_fn, version), images, labels)
  needed = 3 if version == 'rand' else 4
  if num_classes < needed:
    raise ValueError(f"version={version!r}: needs at least {needed} classes (its DLR losses use "
                     f"z_π{needed}); logits_fn gives C = {num_classes}")
  if version == 'rand':
    _warn_if_deterministic(logits_fn, images)
  epsilon = jnp.float32(epsilon)
  def stages(name):
    attack = functools.partial(_attack, logits_fn, epsilon=epsilon, name=name, version=version,
                               norm=norm, settings=settings)
    return [functools.partial(attack, stage=jnp.int32(stage))
            for stage in range(_stage_count(name, version, settings, num_classes))]

  sequence = [(name, stages(name)) for name in AUTOATTACK_VERSIONS[version]]
  classify = lambda x, k: _classify(logits_fn, x, k, version=version)
  return run_sequence(classify, images, labels, key, sequence, batch_size=batch_size,
                      sharding=sharding)


def autoattack(logits_fn, images, labels, key: jax.Array, epsilon, norm: str = 'linf',
               version: str = 'standard', *, settings: AutoAttackSettings = AutoAttackSettings(),
               batch_size: int = 500, sharding: jax.sharding.Sharding | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
  """(adversarial images (N, ...), broken_by (N,) int) of the AutoAttack `version`.

  logits_fn: images -> logits (B, C), or (images, key) -> logits for version 'rand' (module
  docstring); a `jax.tree_util.Partial` holding the weights avoids baking them into the compiled
  attacks. images (N, ...) in [0, 1], labels (N,) the true classes, on the host or a device;
  epsilon in pixel units; norm 'linf' or 'l2'. broken_by[i] indexes `autoattack_names(version)`:
  0 = misclassified without an attack, k = broken first by attack k, -1 = robust to all. Runs
  outside `jax.jit` (it compacts on the host); every attack is jitted per chunk size.
  """
  result = _sequence(logits_fn, images, labels, key, epsilon, norm, version, settings, batch_size,
                     sharding)
  return result.adversarial, result.broken_by
