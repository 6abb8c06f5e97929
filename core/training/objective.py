"""What every training objective provides, plus the small tensor helpers they share.

An objective owns its data view (which documents it can use and how they are cut), its endless
batch stream, and its loss. The loop only calls `prepare`, `index_batches` and `compute_loss`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from core.options import PretrainOptions


@dataclass
class LossOut:
    loss: torch.Tensor  # scalar, what backward() runs on
    parts: dict[str, float] = field(default_factory=dict)  # named terms, for progress and the card
    tokens: int = 0  # real (non-padding) tokens fed through the encoder


class Objective:
    name: ClassVar[str] = ""
    default_temperature: ClassVar[float] = 0.0
    # Does the MLM head need building? Objectives override with their own rule.
    uses_mlm: bool = False

    def __init__(self, opts: PretrainOptions, tokenizer) -> None:
        self.opts = opts
        self.tokenizer = tokenizer
        self.temperature = opts.temperature or self.default_temperature
        self.usable_docs = 0

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
