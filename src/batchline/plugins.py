"""One lazy registry mechanism for every plug-in point: name -> "module:attr", imported on first use."""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from batchline.errors import InvalidArgument

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, table: dict[str, str], hints: dict[str, str] | None = None):
        self.kind = kind
        self.table = dict(table)
        self.hints = hints or {}

    def names(self) -> list[str]:
        return sorted(self.table)

    def get(self, name: str) -> T:
        target = self.table.get(name)
        if target is None:
            raise InvalidArgument(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = self.hints.get(name)
            extra = f"; install it with `pip install {hint}`" if hint else ""
            raise InvalidArgument(f"{self.kind} {name!r} needs a missing package ({exc}){extra}") from exc
        return getattr(module, attr)
