"""Compare encoders on one label: separability metrics and few-shot curves, as the CLI's JSON,
plus a Markdown report.

The label is a metadata column or a derived label column of `core.labels.label_columns`: "cluster"
(the latest clustering made with the first of the encoders that has one) or "map: SET" (labels made
on the map); `resolve_labels` is the one place that turns a label name into values per note.

`evaluate_encoders` is pure (arrays in, JSON-ready dicts out). `evaluate_corpus`, `fewshot_corpus`
and `audit_corpus` read a corpus from the store and keep every result there as a run with its
parameters and inputs. Each encoder's separability and few-shot curve are stored separately, so
adding an encoder to a comparison, or opening the other page, computes only what is new.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from functools import cache, cached_property, partial

import numpy as np
import pandas as pd

from core.encoders import get_encoder
from core.errors import UserError
from core.fewshot import LearningCurve, compare_curves, learning_curve
from core.intervals import paired_difference
from core.options import EvaluateOptions, PretrainOptions
from core.separability import as_labels, confound_audit, separability
from core.space import EmbeddingSpace, remembered
from core.stages import Computed, Stage, stored_or_computed
from core.store import Corpus, Store, StoreError

Progress = Callable[[float, str], None]
# Part of every cache key: bump it when a metric, classifier or the shape of a result changes, so
# results stored by the old code are computed again instead of being shown as if the new code had
# produced them. 3: intervals for every metric, bootstrap replicates, baselines, duplicate-aware splits.
RESULTS_VERSION = 3

# (key, plain name, direction, CI key, what it means): the headline metrics, in report order
METRICS = [
    ("knn_accuracy", "Nearest notes share the label (kNN accuracy)", "higher", "knn_accuracy_ci",
     "Share of notes whose most similar notes mostly carry the same label; compare it with the baselines."),
    ("knn_chance_corrected", "Nearest notes share the label, beyond chance", "higher", "knn_chance_corrected_ci",
     "The kNN result corrected for class sizes: 0 = no better than guessing, 1 = always right, for every class."),
    ("linear_probe_accuracy", "A simple classifier finds the label (linear probe)", "higher",
     "linear_probe_accuracy_ci", "Cross-validated accuracy of logistic regression trained on the vectors."),
    ("silhouette", "Notes sit nearer their own label (silhouette)", "higher", "silhouette_ci",
     "How much closer a note is to its own label's notes than to the nearest other label: -1 to 1, 0 = no gap."),
    ("davies_bouldin", "Overlap between labels (Davies-Bouldin)", "lower", "davies_bouldin_ci",
     "Each label's spread relative to its distance from the most similar label; 0 = no overlap at all."),
    ("calinski_harabasz", "Spread between vs within labels (Calinski-Harabasz)", "higher", "calinski_harabasz_ci",
     "Spread between the label groups divided by the spread inside them; no fixed scale, so compare encoders."),
    ("alignment", "Spread inside a label (alignment)", "lower", "alignment_ci",
     "Mean squared distance between two notes of the same label (0 to 4): lower = tighter groups."),
    ("uniformity", "Spread of all notes (uniformity)", "lower", "uniformity_ci",
     "How evenly the notes fill the space, whatever their label (log scale): lower = more evenly spread."),
]
REQUIRED = [m[0] for m in METRICS]
FEWSHOT_COMPARED = ("macro_f1", "accuracy")


def _clean(obj):
    """JSON-safe: numpy scalars to Python, non-finite floats to None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.integer, bool, np.bool_)):
        return obj.item() if hasattr(obj, "item") else obj
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _quiet(fraction: float, message: str) -> None:
    pass


def _part(progress: Progress, start: float, end: float, prefix: str = "") -> Progress:
    """A callback reporting into [start, end] of the caller's bar."""
    return lambda f, m: progress(start + (end - start) * min(max(f, 0.0), 1.0), prefix + m)


