"""SetFit-style few-shot curves: for each draw of k labelled notes per class, fine-tune the encoder
contrastively on just those notes, embed with the tuned weights, and fit logistic regression.

The fine-tune is the metadata objective of core/training (supervised contrastive loss on
class-balanced batches: same-label notes pulled together, the others pushed apart) with its MLM term
off, run through the training loop's `build_run` and `run_step` for a few steps. The weights live in memory for
one draw and are never saved. Split and shot samples come from `core.fewshot.paired_curve`, so a
SetFit curve is scored on the same notes, trained on the same notes, as the frozen-embedding curves.

Store-free and torch-free to import: the pages read the defaults here, the fine-tune loads torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from core.errors import Cancelled
from core.fewshot import LearningCurve, paired_curve
from core.options import PretrainOptions
from core.geometry import unit_rows
from core.separability import as_labels
from core.training.sampling import split_by_class

EMBED_CHUNK = 256  # notes embedded between two looks at the cancel flag


def finetune_options(**changes) -> PretrainOptions:
    """The fine-tune's settings: SupCon alone (no MLM on a handful of notes), a few steps on the notes'
    first 64 tokens at a raised learning rate. The metadata objective with MLM took 2.7 s a step at
    16 x 128 tokens with MiniLM on 2 CPU cores (bench/out/study_adapt.json), so these should take
    about 20 s a draw (an estimate: not timed).
    The encoder is the curve's, whatever `base` says."""
    defaults = {"objective": "metadata", "mlm_weight": 0.0, "steps": 12, "batch_size": 16, "max_length": 64,
                "lr": 1e-4}
    return PretrainOptions(**defaults | changes)


def trainable(labels: Sequence[str]) -> bool:
    """Can these notes be fine-tuned on? The class-balanced sampler needs two classes with two notes
    each (with one note per class SupCon has no positive pair at all); smaller draws keep the encoder."""
    return len(split_by_class(labels).groups) >= 2


def fine_tune(texts: list[str], labels: list[str], base_path: str, opts: PretrainOptions,
              should_stop: Callable[[], bool], progress: Callable[[float, str], None]):
    """The base encoder (a SentenceTransformer, in memory) after `opts.steps` SupCon steps on these notes."""
    from core.training.loop import build_run, run_step  # the training loop's own pieces, minus its saving

    run = build_run(texts, labels, base_path, opts)
    batches = run.objective.index_batches(opts.seed)
    for step in range(1, opts.steps + 1):
        if should_stop():
            raise Cancelled
        loss, _, _ = run_step(run, opts, batches, step)
        progress(step / opts.steps, f"fine-tuning step {step}/{opts.steps} (loss {loss:.2f})")
    return run.st_model.eval()


def embed(model, texts: list[str], max_length: int, long_notes: str, should_stop: Callable[[], bool],
          progress: Callable[[float, str], None]) -> np.ndarray:
    """L2-normalised vectors of `texts`, read as the corpus's stored vectors are: windows of `max_length`
    tokens, a long note either its first window or the mean of all its windows (`long_notes`). Reading
    only the first window where the frozen vectors pooled whole notes had cost the tuned encoder most of
    its accuracy on the study's long notes."""
    from core.embed import Embedder, Settings

    reader = Embedder(model, Settings(model.device.type, "fp32", max_length, long_notes), EMBED_CHUNK)
    parts = []
    for start in range(0, len(texts), EMBED_CHUNK):
        if should_stop():
            raise Cancelled
        progress(start / len(texts), f"embedding {len(texts):,} notes with the tuned encoder")
        parts.append(reader.encode(texts[start:start + EMBED_CHUNK]))
    return unit_rows(np.vstack(parts))


def setfit_curve(texts: Sequence[str], y, base_path: str, base_vectors: np.ndarray, opts: PretrainOptions, *,
                 max_length: int, long_notes: str, shots=(1, 2, 4, 8, 16), seeds: int = 5, test_size: float = 0.3, seed: int = 0,
                 progress: Callable[[float, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> LearningCurve:
    """Like `core.fewshot.learning_curve` (logistic regression), on vectors of an encoder fine-tuned per
    draw on its training notes only, read in the frozen vectors' space (`max_length`, `long_notes`).
    `base_vectors` (the frozen vectors, row per text) serve the draws too small to fine-tune on (see
    `trainable`). Raises core.errors.Cancelled when `should_stop` returns True."""
    texts, labels, frozen = list(texts), as_labels(y), unit_rows(base_vectors)
    stop = should_stop or (lambda: False)

    def features(train: np.ndarray, test: np.ndarray, draw: int, report) -> tuple[np.ndarray, np.ndarray]:
        train_labels = [str(v) for v in labels[train]]
        if not trainable(train_labels):
            return frozen[train], frozen[test]
        model = fine_tune([texts[i] for i in train], train_labels, base_path, opts.replace(seed=opts.seed + draw),
                          stop, lambda f, m: report(0.5 * f, m))
        rows = np.concatenate([train, test])
        X = embed(model, [texts[i] for i in rows], max_length, long_notes, stop,
                  lambda f, m: report(0.5 + 0.5 * f, m))
        return X[:len(train)], X[len(train):]

    # identical texts share one side of the split and count as one shot (core.fewshot.split_train_test)
    return paired_curve(labels, features, shots, seeds, test_size, "logreg", seed=seed, progress=progress,
                        groups=texts)
