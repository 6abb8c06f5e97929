"""Which device runs the work: the one place that turns "auto" into cuda, mps or cpu.

torch is imported only when asked, so light callers (the jobs queue, the CLI) stay quick to load.
"""

from __future__ import annotations

from core.errors import UserError


def resolve_device(requested: str = "auto") -> str:
    """'cuda', 'mps' or 'cpu': the fastest available for "auto", else the one asked for if it exists."""
    import torch

    if requested != "auto":
        if requested == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but no CUDA GPU is available; use auto or cpu")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
