"""core.evaluation.metrics (evaluate_encoders): the CLI's exact JSON shape, paired encoders, progress, and the
Markdown report made from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.evaluation.metrics import evaluate_encoders
from core.export import render_report_md
from core.options import EvaluateOptions

REQUIRED = {"silhouette", "davies_bouldin", "calinski_harabasz", "knn_accuracy", "alignment", "uniformity",
            "linear_probe_accuracy", "fewshot"}


@pytest.fixture(scope="module")
def evaluated():
    rng = np.random.default_rng(0)
    n, d = 240, 24
    centres = rng.normal(size=(4, d))
    codes = np.arange(n) % 4
    labels = np.array([f"ward|{c}" for c in codes], dtype=object)  # a pipe must not break tables
    labels[0] = None
    embeddings = {
        "base": centres[codes] + 2.5 * rng.normal(size=(n, d)),
        "adapted": centres[codes] + 0.6 * rng.normal(size=(n, d)),
    }
    opts = EvaluateOptions(label="ward", shots="1,2,4", seeds=3, knn_k=5)
    calls: list[tuple[str, float]] = []
    result = evaluate_encoders(embeddings, labels, opts, progress=lambda f, m: calls.append((m, f)))
    return result, opts, calls, embeddings, labels


def _walk(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)
    else:
        yield obj


def test_result_has_exactly_the_cli_shape(evaluated):
    result, opts, *_ = evaluated
    assert set(result) == {"encoders", "comparisons"} and list(result["encoders"]) == ["base", "adapted"]
    for entry in result["encoders"].values():
        assert REQUIRED <= set(entry) and "bootstrap" not in entry
        assert set(entry["fewshot"]) == {str(k) for k in opts.shot_list()}
        for shot in entry["fewshot"].values():
            assert {"macro_f1", "macro_f1_ci", "accuracy", "accuracy_ci", "exhausted_classes", "majority_baseline",
                    "chance", "per_class"} <= set(shot)
            lo, hi = shot["macro_f1_ci"]
            assert lo <= shot["macro_f1"] <= hi
        assert all(isinstance(entry[k], float) for k in REQUIRED - {"fewshot"})
        for metric in REQUIRED - {"fewshot"}:  # an interval for every metric
            lo, hi = entry[f"{metric}_ci"]
            assert lo <= entry[metric] <= hi, metric
    pairs = {(c["metric"], c["shots"]) for c in result["comparisons"]}
    assert pairs == {(m, None) for m in REQUIRED - {"fewshot"} | {"knn_chance_corrected"}} | {
        (m, k) for m in ("macro_f1", "accuracy") for k in opts.shot_list()}
    for c in result["comparisons"]:
        assert set(c) == {"a", "b", "metric", "shots", "diff", "ci", "excludes_zero"}
        assert (c["a"], c["b"]) == ("base", "adapted") and c["ci"][0] <= c["diff"] <= c["ci"][1]
        assert c["excludes_zero"] == (c["ci"][0] > 0 or c["ci"][1] < 0)
    # plain JSON types only, and valid strict JSON (no NaN)
    assert all(v is None or type(v) in (str, int, float, bool) for v in _walk(result))
    json.loads(json.dumps(result, allow_nan=False))


def test_adapted_encoder_wins_on_the_headline_metrics(evaluated):
    base, adapted = (evaluated[0]["encoders"][k] for k in ("base", "adapted"))
    for key in ("silhouette", "knn_accuracy", "linear_probe_accuracy", "calinski_harabasz"):
        assert adapted[key] > base[key], key
    assert adapted["davies_bouldin"] < base["davies_bouldin"]
    assert adapted["fewshot"]["4"]["macro_f1"] > base["fewshot"]["4"]["macro_f1"]
    assert adapted["n_unlabelled"] == 1 and adapted["n"] == 239


def test_progress_is_reported_in_order(evaluated):
    calls = evaluated[2]
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] == 0.0
    assert any(m.startswith("adapted:") for m, _ in calls)


def test_deterministic_and_shape_checked(evaluated):
    result, opts, _, embeddings, labels = evaluated
    assert evaluate_encoders(embeddings, labels, opts) == result
    with pytest.raises(ValueError):
        evaluate_encoders({"short": embeddings["base"][:-1]}, labels, opts)


def test_report_renders_tables_and_a_verdict(evaluated):
    result = dict(evaluated[0], corpus="demo", label="ward")
    md = render_report_md(result)
    assert md.startswith("# NoteSpace evaluation") and "Corpus **demo**, label **ward**" in md
    assert "| Metric | Better | base | adapted |" in md
    for shot in ("| 1 |", "| 2 |", "| 4 |"):
        assert shot in md
    assert "- Nearest notes share the label (kNN accuracy): adapted minus base = +" in md
    assert "always answering the largest class scores 0.251" in md  # 60 of 239 notes
    assert "ward\\|0" in md  # escaped class name in the per-class table
    rows = [line for line in md.splitlines() if line.startswith("| Notes sit nearer their own label")]
    assert len(rows) == 1 and rows[0].count("|") == 5  # metric, direction, two encoders
    single = render_report_md({"encoders": {"base": result["encoders"]["base"]}})
    assert "Only one encoder" in single


def test_verdicts_come_from_paired_comparisons_and_skip_exhausted_shot_counts(evaluated):
    result = json.loads(json.dumps(evaluated[0]))
    sil = next(c for c in result["comparisons"] if c["metric"] == "silhouette")
    line = next(x for x in render_report_md(result).splitlines() if x.startswith("- Notes sit nearer"))
    assert sil["excludes_zero"] and line.endswith(": better.")
    sil["excludes_zero"] = False  # a point estimate alone is never a verdict
    line = next(x for x in render_report_md(result).splitlines() if x.startswith("- Notes sit nearer"))
    assert line.endswith(": no clear difference.")
    # a 3-3 split of six shot counts is a tie, not "best at 3 of 6"
    f1 = [{"a": "base", "b": "adapted", "metric": "macro_f1", "shots": k, "diff": d, "ci": [d - 0.01, d + 0.01],
           "excludes_zero": True} for k, d in zip((1, 2, 4, 8, 16, 32), (0.1, 0.1, 0.1, -0.1, -0.1, -0.1))]
    result["comparisons"] = [c for c in result["comparisons"] if c["metric"] != "macro_f1"] + f1
    md = render_report_md(result)
    assert "clearly better than base at 3, clearly worse at 3, and not clearly different at 0 of 6" in md
    assert "best at" not in md
    result["encoders"]["base"]["fewshot"]["4"]["exhausted_classes"] = ["ward|1"]
    md = render_report_md(result)
    assert "at 3, clearly worse at 3, and not clearly different at 0 of 5" not in md  # 4 had a "better"
    assert "at 2, clearly worse at 3, and not clearly different at 0 of 5" in md
    assert "No verdict at 4 per class" in md and "macro-F1 at 4 per class" not in md


def test_report_nests_in_a_study_and_keeps_names_from_the_data_literal(evaluated):
    result = json.loads(json.dumps(evaluated[0])) | {"corpus": "demo", "label": "ward"}
    result["encoders"]["base"]["dropped_classes"] = {f"<b>c{i:02d}</b> [x](y)": 1 for i in range(12)}
    md = render_report_md(result, title="Wards", level=2, details=False)
    assert md.startswith("## Wards") and "\n### Separability in the full embedding space" in md
    assert "Per class" not in md and "Reading the metrics" not in md
    assert "<b>" not in md and "\\<b\\>c00\\</b\\> \\[x\\](y)" in md and "and 2 more." in md
