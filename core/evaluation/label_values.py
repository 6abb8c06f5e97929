"""What a label name means per note, and content hashes of label and metadata values for cache keys.

The label is a metadata column or a derived label column of `core.labels.label_columns`: "cluster"
(the latest clustering made with the first of the encoders that has one) or "map: SET" (labels made
on the map); `resolve_labels` is the one place that turns a label name into values per note.
"""

from __future__ import annotations

import pandas as pd

from core.separability import as_labels
from core.stages import cache_key
from core.store import Store, StoreError


def values_hash(frame: pd.DataFrame | pd.Series) -> str:
    """Content hash of metadata or label values: part of cache keys, so changed labels never reuse results."""
    return cache_key(pd.util.hash_pandas_object(frame, index=False).tolist())


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
    return values_hash(pd.Series(as_labels(labels)))
