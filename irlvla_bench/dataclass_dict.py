"""Frozen config dataclasses back from their ``dataclasses.asdict`` form (JSON, checkpoints).

One rebuild for every config of the project (VLA, RWM, PPO ``Args``, labelling): nested dataclasses are
recognised by their fields' defaults, JSON lists become tuples again (at any depth), and a field the class does
not have is an error naming the class, so a checkpoint from another version fails loudly instead of silently
dropping a setting.
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_dict(kind: type[T], data: dict[str, Any]) -> T:
    """``kind(**data)`` with nested dataclass fields rebuilt and lists turned back into tuples."""
    known = {f.name: f for f in fields(kind)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields: {unknown}")
    values = {}
    for name, value in data.items():
        field = known[name]
        default = field.default_factory() if field.default_factory is not MISSING else field.default
        values[name] = dataclass_from_dict(type(default), value) if is_dataclass(default) else _tuples(value)
    return kind(**values)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
