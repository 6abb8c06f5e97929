"""DeCLUTR: contrastive learning of spans from the same document (Giorgi et al.; paper, scheme 2).

Each document gives `n_anchors` anchors with `n_positives` positives each (spans.py). An anchor's
embedding (mean pooling) should be closest to the mean embedding of its own positives, against
every other anchor's positives in the batch (InfoNCE, cosine, temperature 0.05). MLM on the
anchors is added with weight `opts.mlm_weight` (the paper: an unweighted sum, i.e. weight 1).

Anchors are masked once and run once: the same forward pass gives the MLM loss and the anchor
embeddings, as in the original implementation; spans run in groups of similar length (pooling.py).
Spans of one document are not used as each other's negatives: they share text, and pushing them
apart would fight the objective (the original did; it only mattered little there because its
documents were long).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import UserError
from core.training import parallel
from core.training.objective import LossOut, Objective, Suggested, with_special_tokens
from core.training.pooling import pooled
from core.training.registry import register
from core.training.sampling import random_batches
from core.training.spans import SpanConfig, is_usable, sample_spans


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, groups: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i's positive is column i; pairs from the same group are not negatives."""
    a = F.normalize(anchors.float(), dim=-1)
    p = F.normalize(positives.float(), dim=-1)
    logits = a @ p.T / temperature
    same = groups[:, None] == groups[None, :]
    own = torch.eye(len(a), dtype=torch.bool, device=a.device)
    logits = logits.masked_fill(same & ~own, float("-inf"))
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@register("declutr")
class DeclutrObjective(Objective):
    help = ("DeCLUTR: passages of the same note are pulled together, so the encoder learns what a note is "
            "about without any labels. Compare it with its base on the Few-shot page before relying on it.")
    # 6 spans per note (2 anchors with 2 positives each), so its batches hold fewer notes
    suggested = {"cpu": Suggested(150, 8, 128), "cuda": Suggested(800, 32, 256)}
    order = 1
    default_temperature = 0.05

    def __init__(self, opts, tokenizer, spans: SpanConfig | None = None) -> None:
        super().__init__(opts, tokenizer)
        longest = opts.max_length - 2  # room for [CLS] and [SEP]
        self.spans = spans or SpanConfig(min_span=min(8, longest), max_span=longest)
        if opts.spans == "original":  # the original DeCLUTR: notes too short for full-length spans are dropped
            s = self.spans
            self.spans = SpanConfig(s.min_span, s.max_span, s.n_anchors, s.n_positives,
                                    min_doc_tokens=s.n_anchors * s.max_span * 2)
        self.uses_mlm = opts.mlm_weight > 0

    def prepare(self, token_ids: list[list[int]], labels: Sequence[str | None] | None) -> int:
        self.docs = [ids for ids in token_ids if is_usable(len(ids), self.spans)]
        self.usable_docs = len(self.docs)
        if self.usable_docs < 2:
            raise UserError("DeCLUTR needs at least 2 documents with "
                             f">= {self.spans.min_doc_tokens} tokens (in-batch negatives)")
        return self.usable_docs

    def index_batches(self, seed: int) -> Iterator[list[int]]:
        return random_batches(len(self.docs), self.opts.batch_size, seed)

    def compute_loss(self, model, batch: list[int], rng: np.random.Generator) -> LossOut:
        anchors, positives, owner = [], [], []
        for doc_index in batch:  # every rank draws the whole batch's spans, then embeds its own notes'
            doc = self.docs[doc_index]
            for drawn in sample_spans(len(doc), self.spans, rng):
                anchors.append(with_special_tokens(doc[drawn.anchor.start:drawn.anchor.end], self.tokenizer))
                positives.extend(with_special_tokens(doc[p.start:p.end], self.tokenizer) for p in drawn.positives)
                owner.append(doc_index)
        per_doc, k = self.spans.n_anchors, self.spans.n_positives
        own = parallel.rows(len(batch))
        mine = slice(own.start * per_doc, own.stop * per_doc)
        a = pooled(model, anchors[mine], self.tokenizer, rng if self.uses_mlm else None)
        p = pooled(model, positives[mine.start * k:mine.stop * k], self.tokenizer)
        p_emb = p.embeddings.view(-1, k, p.embeddings.shape[-1]).mean(1)
        groups = torch.tensor(owner, device=model.device)
        # In-batch negatives from every rank: the same global batch as one process
        contrastive = info_nce(parallel.gather(a.embeddings), parallel.gather(p_emb), groups, self.temperature)
        parts = {"contrastive": float(contrastive.detach())}
        loss = contrastive
        if a.mlm is not None:
            parts["mlm"] = float(a.mlm.detach())
            loss = loss + self.opts.mlm_weight * a.mlm
        return LossOut(loss, parts, a.tokens + p.tokens)

    def describe(self) -> dict:
        s = self.spans
        return {"temperature": self.temperature, "min_span": s.min_span, "max_span": s.max_span,
                "anchors_per_doc": s.n_anchors, "positives_per_anchor": s.n_positives,
                "min_doc_tokens": s.min_doc_tokens, "anchor_length": "Beta(4,2)", "positive_length": "Beta(2,4)"}
