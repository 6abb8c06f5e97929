"""Continued pre-training of a local encoder: MLM, DeCLUTR and the metadata (SupCon) objective.

Pure logic, no store: `train()` takes texts (and labels) and writes a sentence-transformers folder.
Objectives register themselves here by name, so the loop, the CLI and the pages share one list.
The exception is worker.py, which runs the queued jobs of core/jobs.py (store in, encoder out).

    from core.training import train, get_objective, OBJECTIVES

`train`, `TrainResult` and `OBJECTIVES` load torch and the objectives on first use, so the light
modules here (settings, progress, devicelock) import quickly: `notespace jobs` needs no torch.
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T", bound=type)

# objective name -> class (filled by the `@register` decorators in mlm.py, declutr.py, metadata.py)
_OBJECTIVES: dict[str, type] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make an objective available under `name`."""

    def deco(cls: T) -> T:
        if name in _OBJECTIVES and _OBJECTIVES[name] is not cls:
            raise ValueError(f"objective {name!r} registered twice")
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls

    return deco


def _objectives() -> dict[str, type]:
    from core.training import declutr, metadata, mlm  # noqa: F401  (importing registers them)

    return _OBJECTIVES


def get_objective(name: str) -> type:
    """The objective class registered as `name` (ValueError lists the known ones)."""
    try:
        return _objectives()[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(_OBJECTIVES)}") from None


def __getattr__(name: str):
    if name == "OBJECTIVES":
        return _objectives()
    if name in ("train", "TrainResult"):
        from core.training import loop

        _objectives()
        return getattr(loop, name)
    raise AttributeError(f"module 'core.training' has no attribute {name!r}")


__all__ = ["OBJECTIVES", "register", "get_objective", "train", "TrainResult"]
