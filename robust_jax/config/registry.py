"""Small name -> component registries, each entry carrying the schema of its config section.

A config section such as ``config.weight_perturbation = {'name': 'amp', 'epsilon': 0.5, ...}`` is
resolved by looking ``name`` up in the matching registry; the entry's schema validates the other keys
and its builder turns the section into a function. Each entry also carries a default value for every
key of its schema, so switching a section to another component (``--config.adversary.name=pgd``)
yields a complete, valid section. New methods register themselves in their own module.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from robust_jax.config import schema as config_schema

__all__ = ['Entry', 'Registry']

Builder = TypeVar('Builder', bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Entry(Generic[Builder]):
  build: Builder
  schema: config_schema.Schema
  defaults: Mapping[str, Any]  # a value for every key of `schema`
  # check(config) raises ConfigError when this component does not make sense with the rest of the
  # config (e.g. TRADES with an input adversary); None when every combination is fine.
  check: Callable[[Any], None] | None = None
  # the keys of `schema` whose values enter the compiled step only as numbers, so that replicas
  # of one run may take different values of them in one program (`robust_jax.training.replicas`)
  sweepable: tuple[str, ...] = ()


class Registry(Generic[Builder]):
  """Maps a component name to its builder and config schema."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, Entry[Builder]] = {}

  def register(self, name: str, schema: config_schema.Schema | None = None,
               check: Callable[[Any], None] | None = None,
               defaults: Mapping[str, Any] | None = None, sweepable: tuple[str, ...] = ()):
    """Decorator: registers `build` under `name`.

    `schema` lists the section's keys besides `name`, `defaults` a value for each of them;
    `check(config)` cross-checks the whole config; `sweepable` names the float keys that `build`
    only passes on as numbers (never branches on, never uses as a shape), so that they may be
    traced values.
    """
    schema, defaults = dict(schema or {}), dict(defaults or {})
    if set(defaults) != set(schema):
      raise ValueError(f'{self.kind} {name!r}: defaults must give exactly the schema keys '
                       f'{sorted(schema)}, got {sorted(defaults)}')
    if not set(sweepable) <= set(schema):
      raise ValueError(f'{self.kind} {name!r}: sweepable keys {sorted(set(sweepable) - set(schema))}'
                       ' are not schema keys')

    def decorator(build: Builder) -> Builder:
      if name in self._entries:
        raise ValueError(f'{self.kind} {name!r} is registered twice')
      self._entries[name] = Entry(build, schema, defaults, check, tuple(sweepable))
      return build
    return decorator

  def names(self) -> list[str]:
    return sorted(self._entries)

  def lookup(self, key: str, name: Any) -> Entry[Builder]:
    """Returns the entry for `name`; `key` is the config path shown in the error message."""
    if name not in self._entries:
      raise config_schema.ConfigError(
          f'{key}={name!r}: unknown {self.kind}; choose one of: {", ".join(self.names())}')
    return self._entries[name]

  def default_section(self, key: str, name: Any) -> dict[str, Any]:
    """``{'name': name, **defaults}``: the complete section of component `name` with its defaults.

    `key` is the config path shown if `name` is unknown.
    """
    return {'name': name, **self.lookup(key, name).defaults}

  def validate(self, prefix: str, section: Any) -> Entry[Builder]:
    """Validates a section ``{'name': ..., **options}`` and returns its entry."""
    if 'name' not in section:
      raise config_schema.ConfigError(f'{prefix}.name: missing required key')
    entry = self.lookup(f'{prefix}.name', section['name'])
    options = {k: v for k, v in section.items() if k != 'name'}
    config_schema.check_section(prefix, options, entry.schema)
    return entry
