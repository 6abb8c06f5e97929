"""Training settings as the pages and the CLI need them before any model loads: defaults that suit
the device and the objective, and the checks a run's settings must pass."""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import UserError
from core.options import PretrainOptions
from core.training.registry import get_objective


def suggested_options(device: str, objective: str = "mlm") -> dict:
    """{steps, batch_size, max_length, lr} that suit `objective` on `device`."""
    return get_objective(objective).suggested_for("cuda" if device == "cuda" else "cpu").as_dict()


def longest_input(base_path: str | Path) -> int:
    """Most tokens the base encoder takes (its position embeddings; RoBERTa reserves 2 of them)."""
    config_file = Path(base_path) / "config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    return int(config.get("max_position_embeddings", 512)) - (2 if config.get("model_type") == "roberta" else 0)


def check_options(opts: PretrainOptions, base_path: str | Path) -> None:
    """Raise UserError, in words a user can act on, for settings no run could use."""
    objective = get_objective(opts.objective)
    if opts.steps < 1 or opts.batch_size < 1 or opts.grad_accum < 1 or opts.lr <= 0:
        raise UserError("steps, batch size and gradient accumulation must be 1 or more, the learning rate above 0")
    if opts.nproc < 1 or opts.batch_size % opts.nproc:
        raise UserError(f"the batch size ({opts.batch_size}) must divide evenly over the {opts.nproc} "
                        "training processes")
    if opts.batch_size < objective.min_batch:
        raise UserError(f"the {objective.name} objective needs a batch size of {objective.min_batch} or more")
    if not 8 <= opts.max_length <= longest_input(base_path):
        raise UserError(f"max length must be between 8 and {longest_input(base_path)} tokens for this base encoder")