def _separability(X, labels, opts: EvaluateOptions, seed: int, groups=None) -> dict:
    return _clean(separability(X, labels, knn_k=opts.knn_k, seed=seed, groups=groups).to_dict())


def _curve(X, labels, opts: EvaluateOptions, seed: int, progress: Progress, groups=None) -> dict:
    return _clean(learning_curve(X, labels, shots=opts.shot_list(), seeds=opts.seeds, test_size=opts.test_size,
                                 classifier=opts.classifier, knn_k=opts.knn_k, seed=seed,
                                 progress=progress, groups=groups).to_dict())


def _entry(sep: dict, curve: dict | None, opts: EvaluateOptions) -> dict:
    """One encoder's CLI entry: the required keys first, details after (no per-note predictions,
    no bootstrap replicates)."""
    rest = {k: v for k, v in sep.items() if k not in REQUIRED and k != "bootstrap"}
    return ({k: sep[k] for k in REQUIRED} | {"fewshot": curve["summary"] if curve else {}} | rest
            | {"fewshot_classifier": opts.classifier, "fewshot_test_n": len(curve["test_idx"]) if curve else 0})


def comparisons(pieces: dict[str, dict]) -> list[dict]:
    """Every encoder against the first one named: for each headline metric and each few-shot point,
    {"a", "b", "metric", "shots" (None for separability), "diff" (b - a), "ci", "excludes_zero"}
    from a paired bootstrap (the same notes, the same resamples and draws, for both encoders)."""
    names = list(pieces)
    out: list[dict] = []
    if not names:
        return out
    a = pieces[names[0]]
    for b_name in names[1:]:
        b = pieces[b_name]
        sa, sb = a.get("separability", {}), b.get("separability", {})
        for key in REQUIRED:
            if key in sa.get("bootstrap", {}) and key in sb.get("bootstrap", {}):
                out.append({"a": names[0], "b": b_name, "metric": key, "shots": None}
                           | paired_difference(sa[key], sb[key], sa["bootstrap"][key], sb["bootstrap"][key]))
        if a.get("fewshot") and b.get("fewshot"):
            out += [{"a": names[0], "b": b_name} | c
                    for c in compare_curves(LearningCurve.from_dict(a["fewshot"]), LearningCurve.from_dict(b["fewshot"]),
                                            FEWSHOT_COMPARED)]
    return _clean(out)


def evaluate_encoders(embeddings: dict[str, np.ndarray], labels, opts: EvaluateOptions,
                      progress: Progress | None = None, *, seed: int = 0, groups=None) -> dict:
    """Separability + few-shot curve per encoder, on the same notes, split and shot samples, and the
    paired comparisons of every encoder with the first. `groups`: a text hash per note (duplicates)."""
    labels = as_labels(labels)
    report = progress or _quiet
    names = list(embeddings)
    pieces: dict[str, dict] = {}
    for i, name in enumerate(names):
        X = np.asarray(embeddings[name], dtype=np.float32)
        if X.ndim != 2 or len(X) != len(labels):
            raise ValueError(f"{name}: embeddings shape {X.shape} does not match {len(labels)} labels")
        report(i / len(names), f"{name}: separability")
        pieces[name] = {"separability": _separability(X, labels, opts, seed, groups)}
        if opts.shot_list():
            pieces[name]["fewshot"] = _curve(X, labels, opts, seed, _part(report, (i + 0.5) / len(names),
                                                                           (i + 1) / len(names), f"{name}: "), groups)
    report(1.0, "done")
    return _result(pieces, opts)


def _result(pieces: dict[str, dict], opts: EvaluateOptions) -> dict:
    return {"encoders": {e: _entry(p["separability"], p.get("fewshot"), opts) for e, p in pieces.items()},
            "comparisons": comparisons(pieces)}


