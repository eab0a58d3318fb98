"""The check registry.

An area registers a function for one or more catalog item ids::

    @check("A4.2(1)", "A4.2(2)", name="weights.registry")
    def registry_accounted(ctx: CheckContext, item_id: str) -> CheckResult: ...

The function reads live state through ``ctx.session`` and returns a verdict with reasons and
evidence references. The assessment engine knows no area by name: :func:`load_area_checks`
imports every ``gpaisec.<area>.checks`` module it finds, and each registers itself on import.
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from sqlalchemy.orm import Session

import gpaisec
from gpaisec.compliance.verdicts import CheckResult

__all__ = [
    "CheckContext",
    "CheckFn",
    "RegisteredCheck",
    "check",
    "checks_for",
    "load_area_checks",
    "unregister",
]


@dataclass(frozen=True)
class CheckContext:
    session: Session
    now: dt.datetime


CheckFn: TypeAlias = Callable[[CheckContext, str], CheckResult]


@dataclass(frozen=True)
class RegisteredCheck:
    name: str
    item_ids: tuple[str, ...]
    fn: CheckFn


_REGISTRY: dict[str, list[RegisteredCheck]] = {}
_NAMES: set[str] = set()


def check(*item_ids: str, name: str) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as the check named ``name`` for ``item_ids``."""
    if not item_ids:
        raise ValueError("a check must name at least one catalog item")

    def register(fn: CheckFn) -> CheckFn:
        if name in _NAMES:
            return fn  # module re-imported; keep the first registration
        _NAMES.add(name)
        reg = RegisteredCheck(name=name, item_ids=tuple(item_ids), fn=fn)
        for item in item_ids:
            _REGISTRY.setdefault(item, []).append(reg)
        return fn

    return register


def unregister(name: str) -> None:
    """Remove the check named ``name`` (for tests and for areas that replace a check)."""
    _NAMES.discard(name)
    for item, regs in list(_REGISTRY.items()):
        kept = [r for r in regs if r.name != name]
        if kept:
            _REGISTRY[item] = kept
        else:
            del _REGISTRY[item]


def checks_for(item_id: str) -> list[RegisteredCheck]:
    return list(_REGISTRY.get(item_id, ()))


def registered_items() -> set[str]:
    return set(_REGISTRY)


def load_area_checks() -> list[str]:
    """Import every ``gpaisec.<area>.checks`` module; return the module names loaded."""
    loaded = []
    for info in pkgutil.iter_modules(gpaisec.__path__):
        if not info.ispkg or info.name in {"compliance", "cli", "store", "catalog"}:
            continue
        name = f"gpaisec.{info.name}.checks"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        loaded.append(name)
    return loaded
