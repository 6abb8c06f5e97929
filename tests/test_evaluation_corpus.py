"""core.evaluation.corpus on a real store with the tiny encoder: results computed once and kept as runs,
pieces shared between pages and encoders, label columns (core.evaluation.label_values), bad requests."""

from __future__ import annotations

import json

import pytest

from core.options import EvaluateOptions
from core.store import StoreError
from tests.conftest import build_tiny_encoder
from tests.test_evaluation_metrics import REQUIRED


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
    import core.evaluation.corpus
    import core.evaluation.metrics

    def boom(*a, **k):
        raise AssertionError("recomputed")

    for module, name in [(core.embed, "load_embeddings"), (core.embed, "vectors_in"),
                         (core.evaluation.metrics, "separability"), (core.evaluation.metrics, "learning_curve"),
                         (core.evaluation.corpus, "confound_audit")]:
        monkeypatch.setattr(module, name, boom)


def test_evaluate_corpus_computes_stores_and_answers_again_from_the_store(clinic, monkeypatch):
    from core.evaluation.corpus import evaluate_corpus

    opts = EvaluateOptions(label="specialty", shots="2,1", seeds=2, knn_k=5)
    calls: list[tuple[float, str]] = []
    result = evaluate_corpus(clinic, "clinic", ["tiny"], opts, progress=lambda f, m: calls.append((f, m)))
    assert set(result) == {"corpus", "label", "encoders", "comparisons", "embedding", "code"}
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
    import core.evaluation.corpus
    from core.evaluation.corpus import evaluate_corpus, fewshot_corpus

    opts = EvaluateOptions(label="specialty", shots="1", seeds=2, knn_k=5)
    evaluate_corpus(clinic, "clinic", ["tiny"], opts)
    assert fewshot_corpus(clinic, "clinic", ["tiny"], opts, compute=False) is not None
    monkeypatch.setattr(core.evaluation.corpus, "RESULTS_VERSION", core.evaluation.corpus.RESULTS_VERSION + 1)
    assert evaluate_corpus(clinic, "clinic", ["tiny"], opts, compute=False) is None
    assert fewshot_corpus(clinic, "clinic", ["tiny"], opts, compute=False) is None


def test_pages_share_stored_pieces_and_new_encoders_add_only_theirs(clinic, models_dir):
    import shutil

    from core.evaluation.corpus import audit_corpus, evaluate_corpus, fewshot_corpus
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
    from core.evaluation.corpus import evaluate_corpus, fewshot_corpus
    from core.evaluation.label_values import resolve_labels
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
    from core.evaluation.label_values import resolve_labels

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
    from core.evaluation.corpus import evaluate_corpus

    with pytest.raises((ValueError, RuntimeError)) as info:
        evaluate_corpus(clinic, "clinic", encoders, EvaluateOptions(label=label, shots=shots))
    assert message in str(info.value)
