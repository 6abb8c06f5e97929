"""The objective registry: the one extension point of training.

Every module in core/training/objectives/ defines an `Objective` subclass under `@register("name")`
with what the rest of the house needs to know about it (core/training/objective.py): its help text,
whether it needs a label column, suggested settings per device, its smallest batch and a check of the
corpus. The loop, the jobs, the CLI's `--objective` choices and the Pretrain page's widgets all read
this registry, so adding an objective is adding one module there (plus its tests).

Light to import: the objective modules (and torch) load when the registry is first read.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from core.errors import UserError

T = TypeVar("T", bound=type)
PACKAGE = "core.training.objectives"
_OBJECTIVES: dict[str, type] = {}  # name -> Objective subclass
_found = False


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make an objective available under `name`."""

    def deco(cls: T) -> T:
        if name in _OBJECTIVES and _OBJECTIVES[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"objective {name!r} registered twice")
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls

    return deco


def unregister(name: str) -> None:
    """Forget an objective (tests that register a throwaway one)."""
    _OBJECTIVES.pop(name, None)


def objectives() -> dict[str, type]:
    """Every registered objective by name, in their declared `order` (the CLI's and the page's)."""
    global _found
    if not _found:
        package = importlib.import_module(PACKAGE)
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            importlib.import_module(f"{PACKAGE}.{module.name}")
        _found = True
    return dict(sorted(_OBJECTIVES.items(), key=lambda item: item[1].order))


def get_objective(name: str) -> type:
    """The objective class registered as `name` (UserError lists the known ones)."""
    try:
        return objectives()[name]
    except KeyError:
        raise UserError(f"unknown objective '{name}'; choose one of {', '.join(objectives())}") from None


class ObjectiveNames(Sequence):
    """The registered names, read when used: the CLI's `--objective` choices, without loading the
    objectives (and torch) for every other verb."""

    def __getitem__(self, index):
        return list(objectives())[index]

    def __len__(self) -> int:
        return len(objectives())

    def __iter__(self) -> Iterator[str]:
        return iter(list(objectives()))