# ---------------------------------------------------------------- on a corpus in the store
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _frame_hash(frame: pd.DataFrame | pd.Series) -> str:
    """Content hash of metadata values: part of cache keys, so changed labels never reuse results."""
    return _digest(pd.util.hash_pandas_object(frame, index=False).tolist())


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
    run = stored_or_computed(store, stage, compute and (lambda: Computed(_clean(compute()))))
    return run.result if run else None


def derived_label_columns(store: Store, corpus_name: str, encoder_ids) -> dict[str, tuple[str, pd.Series]]:
    """Derived label columns by name -> (encoder it comes from, values indexed by ord). "cluster" is
    per encoder: it comes from the first of `encoder_ids` whose vectors the corpus was clustered with."""
    from core.labels import label_columns  # imports torch (via core.clusters): only when needed

    out: dict[str, tuple[str, pd.Series]] = {}
    for e in dict.fromkeys([encoder_ids] if isinstance(encoder_ids, str) else encoder_ids):
        for name, values in label_columns(store, corpus_name, e).items():
            out.setdefault(name, (e, values))
    return out


def resolve_labels(store: Store, corpus_name: str, label: str, encoder_ids) -> pd.Series:
    """The label's value per note, indexed by ord (None = unlabelled): a metadata column, else a
    derived label column (see `derived_label_columns`). Cluster noise counts as unlabelled: it is the
    notes that fit no cluster, not a class. A metadata column wins over a derived column of its name."""
    corpus = store.corpus(corpus_name)
    if label and label in corpus.meta:
        return store.documents(corpus, with_text=False).set_index("ord")[label]
    derived = derived_label_columns(store, corpus.name, encoder_ids) if label else {}
    if label not in derived:
        names = [n for n in derived if n not in corpus.meta]
        raise StoreError(
            f"corpus '{corpus.name}' has no metadata column '{label}' to use as the label "
            f"(its metadata columns: {', '.join(corpus.meta) or 'none'}) and no derived label column of that name "
            f"(derived: {', '.join(names) or 'none yet'}; 'cluster' is the latest clustering with the first of the "
            f"encoders that has one, 'map: SET' the labels of a label set made on the map)")
    values = derived[label][1].copy()
    if label == "cluster":
        values[values == "noise"] = None
    return values


def labels_digest(labels) -> str:
    """Content hash of label values (part of every cache key): pages key their session results on it too."""
    return _frame_hash(pd.Series(as_labels(labels)))


