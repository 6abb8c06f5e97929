"""Continued pre-training of a local encoder: MLM, DeCLUTR and the metadata (SupCon) objective.

Pure logic, no store: `train()` takes texts (and labels) and writes a sentence-transformers folder;
core/jobs runs it for queued jobs. Objectives are modules of objectives/, found by registry.py, so
the loop, the jobs, the CLI and the pages share one list.

    from core.training import train, TrainResult
    from core.training.registry import get_objective, objectives

`train` and `TrainResult` load torch on first use, so the light modules here (registry, settings,
progress) import quickly: `notespace jobs` needs no torch.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name in ("train", "TrainResult"):
        from core.training import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'core.training' has no attribute {name!r}")


__all__ = ["train", "TrainResult"]
