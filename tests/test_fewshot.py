"""Few-shot curves (leakage, determinism, sanity of scores) and label-from-the-map suggestions."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from core.fewshot import (
    LearningCurve, classification_metrics, compare_curves, full_proba, learning_curve, make_classifier,
    suggest_next, summary_frame, train_from_labels, uncertainty, weighted_scores,
)


def blobs(noise: float, n: int = 240, d: int = 24, classes: int = 4, seed: int = 0, shuffle: bool = False):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d))
    y = np.arange(n) % classes
    X = (centres[y] + noise * rng.normal(size=(n, d))).astype(np.float32)
    labels = np.array([f"c{c}" for c in y], dtype=object)
    return X, (rng.permutation(labels) if shuffle else labels)


SHOTS = (1, 2, 4, 8, 16)


@pytest.fixture(scope="module")
def curve_and_data():
    X, y = blobs(1.2)
    ids = np.array([f"note-{i:04d}" for i in range(len(y))], dtype=object)
    return learning_curve(X, y, shots=SHOTS, seeds=5, test_size=0.3), X, y, ids


def test_no_training_note_is_ever_a_test_note(curve_and_data):
    curve, X, y, ids = curve_and_data
    test_ids = set(ids[curve.test_idx])
    assert len(curve.runs) == len(SHOTS) * 5
    for run in curve.runs:
        train_ids = set(ids[run.train_idx])
        assert not train_ids & test_ids
        labels, counts = np.unique(y[run.train_idx], return_counts=True)
        assert len(labels) == 4 and (counts == run.shot).all()  # exactly k per class, every class
    assert set(curve.predictions_frame(4, 0, ids=ids)["id"]) == test_ids
    assert len(test_ids) == pytest.approx(0.3 * len(y), abs=4)


def test_split_and_samples_depend_only_on_labels_and_seed(curve_and_data):
    curve, X, y, _ = curve_and_data
    other = learning_curve(X[:, ::-1] * 2 + 1, y, shots=SHOTS, seeds=5, classifier="knn")
    assert np.array_equal(curve.test_idx, other.test_idx)  # paired comparison across encoders
    for a, b in zip(curve.runs, other.runs):
        assert np.array_equal(a.train_idx, b.train_idx)
    assert not np.array_equal(curve.test_idx, learning_curve(X, y, shots=(1,), seeds=1, seed=1).test_idx)


def test_shot_samples_are_nested_within_a_seed(curve_and_data):
    curve = curve_and_data[0]
    for s in range(5):
        for small, big in zip(SHOTS, SHOTS[1:]):
            assert set(curve.run(small, s).train_idx) <= set(curve.run(big, s).train_idx)


def test_deterministic_under_seed(curve_and_data):
    curve, X, y, _ = curve_and_data
    again = learning_curve(X, y, shots=SHOTS, seeds=5, test_size=0.3)
    assert again.summary() == curve.summary()


def test_more_shots_help_and_random_labels_stay_at_chance(curve_and_data):
    summary = curve_and_data[0].summary()
    assert set(summary) == {str(k) for k in SHOTS}
    assert summary["16"]["macro_f1"] > summary["1"]["macro_f1"] + 0.1
    for s in summary.values():
        lo, hi = s["macro_f1_ci"]
        assert lo <= s["macro_f1"] <= hi and s["seeds"] == 5
    X, y = blobs(1.2, shuffle=True)
    chance = learning_curve(X, y, shots=(16,), seeds=3).summary()["16"]
    assert chance["macro_f1"] < 0.45


@pytest.mark.parametrize("classifier", ["logreg", "knn"])
def test_classifiers_learn_separated_classes(classifier):
    X, y = blobs(0.3)
    s = learning_curve(X, y, shots=(4,), seeds=3, classifier=classifier).summary()["4"]
    assert s["macro_f1"] > 0.9 and s["accuracy"] > 0.9


def test_unknown_classifier_is_refused():
    with pytest.raises(ValueError) as info:
        make_classifier("svm")
    assert str(info.value) == "unknown classifier 'svm'; choose from ('logreg', 'knn')"


def test_a_class_the_model_never_saw_gets_no_probability_and_counts_against_macro_f1():
    X, y = blobs(0.5, classes=3)
    codes = np.unique(y, return_inverse=True)[1]
    seen = np.flatnonzero(codes < 2)[:40]
    clf = make_classifier("logreg").fit(X[seen], codes[seen])
    P = full_proba(clf, X, 3)
    assert (P[:, 2] == 0).all() and np.allclose(P.sum(axis=1), 1)
    m = classification_metrics(codes, P.argmax(axis=1))
    assert m["macro_f1"] < 0.8 and set(m) == {"macro_f1", "accuracy", "balanced_accuracy"}  # class 2 is always missed


def test_confusion_matrix_and_predictions_export(curve_and_data):
    curve = curve_and_data[0]
    cm = curve.confusion_frame(8, 2)
    assert list(cm.index) == list(cm.columns) == curve.classes
    assert cm.to_numpy().sum() == len(curve.test_idx)
    frame = curve.predictions_frame(8, 2)
    assert np.trace(cm.to_numpy()) == frame["correct"].sum()
    assert frame["correct"].mean() == pytest.approx(curve.run(8, 2).metrics["accuracy"])


def test_small_classes_are_dropped_and_reported():
    X, y = blobs(0.5, n=80)
    y = y.copy()
    y[0] = "singleton"
    curve = learning_curve(X, y, shots=(2,), seeds=2)
    assert curve.dropped_classes == {"singleton": 1} and 0 not in curve.test_idx
    assert "singleton" not in curve.classes


def test_train_from_labels_predicts_every_note():
    X, y = blobs(0.8)
    labelled = np.arange(0, 40)
    model = train_from_labels(X, labelled, y[labelled])
    assert model.proba.shape == (len(y), 4) and np.allclose(model.proba.sum(axis=1), 1)
    assert (model.predictions == y).mean() > 0.8
    frame = model.frame()
    assert frame["labelled"].sum() == 40 and len(frame) == len(y)
    with pytest.raises(ValueError):
        train_from_labels(X, [0, 4], ["c0", "c0"])


def test_suggest_next_is_unlabelled_distinct_uncertain_and_diverse():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 16)) * 3
    X = np.vstack([a + rng.normal(size=(100, 16)), b + rng.normal(size=(100, 16)),
                   (a + b) / 2 + rng.normal(size=(40, 16))])  # 40 notes on the boundary
    labelled = np.r_[0:10, 100:110]
    y = np.array(["a"] * 10 + ["b"] * 10)
    hardest = 200 + int(np.argmax(uncertainty(train_from_labels(X, labelled, y).proba)[200:]))
    X = np.vstack([X, np.repeat(X[[hardest]], 30, axis=0)])  # 30 copies of the most uncertain note
    model = train_from_labels(X, labelled, y)
    unc = uncertainty(model.proba)
    picks = suggest_next(X, model.proba, labelled, n=10)
    assert len(picks) == 10 and len(set(picks)) == 10 and not set(picks) & set(labelled)
    free = np.setdiff1d(np.arange(len(X)), labelled)
    assert (unc[picks] >= np.quantile(unc[free], 0.75)).all()  # all among the most uncertain quarter
    copies = set(range(240, 270)) | {hardest}
    top_by_uncertainty = free[np.argsort(-unc[free], kind="stable")[:10]]
    assert len(copies & set(top_by_uncertainty)) >= 2  # pure uncertainty would pick duplicates ...
    assert len(copies & set(picks)) <= 1  # ... diversity does not
    assert np.array_equal(picks, suggest_next(X, model.proba, labelled, n=10))


def test_classes_smaller_than_the_shot_count_are_not_swamped():
    """k per class caps at a small class's size; the big class must not then take over (it did, unweighted)."""
    rng = np.random.default_rng(0)
    sizes = [300] + [5] * 10
    centres = rng.normal(size=(len(sizes), 32))
    y = np.repeat([f"c{i}" for i in range(len(sizes))], sizes).astype(object)
    X = np.vstack([centres[i] + rng.normal(size=(n, 32)) for i, n in enumerate(sizes)]).astype(np.float32)
    s = learning_curve(X, y, shots=(2, 64), seeds=3).summary()
    assert s["64"]["macro_f1"] > s["2"]["macro_f1"] > 0.8  # unweighted: 0.94 at 2, 0.49 at 64


