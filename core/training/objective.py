"""What every training objective provides, plus the small tensor helpers they share.

An objective declares what the CLI, the pages and the jobs need before any model loads (`help`,
`needs_label`, `suggested` settings per device, `min_batch`, `check_corpus`), and owns its data view
(which documents it can use and how they are cut), its endless batch stream, and its loss. The loop
only calls `prepare`, `index_batches` and `compute_loss`. Register a subclass with
`core.training.registry.register` in a module of core/training/objectives/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from core.errors import UserError
from core.options import PretrainOptions


@dataclass(frozen=True)
class Suggested:
    """Settings that suit a device: a few minutes on a laptop CPU, ~10 minutes on one GPU."""

    steps: int
    batch_size: int
    max_length: int
    lr: float = 5e-5

    def as_dict(self) -> dict:
        return {"steps": self.steps, "batch_size": self.batch_size, "max_length": self.max_length, "lr": self.lr}


@dataclass
class LossOut:
    loss: torch.Tensor  # scalar, what backward() runs on
    parts: dict[str, float] = field(default_factory=dict)  # named terms, for progress and the card
    tokens: int = 0  # real (non-padding) tokens fed through the encoder


class Objective:
    name: ClassVar[str] = ""  # set by `register`
    help: ClassVar[str] = ""  # one or two sentences for the CLI and the Pretrain page
    needs_label: ClassVar[bool] = False  # trains on a metadata column (`--label`)
    suggested: ClassVar[dict[str, Suggested]] = {}  # "cpu" and "cuda" (other devices get the CPU's)
    min_batch: ClassVar[int] = 1  # notes per batch below which the loss is undefined
    order: ClassVar[int] = 100  # where the CLI and the page list it (ties: in registration order)
    default_temperature: ClassVar[float] = 0.0
    # Does the MLM head need building? Objectives override with their own rule.
    uses_mlm: bool = False

    def __init__(self, opts: PretrainOptions, tokenizer) -> None:
        self.opts = opts
        self.tokenizer = tokenizer
        self.temperature = opts.temperature or self.default_temperature
        self.usable_docs = 0

    @classmethod
    def suggested_for(cls, device: str) -> Suggested:
        return cls.suggested.get(device, cls.suggested["cpu"])

    @classmethod
    def check_corpus(cls, opts: PretrainOptions, corpus: str, columns: Sequence[str],
                     values: Callable[[str], Sequence]) -> None:
        """Raise UserError if no run could use this corpus (`columns`: its metadata columns, `values`
        reads one). Before any model loads: the job is refused at once, not failed minutes later."""
        if cls.needs_label and opts.label not in columns:
            raise UserError(f"the {cls.name} objective needs a label column (--label) of corpus '{corpus}': "
                            f"one of {', '.join(columns) or 'none (the corpus has no metadata)'}")

    def prepare(self, token_ids: list[list[int]], labels: Sequence[str | None] | None) -> int:
        """Keep what this objective can use; returns (and stores) the number of usable documents."""
        raise NotImplementedError

    def index_batches(self, seed: int) -> Iterator[list[int]]:
        """Endless, seeded stream of batches (indices into the prepared units)."""
        raise NotImplementedError

    def compute_loss(self, model, batch: list[int], rng: np.random.Generator) -> LossOut:
        raise NotImplementedError

    def describe(self) -> dict:
        """Objective-specific facts for the model card (e.g. classes used, span settings)."""
        return {"temperature": self.temperature} if self.default_temperature else {}


def with_special_tokens(ids: list[int], tokenizer) -> list[int]:
    """[CLS] ids [SEP] (or <s> ids </s>), the way the encoder saw text in pre-training."""
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return ([first] if first is not None else []) + list(ids) + ([last] if last is not None else [])


def pad_batch(seqs: list[list[int]], pad_id: int, device: torch.device,
              multiple_of: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic padding: pad to the longest sequence of this batch only."""
    longest = max(len(s) for s in seqs)
    longest = -(-longest // multiple_of) * multiple_of
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors under the attention mask (what sentence-transformers' Pooling does)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
