"""evaluate_encoders: the CLI's exact JSON shape, paired encoders, progress, and the Markdown report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.evaluation import evaluate_encoders
from core.export import render_report_md
from core.options import EvaluateOptions
from core.store import StoreError
from tests.conftest import build_tiny_encoder

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


# ---------------------------------------------------------------- on a real store with the tiny encoder
@pytest.fixture()
def clinic(db_path, models_dir, synthetic_df):
    from core.corpus import ingest_frame
    from core.store import Store

    store = Store(db_path)
    ingest_frame(store, synthetic_df, "clinic", "text", "note_id", ["specialty", "site", "age", "visit_date"])
    return store


def _counts(store) -> dict[str, int]:
    kinds = [r["kind"] for r in store.runs()]
    return {k: kinds.count(k) for k in set(kinds)}


def _no_compute(monkeypatch):
    """Any attempt to load vectors or compute a metric fails the test: the store must answer."""
    import core.embed
    import core.evaluation

    def boom(*a, **k):
        raise AssertionError("recomputed")

    for module, name in [(core.embed, "load_embeddings"), (core.embed, "vectors_in"), (core.evaluation, "separability"),
                         (core.evaluation, "learning_curve"), (core.evaluation, "confound_audit")]:
        monkeypatch.setattr(module, name, boom)


def test_evaluate_corpus_computes_stores_and_answers_again_from_the_store(clinic, monkeypatch):
    from core.evaluation import evaluate_corpus

    opts = EvaluateOptions(label="specialty", shots="2,1", seeds=2, knn_k=5)
    calls: list[tuple[float, str]] = []
    result = evaluate_corpus(clinic, "clinic", ["tiny"], opts, progress=lambda f, m: calls.append((f, m)))
    assert set(result) == {"corpus", "label", "encoders", "comparisons", "embedding"}
    assert (result["corpus"], result["label"]) == ("clinic", "specialty")
    entry = result["encoders"]["tiny"]
    assert REQUIRED <= set(entry) and set(entry["fewshot"]) == {"1", "2"}
    assert entry["n"] == 120 and entry["n_classes"] == 4
    json.loads(json.dumps(result, allow_nan=False))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and any("embedded" in m for _, m in calls)
    assert _counts(clinic) == {"ingest": 1, "embed": 1, "separability": 1, "fewshot": 1, "evaluate": 1}
    run = clinic.runs("evaluate")[0]
    assert run["params"]["encoders"] == ["tiny"] and run["params"]["label"] == "specialty"
    assert set(run["inputs"]["fingerprints"]) == {"tiny"} and run["inputs"]["data_hash"]

    _no_compute(monkeypatch)
    assert evaluate_corpus(clinic, "clinic", ["tiny"], opts.replace(shots="1,2")) == result  # same shots, reordered
    assert evaluate_corpus(clinic, "clinic", ["tiny"], opts, compute=False) == result
    assert evaluate_corpus(clinic, "clinic", ["tiny"], opts.replace(seeds=3), compute=False) is None
    assert _counts(clinic)["evaluate"] == 1


def test_runs_stored_with_an_older_result_shape_are_not_reused(clinic, monkeypatch):
    import core.evaluation
    from core.evaluation import evaluate_corpus, fewshot_corpus

    opts = EvaluateOptions(label="specialty", shots="1", seeds=2, knn_k=5)
    evaluate_corpus(clinic, "clinic", ["tiny"], opts)
    assert fewshot_corpus(clinic, "clinic", ["tiny"], opts, compute=False) is not None
    monkeypatch.setattr(core.evaluation, "RESULTS_VERSION", core.evaluation.RESULTS_VERSION + 1)
    assert evaluate_corpus(clinic, "clinic", ["tiny"], opts, compute=False) is None
    assert fewshot_corpus(clinic, "clinic", ["tiny"], opts, compute=False) is None


def test_pages_share_stored_pieces_and_new_encoders_add_only_theirs(clinic, models_dir):
    import shutil

    from core.evaluation import audit_corpus, evaluate_corpus, fewshot_corpus
    from core.fewshot import LearningCurve

    opts = EvaluateOptions(label="specialty", shots="1,2", seeds=2, knn_k=5)
    sep_only = evaluate_corpus(clinic, "clinic", ["tiny"], opts.replace(shots=""))
    assert sep_only["encoders"]["tiny"]["fewshot"] == {}
    curves = fewshot_corpus(clinic, "clinic", ["tiny"], opts)
    full = evaluate_corpus(clinic, "clinic", ["tiny"], opts)  # both pieces found: nothing refitted
    assert _counts(clinic) == {"ingest": 1, "embed": 1, "separability": 1, "fewshot": 1, "evaluate": 2}
    assert full["encoders"]["tiny"]["fewshot"] == curves["encoders"]["tiny"]["summary"]
    curve = LearningCurve.from_dict(curves["encoders"]["tiny"])
    assert curve.confusion_frame(2, seed=None).to_numpy().sum() == 2 * len(curve.test_idx)

    shutil.copytree(models_dir / "tiny", models_dir / "tiny-copy")  # same weights: found by fingerprint
    both = evaluate_corpus(clinic, "clinic", ["tiny", "tiny-copy", "tiny"], opts)
    assert list(both["encoders"]) == ["tiny", "tiny-copy"]
    assert both["encoders"]["tiny-copy"] == both["encoders"]["tiny"]
    assert _counts(clinic)["separability"] == 1 and _counts(clinic)["fewshot"] == 1
    build_tiny_encoder(models_dir / "other", seed=1)
    (models_dir / "other" / "notespace_card.json").write_text("{}")
    three = evaluate_corpus(clinic, "clinic", ["tiny", "other"], opts)  # only the new encoder is computed
    assert _counts(clinic)["separability"] == 2 and _counts(clinic)["fewshot"] == 2
    assert three["encoders"]["tiny"] == both["encoders"]["tiny"]
    assert three["encoders"]["other"]["silhouette"] != three["encoders"]["tiny"]["silhouette"]

    audit = audit_corpus(clinic, "clinic", "tiny", k=5)
    assert {r["column"] for r in audit["ranking"]} == {"specialty", "site", "age", "visit_date"}
    assert audit_corpus(clinic, "clinic", "tiny", k=5, compute=False) == audit
    assert audit_corpus(clinic, "clinic", "tiny", k=7, compute=False) is None


def test_cluster_membership_is_a_label_like_any_column(clinic, models_dir, monkeypatch, second_encoder_path):
    import shutil

    from core.clusters import cluster_corpus
    from core.evaluation import evaluate_corpus, fewshot_corpus, resolve_labels
    from core.labels import add_labels
    from core.options import ClusterOptions

    shutil.copytree(second_encoder_path, models_dir / "tiny-b")  # not clustered: "cluster" comes from tiny
    cluster_corpus(clinic, "clinic", ClusterOptions(encoder="tiny", method="kmeans", k=3))
    labels = resolve_labels(clinic, "clinic", "cluster", ["tiny-b", "tiny"])
    assert labels.index.name == "ord" and len(labels) == 120 and labels.str.match(r"^[0-2]: ").all()
    opts = EvaluateOptions(label="cluster", shots="1,2", seeds=2, knn_k=5)
    result = evaluate_corpus(clinic, "clinic", ["tiny-b", "tiny"], opts)
    assert result["label"] == "cluster" and list(result["encoders"]) == ["tiny-b", "tiny"]
    assert all(e["n"] == 120 and e["n_classes"] == 3 for e in result["encoders"].values())
    assert fewshot_corpus(clinic, "clinic", ["tiny"], opts)["encoders"]["tiny"]["classes"] == sorted(set(labels))

    runs = len(clinic.runs())
    add_labels(clinic, "clinic", "triage", range(0, 120, 2), "even")
    add_labels(clinic, "clinic", "triage", range(1, 120, 2), "odd")
    triage = evaluate_corpus(clinic, "clinic", ["tiny"], opts.replace(label="map: triage", shots=""))
    assert triage["encoders"]["tiny"]["n_classes"] == 2
    assert len(clinic.runs()) == runs + 2  # a new label: its own separability and evaluate runs
    cluster_corpus(clinic, "clinic", ClusterOptions(encoder="tiny", method="kmeans", k=4))  # new values, new key
    assert evaluate_corpus(clinic, "clinic", ["tiny"], opts.replace(shots=""), compute=False) is None

    with pytest.raises(StoreError) as info:  # derived columns need an encoder that has them
        evaluate_corpus(clinic, "clinic", ["tiny-b"], opts)
    assert "(derived: map: triage;" in str(info.value)


def test_cluster_noise_is_unlabelled_and_metadata_wins_a_name_clash(clinic, monkeypatch):
    import pandas as pd

    import core.labels
    from core.evaluation import resolve_labels

    fake = {"cluster": pd.Series(["0: a", "noise"] * 60, dtype=object), "specialty": pd.Series(["x"] * 120)}
    monkeypatch.setattr(core.labels, "label_columns", lambda store, corpus, encoder: fake)
    labels = resolve_labels(clinic, "clinic", "cluster", "tiny")
    assert labels.isna().sum() == 60 and set(labels.dropna()) == {"0: a"} and fake["cluster"][1] == "noise"
    assert "x" not in set(resolve_labels(clinic, "clinic", "specialty", "tiny"))


@pytest.mark.parametrize("label, encoders, shots, message", [
    ("ward", ["tiny"], "1", "corpus 'clinic' has no metadata column 'ward' to use as the label "
                            "(its metadata columns: specialty, site, age, visit_date) and no derived label column "
                            "of that name (derived: none yet; 'cluster' is the latest clustering"),
    ("cluster", ["tiny"], "1", "no derived label column"),
    ("", ["tiny"], "1", "no metadata column ''"),
    ("specialty", ["nope"], "1", "unknown encoder 'nope'"),
    ("specialty", ["tiny"], "1,two", "shots must be whole numbers"),
    ("specialty", ["tiny"], "0,1", "shots must be whole numbers"),
])
def test_bad_requests_fail_with_a_clear_message(clinic, label, encoders, shots, message):
    from core.evaluation import evaluate_corpus

    with pytest.raises((ValueError, RuntimeError)) as info:
        evaluate_corpus(clinic, "clinic", encoders, EvaluateOptions(label=label, shots=shots))
    assert message in str(info.value)
