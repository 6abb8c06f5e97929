"""Batch samplers: endless, seeded streams of document indices.

- `random_batches`: plain shuffled batches (DeCLUTR: random in-batch negatives).
- `length_grouped_batches`: MLM batches of similar length, so dynamic padding wastes little.
- `balanced_batches`: the metadata objective. The paper sampled batches of 8 at random, so rare
  categories seldom had a same-category partner and added nothing to SupCon. Here every batch
  holds at least two documents of each class in it, and classes take turns, so rare classes are
  seen as often as common ones. Classes with a single document can never have a positive and are
  left out (`split_by_class` counts them).

Every stream is a pure function of its seed, so a resumed run replays it by skipping batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import UserError


def shuffled_epochs(n: int, rng: np.random.Generator) -> Iterator[int]:
    """0..n-1 in a fresh random order each epoch, forever."""
    if n <= 0:
        raise ValueError("nothing to sample from")
    while True:
        yield from rng.permutation(n).tolist()


def _distinct(stream: Iterator[int], k: int) -> list[int]:
    """The next `k` distinct items of an epoch stream (k <= epoch size, so this ends)."""
    out: list[int] = []
    while len(out) < k:
        item = next(stream)
        if item not in out:
            out.append(item)
    return out


def random_batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    rng = np.random.default_rng(seed)
    stream = shuffled_epochs(n, rng)
    while True:
        yield [next(stream) for _ in range(batch_size)]


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int,
                           pool_batches: int = 50) -> Iterator[list[int]]:
    """Draw a pool of up to `pool_batches` batches, sort it by length, cut it, shuffle the batches."""
    rng = np.random.default_rng(seed)
    n = len(lengths)
    stream = shuffled_epochs(n, rng)
    # A pool larger than the corpus would repeat items, and sorting would put the repeats side by side.
    pool_size = batch_size * max(1, min(pool_batches, n // batch_size))
    while True:
        pool = sorted((next(stream) for _ in range(pool_size)), key=lambda i: lengths[i])
        batches = [pool[i:i + batch_size] for i in range(0, pool_size, batch_size)]
        for b in rng.permutation(len(batches)).tolist():
            yield batches[b]


@dataclass(frozen=True)
class ClassSplit:
    groups: dict[str, list[int]]  # class -> document indices, only classes with >= 2 documents
    singleton_classes: int  # classes left out: a lone document has no positive
    unlabelled_docs: int  # documents without a label (None or "")

    @property
    def usable_docs(self) -> int:
        return sum(len(v) for v in self.groups.values())


def split_by_class(labels: Sequence[str | None]) -> ClassSplit:
    groups: dict[str, list[int]] = {}
    unlabelled = 0
    for i, label in enumerate(labels):
        if label is None or (isinstance(label, float) and label != label) or str(label) == "":
            unlabelled += 1
            continue
        groups.setdefault(str(label), []).append(i)
    keep = {c: idx for c, idx in sorted(groups.items()) if len(idx) >= 2}
    return ClassSplit(keep, len(groups) - len(keep), unlabelled)


def _allot(total: int, caps: list[int]) -> list[int]:
    """Split `total` slots over classes: 2 each first (every anchor gets a positive), then round-robin
    up to each class's size. Returns fewer than `total` only if every class is exhausted."""
    sizes = [2] * len(caps)
    left = total - sum(sizes)
    while left > 0 and any(s < c for s, c in zip(sizes, caps)):
        for j, cap in enumerate(caps):
            if left > 0 and sizes[j] < cap:
                sizes[j] += 1
                left -= 1
    return sizes


def balanced_batches(split: ClassSplit, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Batches of `min(n_classes, batch_size // 2)` classes, each with >= 2 distinct documents."""
    classes = list(split.groups)
    if len(classes) < 2:
        raise UserError("the metadata objective needs at least 2 classes with 2 or more documents each")
    if batch_size < 4:
        raise UserError("the metadata objective needs batch_size >= 4 (2 classes x 2 documents)")
    rng = np.random.default_rng(seed)
    class_stream = shuffled_epochs(len(classes), rng)
    doc_streams = [shuffled_epochs(len(split.groups[c]), rng) for c in classes]
    k = min(len(classes), batch_size // 2)
    while True:
        chosen = _distinct(class_stream, k)
        sizes = _allot(batch_size, [len(split.groups[classes[c]]) for c in chosen])
        batch: list[int] = []
        for c, size in zip(chosen, sizes):
            members = split.groups[classes[c]]
            batch.extend(members[j] for j in _distinct(doc_streams[c], size))
        yield batch