def test_a_stored_curve_comes_back_whole(curve_and_data):
    """What the store keeps (JSON) gives back the same curve: split, draws, predictions and scores."""
    curve, _, _, ids = curve_and_data
    stored = json.loads(json.dumps(curve.to_dict()))
    assert stored["summary"] == curve.summary()
    back = LearningCurve.from_dict(stored)
    assert (back.classes, back.classifier) == (curve.classes, curve.classifier)
    assert (back.dropped_classes, back.pool_sizes) == (curve.dropped_classes, curve.pool_sizes)
    assert np.array_equal(back.test_idx, curve.test_idx) and np.array_equal(back.test_codes, curve.test_codes)
    assert [(r.shot, r.seed, r.metrics) for r in back.runs] == [(r.shot, r.seed, r.metrics) for r in curve.runs]
    for a, b in zip(curve.runs, back.runs):
        assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.pred, b.pred)
        assert np.abs(a.confidence - b.confidence).max() <= 5e-5  # kept to 4 decimals
    assert back.summary() == curve.summary()
    pd.testing.assert_frame_equal(back.predictions_frame(4, None, ids), curve.predictions_frame(4, None, ids),
                                  atol=5e-5)


def perfect(curve: LearningCurve) -> LearningCurve:
    """The same split and draws, every test note predicted right."""
    runs = [replace(r, pred=curve.test_codes.copy(), metrics=r.metrics | {"macro_f1": 1.0, "accuracy": 1.0})
            for r in curve.runs]
    return replace(curve, runs=runs)


