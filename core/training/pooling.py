"""Mean-pooled embeddings of many sequences at once, run in groups of similar length.

A contrastive step embeds dozens of sequences of very different lengths (DeCLUTR's spans are drawn
between 8 and max-length tokens). Padded together, most of the compute goes to padding; sorted by
length and run in groups under a token budget, little does. The loss is unchanged: each
sequence's embedding does not depend on what it is batched with, and gradients flow through every
group as through one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.batching import length_batches
from core.training.masking import IGNORE, mask_tokens, mlm_loss
from core.training.objective import mean_pool, pad_batch

# Padded tokens per forward pass: small groups pad little, and on a CPU they cost no efficiency at
# this size; a GPU wants large kernels more than it minds padding.
GROUP_TOKENS = {"cpu": 2048, "cuda": 16384, "mps": 8192}


@dataclass
class Pooled:
    embeddings: torch.Tensor  # one row per input sequence, in input order
    mlm: torch.Tensor | None  # mean MLM loss over every masked token (None without masking)
    tokens: int  # real (non-padding) tokens fed through the encoder


def pooled(model, seqs: list[list[int]], tokenizer, rng: np.random.Generator | None = None,
           budget: int | None = None) -> Pooled:
    """Embed `seqs` (token ids with special tokens) in length groups; with `rng`, mask them for MLM
    first (the same forward pass gives the embeddings and the MLM loss, as DeCLUTR does)."""
    budget = budget or GROUP_TOKENS.get(model.device.type, 2048)
    parts, order, tokens = [], [], 0
    mlm_sum, masked = None, 0
    for idx in length_batches([len(s) for s in seqs], budget):
        ids, mask = pad_batch([seqs[i] for i in idx], tokenizer.pad_token_id, model.device, model.pad_multiple)
        labels = None
        if rng is not None:
            ids, labels = mask_tokens(ids, mask, tokenizer, model.vocab_size, rng)
        hidden = model(ids, mask)
        parts.append(mean_pool(hidden, mask))
        order.append(idx)
        tokens += int(mask.sum())
        if labels is not None:
            n = int((labels != IGNORE).sum())
            if n:
                term = mlm_loss(model, hidden, labels) * n
                mlm_sum = term if mlm_sum is None else mlm_sum + term
                masked += n
    inverse = torch.from_numpy(np.argsort(np.concatenate(order))).to(model.device)
    embeddings = torch.cat(parts)[inverse]
    mlm = None if rng is None else (mlm_sum / masked if masked else embeddings.sum() * 0.0)
    return Pooled(embeddings, mlm, tokens)
