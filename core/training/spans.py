"""DeCLUTR span sampling that adapts to each document's length.

Original DeCLUTR keeps only documents of at least `A * max_span * 2` tokens, which throws most
clinical notes away (the paper lists this as a limitation). Here the span bounds shrink to the
document instead: `max_span` is capped by the document's token count and `min_span` by half of
that, so a 12-token note still gives anchors and positives. Only near-empty documents are unusable.

Lengths follow DeCLUTR: anchors ~ Beta(4, 2) (skewed long), positives ~ Beta(2, 4) (skewed short),
both scaled to [min_span, max_span]. A positive starts anywhere from `positive_length` tokens
before its anchor up to the anchor's end, so it overlaps, adjoins or sits inside the anchor.
Spans are half-open token ranges [start, end) into the document's tokens (no special tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # exclusive

    def __len__(self) -> int:
        return self.end - self.start

    def touches(self, other: "Span") -> bool:
        """True if the spans overlap or adjoin (share a boundary)."""
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class SpanConfig:
    min_span: int = 8
    max_span: int = 126  # 128-token sequences minus [CLS] and [SEP]
    n_anchors: int = 2
    n_positives: int = 2
    min_doc_tokens: int = 4  # below this, anchor and positive would be (nearly) the same tokens

    def __post_init__(self) -> None:
        if not 1 <= self.min_span <= self.max_span:
            raise ValueError(f"need 1 <= min_span <= max_span, got {self.min_span}, {self.max_span}")
        if self.n_anchors < 1 or self.n_positives < 1 or self.min_doc_tokens < 2:
            raise ValueError("need n_anchors >= 1, n_positives >= 1 and min_doc_tokens >= 2")


@dataclass(frozen=True)
class AnchorSpans:
    anchor: Span
    positives: tuple[Span, ...]


def is_usable(n_tokens: int, cfg: SpanConfig) -> bool:
    return n_tokens >= cfg.min_doc_tokens


def span_bounds(n_tokens: int, cfg: SpanConfig) -> tuple[int, int]:
    """(shortest, longest) span length for a document of `n_tokens` tokens."""
    longest = min(cfg.max_span, n_tokens)
    shortest = min(cfg.min_span, max(1, longest // 2))
    return shortest, longest


def _scaled_length(rng: np.random.Generator, a: float, b: float, lo: int, hi: int) -> int:
    return lo + int(round(rng.beta(a, b) * (hi - lo)))


def sample_spans(n_tokens: int, cfg: SpanConfig, rng: np.random.Generator) -> list[AnchorSpans]:
    """`cfg.n_anchors` anchors with `cfg.n_positives` positives each, for one document."""
    if not is_usable(n_tokens, cfg):
        raise ValueError(f"document of {n_tokens} tokens is shorter than min_doc_tokens={cfg.min_doc_tokens}")
    lo, hi = span_bounds(n_tokens, cfg)
    out = []
    for _ in range(cfg.n_anchors):
        a_len = _scaled_length(rng, 4.0, 2.0, lo, hi)
        a_start = int(rng.integers(0, n_tokens - a_len + 1))
        anchor = Span(a_start, a_start + a_len)
        positives = []
        for _ in range(cfg.n_positives):
            p_len = _scaled_length(rng, 2.0, 4.0, lo, hi)
            first = max(0, anchor.start - p_len)  # ends where the anchor starts: adjacent on the left
            last = min(anchor.end, n_tokens - p_len)  # starts where the anchor ends: adjacent on the right
            p_start = int(rng.integers(first, last + 1))
            positives.append(Span(p_start, p_start + p_len))
        out.append(AnchorSpans(anchor, tuple(positives)))
    return out