def test_comparing_curves_gives_b_minus_a_per_shot_and_metric(curve_and_data):
    curve = curve_and_data[0]
    rows = compare_curves(curve, perfect(curve))
    assert [(r["metric"], r["shots"]) for r in rows] == [(m, k) for k in SHOTS for m in ("macro_f1", "accuracy")]
    summary = curve.summary()
    for r in rows:
        scores = [run.metrics[r["metric"]] for run in curve.runs if run.shot == r["shots"]]
        assert r["diff"] == pytest.approx(1 - np.mean(scores))
        lo, hi = summary[str(r["shots"])][f"{r['metric']}_ci"]  # a perfect b: the interval of 1 - a
        assert r["ci"] == pytest.approx([1 - hi, 1 - lo]) and r["excludes_zero"] == (hi < 1)
    same = compare_curves(curve, curve, metrics=("balanced_accuracy",))
    assert {(r["diff"], tuple(r["ci"]), r["excludes_zero"]) for r in same} == {(0.0, (0.0, 0.0), False)}
    with pytest.raises(ValueError, match="same test notes"):
        compare_curves(curve, replace(curve, test_idx=curve.test_idx[::-1]))


def test_summary_frame_has_a_row_per_encoder_and_shot(curve_and_data):
    curve = curve_and_data[0]
    summary = curve.summary()
    frame = summary_frame({"a": summary, "b": perfect(curve).summary()})
    assert list(frame.columns) == ["encoder", "shot", "macro_f1", "macro_f1_low", "macro_f1_high", "accuracy",
                                   "accuracy_low", "accuracy_high", "seeds"]
    assert list(zip(frame["encoder"], frame["shot"])) == [(e, k) for e in "ab" for k in SHOTS]
    for row in frame[frame["encoder"] == "a"].itertuples():
        s = summary[str(row.shot)]
        assert (row.macro_f1, [row.macro_f1_low, row.macro_f1_high]) == (s["macro_f1"], s["macro_f1_ci"])
        assert (row.accuracy, [row.accuracy_low, row.accuracy_high], row.seeds) == (s["accuracy"], s["accuracy_ci"], 5)
    assert (frame[frame["encoder"] == "b"][["macro_f1", "accuracy"]] == 1.0).all().all()
    old = {k: {m: v for m, v in s.items() if m not in ("accuracy_ci", "seeds")} for k, s in summary.items()}
    older = summary_frame({"a": old})  # summaries stored before accuracy intervals and seeds were kept
    assert older[["accuracy_low", "accuracy_high", "seeds"]].isna().all().all()


