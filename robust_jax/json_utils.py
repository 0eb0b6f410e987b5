"""JSON files that any JSON parser reads: non-finite floats (NaN, ±inf) are written as null.

`json.dump` writes them as the bare tokens NaN / Infinity, which are not JSON.
"""
from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
  """`value` with every non-finite float in its dicts, lists and tuples replaced by None."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {key: finite_or_none(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_none(item) for item in value]
  return value


def dump(value: Any, path: str) -> None:
  """Writes `value` to `path` as indented JSON, non-finite floats as null."""
  with open(path, 'w') as f:
    json.dump(finite_or_none(value), f, indent=2, allow_nan=False)


__all__ = ['dump', 'finite_or_none']