class _Task:
    """One label of one corpus and a list of encoders: checked inputs, cache keys, stored pieces.
    With `finetune`, also SetFit curves ("setfit"), which stop at `should_stop` (core.errors.Cancelled)."""

    def __init__(self, store: Store, corpus_name: str, encoder_ids, opts: EvaluateOptions,
                 finetune: PretrainOptions | None = None, should_stop: Callable[[], bool] | None = None,
                 compute: bool = True, progress: Progress = _quiet):
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
            return _separability(vectors, self.labels, self.opts, 0, self.text_hashes)
        if kind == "setfit":
            return self._setfit(encoder_id, vectors, _part(report, 0.3, 1.0))
        report(0.7, "few-shot curve")
        return _curve(vectors, self.labels, self.opts, 0, _part(report, 0.7, 1.0), self.text_hashes)

    @cached_property
    def text_hashes(self) -> list[str]:
        """A hash per note, in corpus order: identical texts are kept on one side of every split."""
        return self.store.text_hashes(self.corpus)

    def _setfit(self, encoder_id: str, vectors: np.ndarray, report: Progress) -> dict:
        from core.setfit import setfit_curve

        texts = self.store.texts(self.corpus)["text"].tolist()
        return _clean(setfit_curve(texts, self.labels, get_encoder(self.store, encoder_id).path, vectors,
                                   self.finetune, max_length=self.embedding[encoder_id]["max_length"],
                                   shots=self.opts.shot_list(), seeds=self.opts.seeds, test_size=self.opts.test_size,
                                   progress=report, should_stop=self.should_stop).to_dict())

    def pieces(self, kinds: list[str], progress: Progress, compute: bool) -> dict[str, dict] | None:
        """{encoder: {kind: result}} from the store, computing what is missing (compute=False: None then)."""
        if self.spaces is None:
            return None
        out: dict[str, dict] = {}
        for i, e in enumerate(self.ids):
            report = _part(progress, i / len(self.ids), (i + 1) / len(self.ids), f"{e}: ")
            X = _vectors(self.store, self.corpus, self.spaces[e], _part(report, 0.0, 0.3))
            out[e] = {}
            for kind in kinds:
                inputs = self.inputs | {"embedding": self.embedding[e]}
                stage = Stage(kind, _digest([kind, self.params[kind], inputs]), self.corpus.id, e,
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
    report = progress or _quiet
    task = _Task(store, corpus_name, encoder_ids, opts, compute=compute, progress=_part(report, 0.0, 0.3))
    if task.spaces is None:
        return None
    kinds = ["separability"] + (["fewshot"] if opts.shot_list() else [])
    inputs = task.inputs | {"fingerprints": {e: p["fingerprint"] for e, p in task.embedding.items()},
                            "embedding": task.embedding}

    def run() -> dict:
        pieces = task.pieces(kinds, report, compute=True)
        return {"corpus": task.corpus.name, "label": opts.label} | _result(pieces, opts)

    key = _digest(["evaluate", task.ids, task.params["fewshot"], kinds, inputs])  # ids: the order shown
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
    report, kind = progress or _quiet, "setfit" if finetune is not None else "fewshot"
    task = _Task(store, corpus_name, encoder_ids, opts, finetune, should_stop, compute, _part(report, 0.0, 0.3))
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
    space = _space(store, corpus, encoder_id, compute, _part(progress or _quiet, 0.0, 0.6))
    if space is None:
        return None
    inputs = {"corpus_id": corpus.id, "data_hash": corpus.data_hash, "meta_hash": _frame_hash(meta),
              "embedding": space.cache_params(get_encoder(store, encoder_id))}
    X = _vectors(store, corpus, space, _part(progress or _quiet, 0.0, 0.6))

    def run() -> dict:
        vectors = X()
        if progress:
            progress(0.6, f"scoring {len(meta.columns)} metadata columns")
        return {"corpus": corpus.name, "encoder": encoder_id} | confound_audit(vectors, meta, k=k, n_bins=n_bins)

    stage = Stage("confound_audit", _digest(["confound_audit", params, inputs]), corpus.id, encoder_id, params, inputs)
    result = _stored(store, stage, run if compute else None)
    if result is not None and progress:
        progress(1.0, "done")
    return result


# ---------------------------------------------------------------- words and tables for people
def fmt(value, ci=None, digits: int = 3, sign: bool = False) -> str:
    """A number with its 95% interval in brackets; "n/a" for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    spec = f"{'+' if sign else ''}.{digits}f"
    text = format(value, spec) if abs(value) < 1e4 else f"{value:.4g}"
    if ci and ci[0] is not None and ci[1] is not None:
        text += f" [{format(ci[0], spec)}, {format(ci[1], spec)}]"
    return text


def comparison_words(c: dict, direction: str) -> str:
    """"+0.031 [+0.010, +0.052]: better" for one comparison, in the metric's own direction."""
    if c["diff"] is None:
        return "n/a"
    if not c["excludes_zero"]:
        verdict = "no clear difference"
    else:
        verdict = "better" if (c["diff"] > 0) == (direction == "higher") else "worse"
    return f"{fmt(c['diff'], c['ci'], sign=True)}: {verdict}"


DIRECTION = {key: better for key, _, better, _, _ in METRICS} | {m: "higher" for m in FEWSHOT_COMPARED}


def metrics_table(result: dict) -> pd.DataFrame:
    """One row per headline metric: plain name, what it means, which way is better, each encoder's value
    with its 95% interval, and each later encoder's paired difference from the first."""
    names = list(result["encoders"])
    rows = []
    for key, name, better, ci_key, meaning in METRICS:
        row = {"Measure": name, "What this means": meaning, "Better": f"{better} is better"}
        row |= {e: fmt(result["encoders"][e].get(key), result["encoders"][e].get(ci_key)) for e in names}
        for c in result.get("comparisons", []):
            if c["metric"] == key and c["shots"] is None:
                row[f"{c['b']} minus {c['a']}"] = comparison_words(c, better)
        rows.append(row)
    return pd.DataFrame(rows)


def separation_words(score: float | None) -> str:
    """The chance-corrected kNN score in words (0 = chance, 1 = perfect), for a reader new to the metrics;
    the thresholds are a rule of thumb, and the pages say so."""
    if score is None:
        return "cannot be told"
    return ("strongly" if score >= 0.6 else "moderately" if score >= 0.3 else "weakly" if score >= 0.1
            else "hardly at all")


def struggling_classes(per_class: dict[str, dict], key: str, overall: float | None, margin: float = 0.2) -> list[dict]:
    """Classes scoring at least `margin` below the overall score on `key`, worst first."""
    if overall is None:
        return []
    rows = [{"class": c} | v for c, v in per_class.items() if v.get(key) is not None and v[key] <= overall - margin]
    return sorted(rows, key=lambda r: r[key])


def per_class_frame(result: dict) -> pd.DataFrame:
    """One row per (encoder, class): notes, silhouette, kNN accuracy, alignment."""
    rows = [{"encoder": e, "class": c} | v for e, m in result["encoders"].items()
            for c, v in m.get("per_class", {}).items()]
    return pd.DataFrame(rows, columns=["encoder", "class", "n", "silhouette", "knn_accuracy", "alignment"])


FEWSHOT_WORDS = {"macro_f1": "Macro-F1", "accuracy": "Accuracy"}


def exhausted_shots(summaries: dict[str, dict]) -> set[int]:
    """Shot counts at which some class's whole training pool is in every draw (no verdict there)."""
    return {int(k) for s in summaries.values() for k, point in s.items() if point.get("exhausted_classes")}


def fewshot_table(summaries: dict[str, dict], metric: str) -> pd.DataFrame:
    """One row per shot count: each encoder's score with its 95% interval, the baselines beside it,
    and how many classes have every training note in every draw (such counts get no verdict)."""
    rows = []
    for k in sorted({int(k) for s in summaries.values() for k in s}):
        points = {e: s.get(str(k)) for e, s in summaries.items()}
        any_point = next(p for p in points.values() if p)
        exhausted = any_point.get("exhausted_classes") or []
        rows.append({"Notes per class": k}
                    | {e: fmt(p[metric], p.get(f"{metric}_ci")) if p else "n/a" for e, p in points.items()}
                    | {"Always the largest class": fmt(any_point.get("majority_baseline")) if metric == "accuracy"
                       else "n/a", "Guessing": fmt(any_point.get("chance")) if metric == "accuracy" else "n/a",
                       "Classes with all training notes used": f"{len(exhausted)}: no verdict" if exhausted else "none"})
    return pd.DataFrame(rows)


def comparisons_table(comps: list[dict], skipped: set[int] = frozenset()) -> pd.DataFrame:
    """The paired comparisons in words: what was compared, the difference with its interval, the verdict."""
    labels = {key: name for key, name, *_ in METRICS} | FEWSHOT_WORDS
    rows = []
    for c in comps:
        words = comparison_words(c, DIRECTION[c["metric"]])
        if c["shots"] is not None and c["shots"] in skipped:
            words = words.split(": ")[0] + ": no verdict (all training notes of some class used)"
        rows.append({"Compared": f"{c['b']} minus {c['a']}", "Measure": labels[c["metric"]],
                     "Notes per class": c["shots"], "Difference [95% interval]: verdict": words})
    return pd.DataFrame(rows, columns=["Compared", "Measure", "Notes per class", "Difference [95% interval]: verdict"])