def suggestions_by_the_rule(X, proba, labelled, n, pool_factor):
    """suggest_next's rule spelled out with scipy's cosine distances and plain loops: the n * pool_factor
    most uncertain unlabelled notes (margin; ties in note order) are candidates; each step takes the one
    with the largest uncertainty x distance to the nearest labelled-or-taken note; with nothing labelled,
    the distance starts at 1 (as if one note orthogonal to all were labelled)."""
    from scipy.spatial.distance import cdist

    top2 = np.sort(proba, axis=1)[:, -2:]
    unc = 1 - (top2[:, 1] - top2[:, 0])
    free = [i for i in range(len(X)) if i not in set(labelled)]
    cand = sorted(free, key=lambda i: (-unc[i], i))[:n * pool_factor]
    D = cdist(X, X, "cosine")
    taken: list[int] = []
    for _ in range(min(n, len(cand))):
        def score(i):
            start = [] if len(labelled) else [1.0]
            return unc[i] * max(min([D[i, a] for a in list(labelled) + taken] + start), 0.0)

        taken.append(max((c for c in cand if c not in taken), key=lambda c: (score(c), -cand.index(c))))
    return taken


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_suggest_next_follows_its_rule(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 8))
    proba = rng.dirichlet(np.ones(3), size=120)
    labelled = rng.choice(120, size=10, replace=False)
    for n, pool_factor in [(8, 3), (25, 1)]:
        picks = suggest_next(X, proba, labelled, n=n, pool_factor=pool_factor)
        assert picks.tolist() == suggestions_by_the_rule(X, proba, labelled, n, pool_factor)
    assert suggest_next(X, proba, labelled).tolist() == suggestions_by_the_rule(X, proba, labelled, 10, 5)
    assert suggest_next(X, proba, []).tolist() == suggestions_by_the_rule(X, proba, [], 10, 5)


def test_suggest_next_at_the_edges():
    rng = np.random.default_rng(0)
    X, proba = rng.normal(size=(6, 4)), rng.dirichlet(np.ones(2), size=6)
    for picks in (suggest_next(X, proba, [0, 1, 2], n=0), suggest_next(X, proba, range(6), n=3)):
        assert picks.dtype == np.int64 and picks.size == 0
    assert sorted(suggest_next(X, proba, [0, 1, 2, 3], n=5).tolist()) == [4, 5]  # only what is unlabelled
    assert suggest_next(X, proba, [0, 1], n=1).tolist() == suggestions_by_the_rule(X, proba, [0, 1], 1, 5)
    X, p = rng.normal(size=(300, 4)), rng.choice([0.5, 0.7, 0.9], size=300)  # three levels of uncertainty
    tied = np.c_[p, 1 - p]  # ties go to the note first in order: candidates are the first of the most uncertain
    assert set(suggest_next(X, tied, [], n=4, pool_factor=2).tolist()) <= set(np.flatnonzero(p == 0.5)[:8])


