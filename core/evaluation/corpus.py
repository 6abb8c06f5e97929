"""Evaluations of a corpus in the store: `evaluate_corpus` (the `evaluate` verb), `fewshot_corpus`
(few-shot and SetFit curves) and `audit_corpus` (every metadata column ranked), each result kept as a
run with its parameters and inputs (core/stages.py). Each encoder's separability and few-shot curve are
stored separately, so adding an encoder to a comparison, or opening the other page, computes only
what is new.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, cached_property, partial

import numpy as np

from core.encoders import get_encoder
from core.errors import UserError
from core.evaluation.label_values import labels_digest, resolve_labels, values_hash
from core.evaluation.metrics import (
    Progress, curve_result, evaluation_result, json_safe, progress_part, quiet, separability_result,
)
from core.options import EvaluateOptions, PretrainOptions
from core.separability import as_labels, confound_audit
from core.space import EmbeddingSpace, remembered
from core.stages import Computed, Stage, cache_key, code_version, stored_or_computed
from core.store import Corpus, Store

# Part of every cache key: bump it when a metric, classifier or the shape of a result changes, so
# results stored by the old code are computed again instead of being shown as if the new code had
# produced them. 3: intervals for every metric, bootstrap replicates, baselines, duplicate-aware splits.
# 4: Davies-Bouldin's and Calinski-Harabasz's intervals centred on their estimates; SetFit reads whole
# notes when the corpus's space does; the few-shot ROC-AUC (never given an interval) dropped.
RESULTS_VERSION = 4


def _space(store: Store, corpus: Corpus, encoder_id: str, compute: bool, progress: Progress) -> EmbeddingSpace | None:
    """The corpus's embedding space for the encoder (core/space.py): the one it was last embedded in;
    when there is none, the default one, embedded now (compute=False: None then)."""
    enc = get_encoder(store, encoder_id)  # first: an unknown id fails before torch is imported
    space = remembered(store, corpus, enc.id)
    if space is None and compute:
        from core.embed import corpus_space

        space = corpus_space(store, corpus.name, enc.id, progress)
    return space


def _vectors(store: Store, corpus: Corpus, space: EmbeddingSpace, progress: Progress) -> Callable[[], np.ndarray]:
    """Loads (embedding what is missing) on first call only: fully cached results never touch vectors."""
    from core.embed import vectors_in

    return cache(lambda: vectors_in(store, corpus.name, space, progress=progress))


def _stored(store: Store, stage: Stage, compute: Callable[[], dict] | None) -> dict | None:
    """The stored result of `stage`, else compute it (JSON-safe) and record it (compute=None: look only)."""
    run = stored_or_computed(store, stage, compute and (lambda: Computed(json_safe(compute()))))
    return run.result if run else None


class _Task:
    """One label of one corpus and a list of encoders: checked inputs, cache keys, stored pieces.
    With `finetune`, also SetFit curves ("setfit"), which stop at `should_stop` (core.errors.Cancelled)."""

    def __init__(self, store: Store, corpus_name: str, encoder_ids, opts: EvaluateOptions,
                 finetune: PretrainOptions | None = None, should_stop: Callable[[], bool] | None = None,
                 compute: bool = True, progress: Progress = quiet):
        self.store, self.opts, self.finetune, self.should_stop = store, opts, finetune, should_stop
        self.corpus = corpus = store.corpus(corpus_name)
        try:
            shots = opts.shot_list()
        except ValueError:
            shots = [0]
        if min(shots, default=1) < 1:
            raise UserError(f"shots must be whole numbers >= 1 separated by commas (got '{opts.shots}')")
        if opts.seeds < 1:
            raise UserError(f"seeds must be at least 1 (got {opts.seeds})")
        if not 0 < opts.test_size < 1:
            raise UserError(f"the test size is a fraction between 0 and 1 (got {opts.test_size})")
        self.ids = list(dict.fromkeys(encoder_ids))
        if not self.ids:
            raise UserError("name at least one encoder")
        spaces = {e: _space(store, corpus, e, compute, progress) for e in self.ids}  # first: unknown encoders fail
        # None when an encoder has no embedding space on this corpus yet and nothing may be computed
        self.spaces = spaces if all(spaces.values()) else None
        self.embedding = {e: s.cache_params(get_encoder(store, e)) for e, s in (self.spaces or {}).items()}
        self.labels = as_labels(resolve_labels(store, corpus.name, opts.label, self.ids))
        self.inputs = {"corpus_id": corpus.id, "data_hash": corpus.data_hash,
                       "labels_hash": labels_digest(self.labels)}
        self.params = {"separability": {"label": opts.label, "knn_k": opts.knn_k, "seed": 0,
                                        "version": RESULTS_VERSION}}
        self.params["fewshot"] = self.params["separability"] | {
            "shots": shots, "seeds": opts.seeds, "test_size": opts.test_size, "classifier": opts.classifier}
        if finetune is not None:  # the device is left out, as for vectors: same settings, same curve anywhere
            tuning = {k: v for k, v in finetune.as_params().items() if k not in ("name", "base", "device")}
            self.params["setfit"] = self.params["fewshot"] | {"classifier": "logreg", "finetune": tuning}

    def _compute(self, kind: str, encoder_id: str, X: Callable[[], np.ndarray], report: Progress) -> dict:
        vectors = X()  # loaded (embedding what is missing, reported from 0 to 0.3) before the step starts
        if kind == "separability":
            report(0.3, "separability")
            return separability_result(vectors, self.labels, self.opts, 0, self.text_hashes)
        if kind == "setfit":
            return self._setfit(encoder_id, vectors, progress_part(report, 0.3, 1.0))
        report(0.7, "few-shot curve")
        return curve_result(vectors, self.labels, self.opts, 0, progress_part(report, 0.7, 1.0), self.text_hashes)

    @cached_property
    def text_hashes(self) -> list[str]:
        """A hash per note, in corpus order: identical texts are kept on one side of every split."""
        return self.store.text_hashes(self.corpus)

    def _setfit(self, encoder_id: str, vectors: np.ndarray, report: Progress) -> dict:
        from core.setfit import setfit_curve

        texts = self.store.texts(self.corpus)["text"].tolist()
        return setfit_curve(texts, self.labels, get_encoder(self.store, encoder_id).path, vectors,
                            self.finetune, max_length=self.embedding[encoder_id]["max_length"],
                            long_notes=self.embedding[encoder_id]["long_notes"],
                            shots=self.opts.shot_list(), seeds=self.opts.seeds, test_size=self.opts.test_size,
                            progress=report, should_stop=self.should_stop).to_dict()  # made JSON-safe by _stored

    def pieces(self, kinds: list[str], progress: Progress, compute: bool) -> dict[str, dict] | None:
        """{encoder: {kind: result}} from the store, computing what is missing (compute=False: None then)."""
        if self.spaces is None:
            return None
        out: dict[str, dict] = {}
        for i, e in enumerate(self.ids):
            report = progress_part(progress, i / len(self.ids), (i + 1) / len(self.ids), f"{e}: ")
            X = _vectors(self.store, self.corpus, self.spaces[e], progress_part(report, 0.0, 0.3))
            out[e] = {}
            for kind in kinds:
                inputs = self.inputs | {"embedding": self.embedding[e]}
                stage = Stage(kind, cache_key([kind, self.params[kind], inputs]), self.corpus.id, e,
                              self.params[kind] | {"encoder": e}, inputs)
                got = _stored(self.store, stage, partial(self._compute, kind, e, X, report) if compute else None)
                if got is None:
                    return None
                out[e][kind] = got
        return out


def evaluate_corpus(store: Store, corpus_name: str, encoder_ids, opts: EvaluateOptions,
                    progress: Progress | None = None, compute: bool = True) -> dict | None:
    """The `evaluate` verb: {"corpus", "label", "encoders": {id: metrics + "fewshot" {K: ...}},
    "embedding": {id: the embedding space read}}.

    Stored as an "evaluate" run; an identical evaluation is answered from the store. compute=False
    only looks there (None when it is not), so a page can show earlier results without waiting.
    """
    report = progress or quiet
    task = _Task(store, corpus_name, encoder_ids, opts, compute=compute, progress=progress_part(report, 0.0, 0.3))
    if task.spaces is None:
        return None
    kinds = ["separability"] + (["fewshot"] if opts.shot_list() else [])
    inputs = task.inputs | {"fingerprints": {e: p["fingerprint"] for e, p in task.embedding.items()},
                            "embedding": task.embedding}

    def run() -> dict:
        pieces = task.pieces(kinds, report, compute=True)
        return ({"corpus": task.corpus.name, "label": opts.label} | evaluation_result(pieces, opts)
                | {"code": code_version() | {"results_version": RESULTS_VERSION}})

    key = cache_key(["evaluate", task.ids, task.params["fewshot"], kinds, inputs])  # ids: the order shown
    stage = Stage("evaluate", key, task.corpus.id, None, opts.as_params() | {"encoders": task.ids}, inputs)
    result = _stored(store, stage, run if compute else None)
    if result is None:
        return None
    report(1.0, "done")
    return result | {"embedding": {e: space.public() for e, space in task.spaces.items()}}


def fewshot_corpus(store: Store, corpus_name: str, encoder_ids, opts: EvaluateOptions,
                   progress: Progress | None = None, compute: bool = True, finetune: PretrainOptions | None = None,
                   should_stop: Callable[[], bool] | None = None) -> dict | None:
    """Few-shot curves with their predictions: {"corpus", "label", "encoders": {id: LearningCurve dict}}.

    With `finetune` (core.setfit.finetune_options), SetFit curves of logistic regression on vectors of
    the encoder fine-tuned per draw, on the same split and shot samples, stored as "setfit" runs; a
    background job computes them (core.jobs.submit_setfit) and `should_stop` cancels them.
    """
    report, kind = progress or quiet, "setfit" if finetune is not None else "fewshot"
    task = _Task(store, corpus_name, encoder_ids, opts, finetune, should_stop, compute, progress_part(report, 0.0, 0.3))
    if not opts.shot_list():
        raise UserError("choose at least one number of labelled notes per class")
    pieces = task.pieces([kind], report, compute)
    if pieces is None:
        return None
    report(1.0, "done")
    return {"corpus": task.corpus.name, "label": opts.label, "encoders": {e: p[kind] for e, p in pieces.items()}}


def audit_corpus(store: Store, corpus_name: str, encoder_id: str, k: int = 10, n_bins: int = 4,
                 progress: Progress | None = None, compute: bool = True) -> dict | None:
    """Every metadata column ranked by how strongly the encoder's geometry separates it (stored)."""
    corpus = store.corpus(corpus_name)
    meta = store.documents(corpus, with_text=False)[list(corpus.meta)]
    params = {"encoder": encoder_id, "k": k, "n_bins": n_bins, "version": RESULTS_VERSION}
    space = _space(store, corpus, encoder_id, compute, progress_part(progress or quiet, 0.0, 0.6))
    if space is None:
        return None
    inputs = {"corpus_id": corpus.id, "data_hash": corpus.data_hash, "meta_hash": values_hash(meta),
              "embedding": space.cache_params(get_encoder(store, encoder_id))}
    X = _vectors(store, corpus, space, progress_part(progress or quiet, 0.0, 0.6))

    def run() -> dict:
        vectors = X()
        if progress:
            progress(0.6, f"scoring {len(meta.columns)} metadata columns")
        return {"corpus": corpus.name, "encoder": encoder_id} | confound_audit(vectors, meta, k=k, n_bins=n_bins)

    key = cache_key(["confound_audit", params, inputs])
    stage = Stage("confound_audit", key, corpus.id, encoder_id, params, inputs)
    result = _stored(store, stage, run if compute else None)
    if result is not None and progress:
        progress(1.0, "done")
    return result
