"""Atomic training checkpoints, so a crashed or killed run resumes where it stopped.

A checkpoint is a folder `step-00000050/` holding the weights (safetensors, encoder and MLM head),
the optimizer and scheduler state (`torch.save`, loaded back with `weights_only=True`) and
`state.json` (step, losses, elapsed time, the run's fingerprint). It is written under a temporary
name and renamed into place, and rename is atomic: a `step-*` folder is always complete, and a
kill mid-write leaves only a `.tmp-*` folder that the next run deletes.

Randomness needs no saved state: every step draws from generators seeded by (seed, step), and the
batch streams are replayed from the seed (see loop.py), so resuming gives the same run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

PREFIX = "step-"
TMP_PREFIX = ".tmp-"


def _step_of(path: Path) -> int:
    return int(path.name[len(PREFIX):])


def checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and p.name[len(PREFIX):].isdigit() and (p / "state.json").is_file()]
    return sorted(found, key=_step_of)


def latest_checkpoint(directory: Path) -> Path | None:
    found = checkpoints(directory)
    return found[-1] if found else None


def remove_partial(directory: Path) -> None:
    """Delete leftovers of a write that was killed half-way."""
    if directory.is_dir():
        for p in directory.iterdir():
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(directory: Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                    state: dict, keep: int = 1) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{step:08d}"
    if final.exists():  # already saved at this step (e.g. cancelled right after a checkpoint)
        return final
    tmp = directory / f"{TMP_PREFIX}{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))  # handles the tied decoder/embedding weights
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))
    _fsync_dir(tmp)
    os.replace(tmp, final)
    for old in checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict:
    device = next(model.parameters()).device
    load_model(model, str(path / "model.safetensors"), device=str(device))
    saved = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return json.loads((path / "state.json").read_text())


def _fsync_dir(folder: Path) -> None:
    # Flush file contents before the rename, so a power cut cannot leave a renamed but empty file.
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