def test_frames_name_their_columns_and_cover_every_seed(curve_and_data):
    curve, _, y, ids = curve_and_data
    assert all((curve.run(k, s).shot, curve.run(k, s).seed) == (k, s) for k in SHOTS for s in range(5))
    every, n = curve.predictions_frame(8, None, ids), len(curve.test_idx)
    assert list(every.columns) == ["id", "true", "predicted", "confidence", "correct", "seed"]
    assert every.index.tolist() == list(range(5 * n)) and every["seed"].tolist() == [s for s in range(5) for _ in range(n)]
    assert every["id"].tolist() == ids[curve.test_idx].tolist() * 5
    assert every["true"].tolist() == y[curve.test_idx].tolist() * 5
    for s, block in every.groupby("seed"):
        assert block["predicted"].tolist() == [curve.classes[c] for c in curve.run(8, s).pred]
        assert np.allclose(block["confidence"], curve.run(8, s).confidence)
    assert every["correct"].tolist() == (every["true"] == every["predicted"]).tolist()
    summed = curve.confusion_frame(8, None)
    counted = pd.crosstab(every["true"], every["predicted"]).reindex(index=curve.classes, columns=curve.classes,
                                                                     fill_value=0)
    assert (summed.index.name, summed.columns.name) == ("true", "predicted")
    assert summed.to_numpy().tolist() == counted.to_numpy().tolist()


def test_label_model_frame_and_knn_and_refusals():
    X, y = blobs(0.8)
    ids = np.array([f"n{i}" for i in range(len(y))], dtype=object)
    model = train_from_labels(X, np.arange(40), y[:40])
    frame = model.frame(ids)
    assert list(frame.columns) == ["id", "predicted", "confidence", "uncertainty", "labelled"]
    assert frame["id"].tolist() == ids.tolist() and model.frame()["id"].tolist() == list(range(len(y)))
    assert frame["labelled"].dtype == bool and frame["labelled"].tolist() == [i < 40 for i in range(len(y))]
    top2 = np.sort(model.proba, axis=1)[:, -2:]
    assert np.allclose(frame["confidence"], top2[:, 1]) and np.allclose(frame["uncertainty"], 1 - top2[:, 1] + top2[:, 0])
    from sklearn.neighbors import KNeighborsClassifier

    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    knn = KNeighborsClassifier(n_neighbors=3, weights="distance", metric="cosine").fit(Xn[:40], y[:40])
    assert np.allclose(train_from_labels(X, np.arange(40), y[:40], "knn", knn_k=3).proba[40:],
                       knn.predict_proba(Xn[40:]), atol=1e-5)
    assert model.classes == ["c0", "c1", "c2", "c3"]
    for labelled, labels, refusal in (([0, 1], ["c0"], "labels and labelled_idx differ in length"),
                                      ([0, 4], ["c0", "c0"], "label notes of at least two different classes first")):
        with pytest.raises(ValueError) as info:
            train_from_labels(X, labelled, labels)
        assert str(info.value) == refusal
    groups = [f"t{i % 200}" for i in range(len(y))]  # notes 200+ are copies of notes 0-39
    twin = train_from_labels(X, np.arange(40), y[:40], groups=groups)
    assert set(range(200, 240)) <= set(twin.labelled_idx) and (twin.predictions[200:240] == y[:40]).all()


