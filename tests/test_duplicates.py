"""Identical texts never sit on both sides of a split: few-shot split and draws, the map classifier,
the kNN and probe of separability, and the study's split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.fewshot import learning_curve, train_from_labels
from core.separability import separability


def twins(n_classes: int = 30, d: int = 16, seed: int = 0):
    """A near-unique label: each value on two copies of one text (as an export's sample name is)."""
    rng = np.random.default_rng(seed)
    texts = np.repeat([f"text {i}" for i in range(n_classes)], 2)
    X = np.repeat(rng.normal(size=(n_classes, d)), 2, axis=0).astype(np.float32)  # a copy embeds identically
    labels = np.repeat([f"sample {i}" for i in range(n_classes)], 2).astype(object)
    return X, labels, texts


def test_a_label_carried_only_by_copies_of_one_text_cannot_be_learnt_from_its_copy():
    X, labels, texts = twins()
    leaky = learning_curve(X, labels, shots=(1,), seeds=2)  # without hashes: each copy tests its twin
    assert leaky.summary()["1"]["macro_f1"] == 1.0
    with pytest.raises(ValueError, match="at least two classes with >= 2 different notes"):
        learning_curve(X, labels, shots=(1,), seeds=2, groups=texts)


def mixed(seed: int = 0):
    """Four classes of distinct notes plus copies of 20 of them, half filed under another class."""
    rng = np.random.default_rng(seed)
    n, d = 120, 16
    codes = np.arange(n) % 4
    X = rng.normal(size=(4, d))[codes] + 0.8 * rng.normal(size=(n, d))
    texts = np.array([f"note {i}" for i in range(n)], dtype=object)
    labels = np.array([f"c{c}" for c in codes], dtype=object)
    copies = rng.choice(n, 20, replace=False)
    other = np.array([f"c{(codes[i] + (j % 2)) % 4}" for j, i in enumerate(copies)], dtype=object)
    return (np.vstack([X, X[copies]]).astype(np.float32), np.concatenate([labels, other]),
            np.concatenate([texts, texts[copies]]))


def test_no_text_is_both_trained_on_and_tested_and_shots_are_distinct_texts():
    X, labels, texts = mixed()
    curve = learning_curve(X, labels, shots=(1, 4, 16), seeds=5, groups=texts)
    test_texts = set(texts[curve.test_idx])
    for run in curve.runs:
        assert not set(texts[run.train_idx]) & test_texts
        for c in curve.classes:  # k shots of a class are k different texts
            rows = run.train_idx[labels[run.train_idx] == c]
            assert len(set(texts[rows])) == len(rows) == min(run.shot, curve.pool_sizes[c])
    assert len(curve.runs) == 15


def test_copies_are_not_each_others_neighbours_or_probe_folds():
    X, labels, texts = twins(n_classes=12)
    X = X + np.random.default_rng(1).normal(scale=1e-4, size=X.shape).astype(np.float32)
    leaky = separability(X, labels, knn_k=1, n_boot=50)
    honest = separability(X, labels, knn_k=1, n_boot=50, groups=texts)
    assert leaky.knn_accuracy == 1.0 and leaky.linear_probe_accuracy > 0.9  # the twin answers
    assert honest.knn_accuracy == 0.0 and honest.linear_probe_accuracy == 0.0  # no other note carries the label


def test_map_classifier_gives_copies_of_a_labelled_text_its_label_and_trains_once():
    X, labels, texts = mixed()
    labelled = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    hand = labels[labelled]
    X2 = np.vstack([X, X[[0, 0, 5]]])  # three more copies of labelled notes
    texts2 = np.concatenate([texts, texts[[0, 0, 5]]])
    model = train_from_labels(X2, np.append(labelled, len(X)), np.append(hand, hand[0]), groups=texts2)
    copies = np.flatnonzero(np.isin(texts2, texts[[0, 5]]))
    assert set(copies) <= set(model.labelled_idx)
    frame = model.frame()
    assert frame.loc[copies, "labelled"].all()
    assert list(frame.loc[copies, "predicted"]) == [hand[0] if texts2[i] == texts[0] else hand[5] for i in copies]
    assert (frame.loc[copies, "confidence"] == 1.0).all()


def test_study_split_keeps_each_text_on_one_side():
    from bench.study import Study, split

    frame = pd.DataFrame({"text": [f"t{i % 30}" for i in range(60)] + ["shared"] * 4,
                          "label": [f"l{i % 3}" for i in range(60)] + ["l0", "l1", "l2", "l0"],
                          "part": ["train"] * 32 + ["test"] * 32})
    adapt, held = split(frame, Study("x", "x", label="label", other_label=None), "text")
    assert not set(adapt["text"]) & set(held["text"]) and len(adapt) + len(held) == len(frame)
    adapt, held = split(frame, Study("x", "x", label="label", other_label=None, own_split=("part", "train", "test")), "text")
    assert not set(adapt["text"]) & set(held["text"]) and len(adapt) == 32


def test_map_predictions_give_stored_copies_of_a_labelled_note_its_label(db_path, models_dir, synthetic_df):
    from core.corpus import ingest_frame
    from core.labels import add_labels, predict_from_labels
    from core.store import Store

    frame = synthetic_df.head(40).copy()
    copy = frame.iloc[[0]].assign(note_id="copy-of-0")
    store = Store(db_path)
    ingest_frame(store, pd.concat([frame, copy], ignore_index=True), "notes", "text", "note_id")
    add_labels(store, "notes", "spec", [0, 1, 2], "a")
    add_labels(store, "notes", "spec", [3, 4, 5], "b")
    preds = predict_from_labels(store, "notes", "tiny", "spec", n_suggest=5)
    assert preds.predicted.iloc[40] == "a" and 40 in preds.model.labelled_idx  # the copy, by its text hash
    assert 40 not in preds.suggestions


def test_evaluating_a_stored_corpus_splits_by_text_hash(db_path, models_dir, synthetic_df):
    from core.corpus import ingest_frame
    from core.evaluation.corpus import evaluate_corpus, fewshot_corpus
    from core.fewshot import LearningCurve
    from core.options import EvaluateOptions
    from core.store import Store

    frame = synthetic_df.head(40).copy()
    frame["sample"] = [f"s{i}" for i in range(40)]
    copies = frame.head(20).assign(note_id=lambda f: f["note_id"].astype(str) + "-copy")  # same text, same sample
    store = Store(db_path)
    ingest_frame(store, pd.concat([frame, copies], ignore_index=True), "notes", "text", "note_id",
                 ["specialty", "sample"])
    with pytest.raises(ValueError, match="at least two classes with >= 2 different notes"):
        fewshot_corpus(store, "notes", ["tiny"], EvaluateOptions(label="sample", shots="1", seeds=2))
    curves = fewshot_corpus(store, "notes", ["tiny"], EvaluateOptions(label="specialty", shots="1,4", seeds=3))
    curve = LearningCurve.from_dict(curves["encoders"]["tiny"])
    hashes = np.array(store.text_hashes(store.corpus("notes")), dtype=object)
    for run in curve.runs:
        assert not set(hashes[run.train_idx]) & set(hashes[curve.test_idx])
    sep = evaluate_corpus(store, "notes", ["tiny"], EvaluateOptions(label="sample", shots="", knn_k=1))
    assert sep["encoders"]["tiny"]["knn_accuracy"] == 0.0  # a copy is never its own twin's neighbour
