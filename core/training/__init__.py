"""Continued pre-training of a local encoder: MLM, DeCLUTR and the metadata (SupCon) objective.

Pure logic, no store: `train()` takes texts (and labels) and writes a sentence-transformers folder.
Objectives register themselves here by name, so the loop, the CLI and the pages share one list.

    from core.training import train, get_objective, OBJECTIVES
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T", bound=type)

#: objective name -> class (filled by the `@register` decorators in mlm.py, declutr.py, metadata.py)
OBJECTIVES: dict[str, type] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make an objective available under `name`."""

    def deco(cls: T) -> T:
        if name in OBJECTIVES and OBJECTIVES[name] is not cls:
            raise ValueError(f"objective {name!r} registered twice")
        cls.name = name
        OBJECTIVES[name] = cls
        return cls

    return deco


def get_objective(name: str) -> type:
    """The objective class registered as `name` (ValueError lists the known ones)."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVES)}") from None


# Imported last: each module registers its objective through `register` defined above.
from core.training import declutr, metadata, mlm  # noqa: E402,F401
from core.training.loop import TrainResult, train  # noqa: E402

__all__ = ["OBJECTIVES", "register", "get_objective", "train", "TrainResult"]