def test_weighted_scores_equal_sklearn_on_each_resample():
    """A row of note counts is a resample; classes it leaves out of `true` drop out of its macro averages."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    rng = np.random.default_rng(3)
    true = np.r_[np.zeros(8, int), np.ones(5, int), [2]]  # class 2 has one note: absent from many resamples
    pred = np.where(rng.random(len(true)) < 0.7, true, rng.integers(0, 3, len(true)))
    pred[-1] = 2
    W = rng.multinomial(len(true), np.ones(len(true)) / len(true), size=40).astype(np.float64)
    scores = weighted_scores(true, pred, 3, W)
    assert (W[:, -1] == 0).sum() > 5
    for i, w in enumerate(W):
        t, p, c = true[w > 0], pred[w > 0], w[w > 0]
        assert scores["accuracy"][i] == pytest.approx(accuracy_score(t, p, sample_weight=c))
        assert scores["macro_f1"][i] == pytest.approx(f1_score(t, p, labels=np.unique(t), average="macro",
                                                               sample_weight=c, zero_division=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
            assert scores["balanced_accuracy"][i] == pytest.approx(balanced_accuracy_score(t, p, sample_weight=c))


def test_exhausted_classes_are_those_whose_whole_pool_each_draw_takes(curve_and_data):
    curve, _, y, _ = curve_and_data
    pool = {c: int((y == c).sum() - (y[curve.test_idx] == c).sum()) for c in curve.classes}  # no copies here
    assert curve.pool_sizes == pool
    smallest = min(pool.values())
    assert curve.exhausted(smallest - 1) == [] == curve.summary()["16"]["exhausted_classes"]
    assert curve.exhausted(smallest) == [c for c in curve.classes if pool[c] == smallest]


def test_the_summary_gives_baselines_and_per_class_scores_as_sklearn_counts_them():
    """Unequal classes, one with a single test note, and one draw: the baselines are counted from the
    test labels, the per-class scores are sklearn's on the class names, averaged over draws."""
    from collections import Counter

    from sklearn.metrics import f1_score, recall_score

    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1, 2], [50, 38, 2])
    X = rng.normal(size=(3, 16))[codes] + 1.5 * rng.normal(size=(90, 16))
    y = np.array(["big", "mid", "tiny"], dtype=object)[codes]
    for seeds in (1, 3):
        curve = learning_curve(X, y, shots=(1, 4), seeds=seeds)
        test = Counter(y[curve.test_idx])
        assert test["tiny"] == 1
        for k, entry in curve.summary().items():
            runs = [r for r in curve.runs if r.shot == int(k)]
            assert entry["seeds"] == seeds
            assert entry["majority_baseline"] == max(test.values()) / sum(test.values())
            assert entry["chance"] == 1 / len(test)
            assert entry["n_train"] == sum(1 if c == "tiny" else int(k) for c in test)  # tiny has one training note
            names = [np.array(curve.classes, dtype=object)[r.pred] for r in runs]
            assert entry["per_class"] == {c: {
                "test_notes": test[c],
                "f1": pytest.approx(np.mean([f1_score(y[curve.test_idx], p, labels=[c], average=None,
                                                      zero_division=0)[0] for p in names])),
                "recall": pytest.approx(np.mean([recall_score(y[curve.test_idx], p, labels=[c], average=None,
                                                              zero_division=0)[0] for p in names]))}
                for c in sorted(test)}


def test_progress_names_each_draw_in_order():
    X, y = blobs(1.0, n=80)
    seen = []
    learning_curve(X, y, shots=(2, 1), seeds=2, progress=lambda fraction, message: seen.append((fraction, message)))
    assert seen == [(0.0, "few-shot seed 1 of 2, 1 per class"), (0.25, "few-shot seed 1 of 2, 2 per class"),
                    (0.5, "few-shot seed 2 of 2, 1 per class"), (0.75, "few-shot seed 2 of 2, 2 per class")]


def test_two_classes_are_enough_and_one_is_refused_in_words():
    X, y = blobs(1.0, n=40, classes=2)
    assert learning_curve(X, y, shots=(1,), seeds=1).classes == ["c0", "c1"]
    with pytest.raises(UserError) as info:
        learning_curve(X, np.array(["c0"] * 39 + ["c1"], dtype=object), shots=(1,), seeds=1)
    assert str(info.value) == "few-shot needs at least two classes with >= 2 different notes each"


