"""Training settings as the pages and the CLI need them before any model loads: one line about each
objective, defaults that suit the device, and the checks a run's settings must pass."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from core.options import PretrainOptions

OBJECTIVE_NAMES: tuple[str, ...] = next(f for f in fields(PretrainOptions) if f.name == "objective").metadata["choices"]
OBJECTIVE_HELP = {
    "mlm": "Masked-language modelling: learns the vocabulary and phrasing of your notes.",
    "declutr": "DeCLUTR: passages of the same note are pulled together, so the encoder learns what a note "
               "is about without any labels. Compare it with its base on the Few-shot page before relying on it.",
    "metadata": "Metadata-contrastive: notes sharing a label (e.g. specialty) are pulled together, "
                "giving clearer clusters of that label.",
}
# (steps, batch size, max length): a few minutes on a laptop CPU, ~10 minutes on one GPU. DeCLUTR
# feeds 6 spans per note (2 anchors with 2 positives each), so its batches hold fewer notes.
_SUGGESTED = {"cpu": {"mlm": (300, 16, 128), "metadata": (300, 16, 128), "declutr": (150, 8, 128)},
              "cuda": {"mlm": (2000, 64, 256), "metadata": (2000, 64, 256), "declutr": (800, 32, 256)}}


def suggested_options(device: str, objective: str = "mlm") -> dict:
    steps, batch_size, max_length = _SUGGESTED["cuda" if device == "cuda" else "cpu"][objective]
    return {"steps": steps, "batch_size": batch_size, "max_length": max_length, "lr": 5e-5}


def longest_input(base_path: str | Path) -> int:
    """Most tokens the base encoder takes (its position embeddings; RoBERTa reserves 2 of them)."""
    config_file = Path(base_path) / "config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    return int(config.get("max_position_embeddings", 512)) - (2 if config.get("model_type") == "roberta" else 0)


def check_options(opts: PretrainOptions, base_path: str | Path) -> None:
    """Raise ValueError, in words a user can act on, for settings no run could use."""
    if opts.objective not in OBJECTIVE_NAMES:
        raise ValueError(f"unknown objective '{opts.objective}'; choose one of {', '.join(OBJECTIVE_NAMES)}")
    if opts.steps < 1 or opts.batch_size < 1 or opts.grad_accum < 1 or opts.lr <= 0:
        raise ValueError("steps, batch size and gradient accumulation must be 1 or more, the learning rate above 0")
    if opts.nproc < 1 or opts.batch_size % opts.nproc:
        raise ValueError(f"the batch size ({opts.batch_size}) must divide evenly over the {opts.nproc} "
                         "training processes")
    if opts.objective == "metadata" and opts.batch_size < 4:
        raise ValueError("the metadata objective needs a batch size of 4 or more (2 labels x 2 notes)")
    if not 8 <= opts.max_length <= longest_input(base_path):
        raise ValueError(f"max length must be between 8 and {longest_input(base_path)} tokens for this base encoder")
