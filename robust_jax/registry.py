"""Small name -> component registries, each entry carrying the schema of its config section.

A config section such as ``config.weight_perturbation = {'name': 'amp', 'epsilon': 0.5, ...}`` is
resolved by looking ``name`` up in the matching registry; the entry's schema validates the other keys
and its builder turns the section into a function. New methods register themselves in their own module.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from robust_jax import config_schema

Builder = TypeVar('Builder', bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Entry(Generic[Builder]):
  build: Builder
  schema: config_schema.Schema
  # check(config) raises ConfigError when this component does not make sense with the rest of the
  # config (e.g. TRADES with an input adversary); None when every combination is fine.
  check: Callable[[Any], None] | None = None


class Registry(Generic[Builder]):
  """Maps a component name to its builder and config schema."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, Entry[Builder]] = {}

  def register(self, name: str, schema: config_schema.Schema | None = None,
               check: Callable[[Any], None] | None = None):
    """Decorator: registers `build` under `name`.

    `schema` lists the section's keys besides `name`; `check(config)` cross-checks the whole config.
    """
    def decorator(build: Builder) -> Builder:
      if name in self._entries:
        raise ValueError(f'{self.kind} {name!r} is registered twice')
      self._entries[name] = Entry(build, dict(schema or {}), check)
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

  def validate(self, prefix: str, section: Any) -> Entry[Builder]:
    """Validates a section ``{'name': ..., **options}`` and returns its entry."""
    if 'name' not in section:
      raise config_schema.ConfigError(f'{prefix}.name: missing required key')
    entry = self.lookup(f'{prefix}.name', section['name'])
    options = {k: v for k, v in section.items() if k != 'name'}
    config_schema.check_section(prefix, options, entry.schema)
    return entry