def test_only_curves_on_the_same_notes_compare_and_only_at_shots_both_have():
    X, y = blobs(1.0, n=80)
    a = learning_curve(X, y, shots=(1, 2), seeds=2)
    b = learning_curve(X, y, shots=(1, 4), seeds=2)
    assert {(row["shots"], row["metric"]) for row in compare_curves(a, b)} == {(1, "macro_f1"), (1, "accuracy")}
    with pytest.raises(ValueError) as info:
        compare_curves(a, learning_curve(X, y, shots=(1,), seeds=2, seed=1))
    assert str(info.value) == "these curves were not scored on the same test notes, so they cannot be paired"


def test_the_last_unlabelled_note_is_suggested():
    rng = np.random.default_rng(1)
    X, proba = rng.normal(size=(5, 4)), rng.dirichlet(np.ones(2), size=5)
    assert suggest_next(X, proba, [0, 1, 2, 4], n=3).tolist() == [3]


def test_identical_texts_never_sit_on_both_sides_of_the_split():
    """With text hashes, a duplicate is never tested on its twin, in any draw, at any shot."""
    X, y = blobs(1.0, n=120, classes=3)
    texts = np.array([f"t{i % 60}" for i in range(120)], dtype=object)  # notes 60+ copy notes 0-59
    curve = learning_curve(X, y, shots=(1, 4), seeds=3, groups=texts)
    tested = set(texts[curve.test_idx])
    for run in curve.runs:
        trained = texts[run.train_idx]
        assert not tested & set(trained) and len(set(trained)) == len(trained)  # k shots are k texts


@pytest.mark.parametrize("test_size, per_class", [(0.05, 1), (0.5, 5), (0.95, 9)])
def test_the_split_takes_its_share_of_each_class_but_leaves_one_on_each_side(test_size, per_class):
    X, y = blobs(1.0, n=30, classes=3)
    curve = learning_curve(X, y, shots=(1,), seeds=1, test_size=test_size)
    assert np.bincount(curve.test_codes).tolist() == [per_class] * 3


def test_a_knn_curve_votes_over_its_k_nearest_training_notes():
    """sklearn's distance-weighted cosine kNN, k = knn_k (10) capped by the training notes, is the oracle."""
    from sklearn.neighbors import KNeighborsClassifier

    X, y = blobs(1.5, n=120, classes=3)
    curve = learning_curve(X, y, shots=(1, 8), seeds=1, classifier="knn")
    assert curve.classifier == "knn"
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    for run in curve.runs:
        knn = KNeighborsClassifier(n_neighbors=min(10, len(run.train_idx)), weights="distance", metric="cosine")
        P = knn.fit(Xn[run.train_idx], y[run.train_idx]).predict_proba(Xn[curve.test_idx])
        assert np.array_equal(np.array(curve.classes, dtype=object)[run.pred], knn.classes_[P.argmax(axis=1)])
        assert np.allclose(run.confidence, P.max(axis=1), atol=1e-6)


def test_an_empty_summary_frame_still_names_its_columns():
    assert summary_frame({}).columns.tolist() == ["encoder", "shot", "macro_f1", "macro_f1_low", "macro_f1_high",
                                                  "accuracy", "accuracy_low", "accuracy_high", "seeds"]


def test_replicates_do_not_depend_on_how_the_resamples_are_chunked(monkeypatch):
    """Large test sets are resampled in chunks to bound memory; the replicates must be the same."""
    import core.fewshot as fewshot

    X, y = blobs(1.0, n=200)
    curve = learning_curve(X, y, shots=(2,), seeds=3)
    whole = curve.replicates(2, n_boot=300)
    resample, n_test = fewshot.resample_counts, len(curve.test_codes)

    def chunked(n, n_boot=fewshot.N_BOOT, seed=0, max_cells=2_000_000):  # the test notes' resamples only
        return resample(n, n_boot, seed, max_cells=n * 70 if n == n_test else max_cells)

    monkeypatch.setattr(fewshot, "resample_counts", chunked)
    in_chunks = curve.replicates(2, n_boot=300)  # five chunks of 70 resamples of the test notes, and a rest
    assert all(np.array_equal(whole[m], in_chunks[m]) for m in whole)
