"""Labels made on the map, and the per-note label columns (clusters, map labels) pages can use.

A note has at most one label per label set: labelling it again replaces its old label, so a user
correcting a mistake on the map never leaves two contradictory labels behind. Label columns are
pandas Series indexed by ord (document order) with None where a note has no label, the form
`core.separability.as_labels` and the few-shot code take.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.clusters import cluster_names, latest_clustering
from core.errors import UserError
from core.fewshot import LabelModel, suggest_next, train_from_labels
from core.store import Corpus, Store

MAX_LABEL_CHARS = 200


def _checked(corpus: Corpus, label_set: str, ords) -> tuple[str, list[int]]:
    label_set = str(label_set or "").strip()
    if not label_set or len(label_set) > 64:
        raise UserError("a label set needs a name of 1-64 characters")
    ords = sorted({int(o) for o in np.asarray(ords if ords is not None else [], dtype=np.int64).ravel()})
    if ords and (ords[0] < 0 or ords[-1] >= corpus.n_docs):
        raise UserError(f"note positions must lie between 0 and {corpus.n_docs - 1} in corpus '{corpus.name}'")
    return label_set, ords


def add_labels(store: Store, corpus_name: str, label_set: str, ords, label: str) -> int:
    """Label the notes at `ords` (replacing their earlier label in this set); returns how many."""
    corpus = store.corpus(corpus_name)
    label_set, ords = _checked(corpus, label_set, ords)
    label = str(label or "").strip()
    if not label or len(label) > MAX_LABEL_CHARS:
        raise UserError(f"a label needs 1-{MAX_LABEL_CHARS} characters")
    if not ords:
        return 0
    with store.transaction() as con:
        con.execute("DELETE FROM map_labels WHERE corpus_id = ? AND label_set = ? AND list_contains(?, ord)",
                    [corpus.id, label_set, ords])
        con.execute("INSERT INTO map_labels (corpus_id, label_set, ord, label) "
                    "SELECT ?, ?, unnest(?::INTEGER[]), ?", [corpus.id, label_set, ords, label])
    return len(ords)


def get_labels(store: Store, corpus_name: str, label_set: str) -> pd.DataFrame:
    """ord, label, created for every labelled note of the set, in ord order."""
    corpus = store.corpus(corpus_name)
    with store.connect() as con:
        return con.execute("SELECT ord, label, created FROM map_labels WHERE corpus_id = ? AND label_set = ? "
                           "ORDER BY ord", [corpus.id, str(label_set).strip()]).df()


def clear_labels(store: Store, corpus_name: str, label_set: str, ords=None, label: str | None = None) -> int:
    """Remove labels of the set: all, those of `ords`, and/or those equal to `label`; returns how many."""
    corpus = store.corpus(corpus_name)
    label_set, positions = _checked(corpus, label_set, ords)
    where, params = ["corpus_id = ?", "label_set = ?"], [corpus.id, label_set]
    if ords is not None:
        where.append("list_contains(?, ord)"), params.append(positions)
    if label is not None:
        where.append("label = ?"), params.append(str(label).strip())
    with store.transaction() as con:
        return con.execute(f"DELETE FROM map_labels WHERE {' AND '.join(where)}", params).fetchall()[0][0]


def label_sets(store: Store, corpus_name: str) -> list[str]:
    corpus = store.corpus(corpus_name)
    with store.connect() as con:
        rows = con.execute("SELECT DISTINCT label_set FROM map_labels WHERE corpus_id = ? ORDER BY 1",
                           [corpus.id]).fetchall()
    return [r[0] for r in rows]


def label_series(store: Store, corpus_name: str, label_set: str) -> pd.Series:
    """One value per note (indexed by ord): its label in the set, None when unlabelled."""
    corpus = store.corpus(corpus_name)
    out = pd.Series([None] * corpus.n_docs, dtype=object, name=label_set).rename_axis("ord")
    labels = get_labels(store, corpus_name, label_set)
    out.iloc[labels["ord"].to_numpy(dtype=np.int64)] = labels["label"].to_numpy(dtype=object)
    return out


def cluster_column(store: Store, corpus_name: str, encoder_id: str) -> pd.Series | None:
    """The latest clustering with this encoder as readable values ("3: chest pain troponin", "noise"),
    indexed by ord; None when the corpus has not been clustered with the encoder's current vectors."""
    found = latest_clustering(store, corpus_name, encoder_id)
    if found is None:
        return None
    names = cluster_names(found.terms)
    return pd.Series([names[c] for c in found.labels.tolist()], dtype=object, name="cluster").rename_axis("ord")


def label_columns(store: Store, corpus_name: str, encoder_id: str) -> dict[str, pd.Series]:
    """Every derived label column of a corpus: "cluster" (when clustered) and "map: SET" per label set."""
    out = {}
    clusters = cluster_column(store, corpus_name, encoder_id)
    if clusters is not None:
        out["cluster"] = clusters
    for name in label_sets(store, corpus_name):
        out[f"map: {name}"] = label_series(store, corpus_name, name).rename(f"map: {name}")
    return out


@dataclass
class MapPredictions:
    model: LabelModel  # rows = ords
    suggestions: np.ndarray  # ords of the next notes worth labelling, best first
    labels: pd.Series  # the labels given by hand, indexed by ord

    @property
    def predicted(self) -> pd.Series:
        return pd.Series(self.model.predictions, dtype=object, name="predicted").rename_axis("ord")

    def counts(self) -> pd.DataFrame:
        """Per class: notes labelled by hand with it (whatever the classifier predicts for them, so the
        count agrees with the labels on the map), notes predicted, mean confidence of those predictions."""
        frame = self.model.frame()
        grouped = frame.groupby("predicted")
        classes = pd.Index(self.model.classes, name="class")
        return pd.DataFrame({
            "labelled": self.labels.value_counts().reindex(classes, fill_value=0).astype(int),
            "predicted": grouped.size().reindex(classes, fill_value=0).astype(int),
            "mean_confidence": grouped["confidence"].mean().reindex(classes)}).reset_index()


def predict_from_labels(store: Store, corpus_name: str, encoder_id: str, label_set: str, n_suggest: int = 10,
                        classifier: str = "logreg") -> MapPredictions:
    """Train the few-shot classifier on the set's labels (encoder vectors), predict every note,
    and suggest the next notes to label (uncertain and diverse). Needs two classes."""
    from core.embed import corpus_space

    labels = get_labels(store, corpus_name, label_set)
    X = corpus_space(store, corpus_name, encoder_id).load(store, store.corpus(corpus_name))
    model = train_from_labels(X, labels["ord"].to_numpy(dtype=np.int64), labels["label"], classifier=classifier,
                              groups=store.text_hashes(store.corpus(corpus_name)))
    return MapPredictions(model, suggest_next(X, model.proba, model.labelled_idx, n=n_suggest),
                          pd.Series(labels["label"].to_numpy(dtype=object), index=labels["ord"].to_numpy()))
