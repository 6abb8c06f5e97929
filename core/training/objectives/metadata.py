"""The metadata ("note category") objective (paper, scheme 3): supervised contrastive + MLM.

Documents sharing a label (e.g. specialty) are pulled together, others pushed apart (SupCon,
Khosla et al. 2020, temperature 0.1, on mean-pooled embeddings). MLM on the same (masked) pass is
added with weight `opts.mlm_weight`, which keeps the encoder a language model and not just a
label classifier. Batches are class-balanced (sampling.balanced_batches) so every anchor has a
positive, which the paper's random batches of 8 rarely gave rare categories.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core.errors import UserError
from core.training import parallel
from core.training.objective import LossOut, Objective, Suggested, with_special_tokens
from core.training.pooling import pooled
from core.training.registry import register
from core.training.sampling import ClassSplit, balanced_batches, random_batches, split_by_class


def supcon(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (the L_out form), averaged over anchors that have a positive."""
    z = F.normalize(embeddings.float(), dim=-1)
    logits = z @ z.T / temperature
    self_pair = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pair, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_pair
    n_pos = positive.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return logits.new_zeros(()) + embeddings.sum() * 0.0
    mean_log_prob_pos = log_prob.masked_fill(~positive, 0.0).sum(1) / n_pos.clamp(min=1)
    return -mean_log_prob_pos[has_pos].mean()


@register("metadata")
class MetadataObjective(Objective):
    help = ("Metadata-contrastive: notes sharing a label (e.g. specialty) are pulled together, "
            "giving clearer clusters of that label.")
    needs_label = True
    suggested = {"cpu": Suggested(300, 16, 128), "cuda": Suggested(2000, 64, 256)}
    min_batch = 4  # 2 labels x 2 notes: every anchor needs a positive and a negative
    order = 2
    default_temperature = 0.1

    def __init__(self, opts, tokenizer) -> None:
        super().__init__(opts, tokenizer)
        self.uses_mlm = opts.mlm_weight > 0

    @classmethod
    def check_corpus(cls, opts, corpus, columns, values) -> None:
        super().check_corpus(opts, corpus, columns, values)
        counts = pd.Series(values(opts.label)).dropna().astype(str).value_counts()
        if (counts >= 2).sum() < 2:
            raise UserError(f"column '{opts.label}' needs 2 or more values held by 2 or more notes each")

    def prepare(self, token_ids: list[list[int]], labels: Sequence[str | None] | None) -> int:
        if labels is None or len(labels) != len(token_ids):
            raise UserError("the metadata objective needs one label per text")
        # Empty texts cannot be embedded: treat them like unlabelled ones.
        labels = [lab if ids else None for lab, ids in zip(labels, token_ids)]
        self.split: ClassSplit = split_by_class(labels)
        block = self.opts.max_length - 2
        self.classes = list(self.split.groups)
        class_id = {c: k for k, c in enumerate(self.classes)}
        # Units are re-indexed to the usable documents; the split keeps the original indices.
        self.docs, self.doc_class = [], []
        remap: dict[int, int] = {}
        for c, members in self.split.groups.items():
            for i in members:
                remap[i] = len(self.docs)
                self.docs.append(token_ids[i][:block])  # the head of a long note
                self.doc_class.append(class_id[c])
        self._batch_split = ClassSplit({c: [remap[i] for i in m] for c, m in self.split.groups.items()},
                                       self.split.singleton_classes, self.split.unlabelled_docs)
        self.usable_docs = self.split.usable_docs
        return self.usable_docs

    def index_batches(self, seed: int) -> Iterator[list[int]]:
        if self.opts.batches == "random":  # the paper's sampling, kept for the ablation
            return random_batches(len(self.docs), self.opts.batch_size, seed)
        return balanced_batches(self._batch_split, self.opts.batch_size, seed)

    def compute_loss(self, model, batch: list[int], rng: np.random.Generator) -> LossOut:
        own = parallel.rows(len(batch))  # a data-parallel rank embeds its rows, the loss sees every rank's
        seqs = [with_special_tokens(self.docs[i], self.tokenizer) for i in batch[own]]
        notes = pooled(model, seqs, self.tokenizer, rng if self.uses_mlm else None)
        classes = torch.tensor([self.doc_class[i] for i in batch], device=model.device)
        contrastive = supcon(parallel.gather(notes.embeddings), classes, self.temperature)
        parts = {"supcon": float(contrastive.detach())}
        loss = contrastive
        if notes.mlm is not None:
            parts["mlm"] = float(notes.mlm.detach())
            loss = loss + self.opts.mlm_weight * notes.mlm
        return LossOut(loss, parts, notes.tokens)

    def describe(self) -> dict:
        return {"temperature": self.temperature, "classes": self.classes,
                "class_sizes": {c: len(m) for c, m in self.split.groups.items()},
                "excluded_single_document_classes": self.split.singleton_classes,
                "unlabelled_docs": self.split.unlabelled_docs, "batches": "class-balanced, >= 2 per class" if self.opts.batches == "balanced"
                else "random (the paper's sampling)"}
