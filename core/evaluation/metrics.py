"""Encoders compared on one label, arrays in and JSON-ready dicts out: the headline metrics (their
plain names, directions and meanings), each encoder's separability and few-shot curve, and the
paired comparisons of every encoder with the first (`evaluate_encoders`, the `evaluate` JSON)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from core.fewshot import LearningCurve, compare_curves, learning_curve
from core.intervals import paired_difference
from core.options import EvaluateOptions
from core.separability import RATIOS, as_labels, separability

Progress = Callable[[float, str], None]

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


def json_safe(obj):
    """JSON-safe: numpy scalars to Python, non-finite floats to None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.integer, bool, np.bool_)):
        return obj.item() if hasattr(obj, "item") else obj
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def quiet(fraction: float, message: str) -> None:
    """A progress callback that reports nowhere."""


def progress_part(progress: Progress, start: float, end: float, prefix: str = "") -> Progress:
    """A callback reporting into [start, end] of the caller's bar."""
    return lambda f, m: progress(start + (end - start) * min(max(f, 0.0), 1.0), prefix + m)


def separability_result(X, labels, opts: EvaluateOptions, seed: int, groups=None) -> dict:
    """One encoder's separability, JSON-ready (with its bootstrap replicates, for the comparisons)."""
    return json_safe(separability(X, labels, knn_k=opts.knn_k, seed=seed, groups=groups).to_dict())


def curve_result(X, labels, opts: EvaluateOptions, seed: int, progress: Progress, groups=None) -> dict:
    """One encoder's few-shot learning curve, JSON-ready (with its predictions)."""
    return json_safe(learning_curve(X, labels, shots=opts.shot_list(), seeds=opts.seeds, test_size=opts.test_size,
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
                           | paired_difference(sa[key], sb[key], sa["bootstrap"][key], sb["bootstrap"][key],
                                               centred=key in RATIOS))
        if a.get("fewshot") and b.get("fewshot"):
            out += [{"a": names[0], "b": b_name} | c
                    for c in compare_curves(LearningCurve.from_dict(a["fewshot"]), LearningCurve.from_dict(b["fewshot"]),
                                            FEWSHOT_COMPARED)]
    return json_safe(out)


def evaluate_encoders(embeddings: dict[str, np.ndarray], labels, opts: EvaluateOptions,
                      progress: Progress | None = None, *, seed: int = 0, groups=None) -> dict:
    """Separability + few-shot curve per encoder, on the same notes, split and shot samples, and the
    paired comparisons of every encoder with the first. `groups`: a text hash per note (duplicates)."""
    labels = as_labels(labels)
    report = progress or quiet
    names = list(embeddings)
    pieces: dict[str, dict] = {}
    for i, name in enumerate(names):
        X = np.asarray(embeddings[name], dtype=np.float32)
        if X.ndim != 2 or len(X) != len(labels):
            raise ValueError(f"{name}: embeddings shape {X.shape} does not match {len(labels)} labels")
        report(i / len(names), f"{name}: separability")
        pieces[name] = {"separability": separability_result(X, labels, opts, seed, groups)}
        if opts.shot_list():
            part = progress_part(report, (i + 0.5) / len(names), (i + 1) / len(names), f"{name}: ")
            pieces[name]["fewshot"] = curve_result(X, labels, opts, seed, part, groups)
    report(1.0, "done")
    return evaluation_result(pieces, opts)


def evaluation_result(pieces: dict[str, dict], opts: EvaluateOptions) -> dict:
    """The `evaluate` JSON's "encoders" and "comparisons" from each encoder's pieces."""
    return {"encoders": {e: _entry(p["separability"], p.get("fewshot"), opts) for e, p in pieces.items()},
            "comparisons": comparisons(pieces)}
