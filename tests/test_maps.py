"""Maps in the store: cache hits with provenance, coordinates and export, background jobs, the CLI verb."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import core.projection as projection
from core import maps
from core.corpus import ingest_frame
from core.embed import embed_corpus
from core.options import EmbedOptions, ProjectOptions
from core.space import EmbeddingSpace
from core.store import Store, StoreError
from tests.conftest import record_calls

KEYS = {"projection", "corpus", "encoder", "method", "n", "seconds", "cached", "embedding"}
PCA = ProjectOptions(encoder="tiny", method="pca")


@pytest.fixture()
def store(db_path, models_dir, synthetic_df) -> Store:
    s = Store(db_path)
    notes = synthetic_df.head(60).copy()
    notes.loc[0, "text"] = "<b>bold</b> & " + "long " * 100
    notes["x"] = "shadowed"  # a metadata column named like a map column
    ingest_frame(s, notes, "clinic", "text", "note_id", ["specialty", "age", "visit_date", "x"])
    return s


def test_project_corpus_is_stored_once_then_found_with_its_provenance(store, monkeypatch):
    assert not maps.embedded(store, "clinic", "tiny")
    first = maps.project_corpus(store, "clinic", PCA)  # embeds the missing vectors first
    assert set(first) == KEYS and first["cached"] is False and first["n"] == 60
    assert maps.embedded(store, "clinic", "tiny")
    work = [record_calls(monkeypatch, EmbeddingSpace, "load"), record_calls(monkeypatch, projection, "compute_projection")]
    again = maps.project_corpus(store, "clinic", PCA.replace(seed=7, n_neighbors=5))  # PCA ignores UMAP settings
    assert set(again) == KEYS and again["cached"] is True and again["projection"] == first["projection"]
    assert work == [[], []]  # found in the store: no vectors read, nothing projected
    assert maps.find_projection(store, "clinic", PCA.replace(metric="euclidean")) is None

    run = next(r for r in store.runs(kind="projection") if r["id"] == first["projection"])
    corpus = store.corpus("clinic")
    assert run["inputs"]["data_hash"] == corpus.data_hash and run["inputs"]["fingerprint"]
    assert run["inputs"]["embedding_set"] > 0 and run["inputs"]["embedding"]["max_length"] == 256
    assert run["params"]["method"] == "pca" and run["encoder_id"] == "tiny"

    coords = maps.load_projection(store, first["projection"])
    assert list(coords.columns) == ["ord", "x", "y"] and coords["ord"].tolist() == list(range(60))
    assert np.isfinite(coords[["x", "y"]].to_numpy()).all()
    with pytest.raises(StoreError):
        maps.load_projection(store, 9999)


def test_map_frame_previews_and_export_columns(store, tmp_path):
    result = maps.project_corpus(store, "clinic", PCA)
    frame = maps.map_frame(store, result["projection"], preview_chars=40)
    assert list(frame.columns[:5]) == ["ord", "doc_id", "x", "y", "preview"]
    assert {"specialty", "age", "visit_date", "x (metadata)"} <= set(frame.columns)
    assert frame["preview"].str.len().max() == 40 and frame["preview"][0].startswith("<b>bold</b>")

    out = maps.export_projection(store, result["projection"], tmp_path / "out" / "map.parquet")
    table = pd.read_parquet(out)
    assert list(table.columns) == ["doc_id", "x", "y", "specialty", "age", "visit_date", "x (metadata)"]
    assert len(table) == 60 and table["doc_id"][0] == "n00000"
    np.testing.assert_allclose(table[["x", "y"]], maps.load_projection(store, result["projection"])[["x", "y"]])


def test_background_jobs_store_the_map_or_keep_their_error(store):
    job = maps.project_in_background(store, "clinic", PCA)
    job.thread.join(60)
    assert job.done and job.error is None and job.result["cached"] is False
    assert maps.find_projection(store, "clinic", PCA)["projection"] == job.result["projection"]
    assert maps.project_in_background(store, "clinic", PCA) is not job  # a finished job is forgotten

    bad = maps.project_in_background(store, "clinic", PCA.replace(encoder="nope"))
    bad.thread.join(60)
    assert "unknown encoder 'nope'" in bad.error
    assert maps.project_in_background(store, "clinic", PCA.replace(encoder="nope")) is bad  # kept until retried
    maps.forget(bad)
    assert maps.project_in_background(store, "clinic", PCA.replace(encoder="nope")) is not bad


def test_neighbourhood_overlap_of_an_encoder_with_itself_is_one(store):
    embed_corpus(store, "clinic", EmbedOptions(encoder="tiny"))
    assert np.all(maps.neighbourhood_overlap(store, "clinic", "tiny", "tiny", k=5) == 1)


def test_cli_project_prints_the_map_and_writes_parquet(store, models_dir, tmp_path):
    embed_corpus(store, "clinic", EmbedOptions(encoder="tiny"))  # the process under test only projects
    env = os.environ | {"NOTESPACE_DB": str(store.path), "NOTESPACE_MODELS": str(models_dir)}
    out = subprocess.run([sys.executable, "-m", "core.cli", "project", "--corpus", "clinic", "--encoder", "tiny",
                          "--method", "pca", "--out", str(tmp_path / "map.parquet")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == KEYS and result["cached"] is False
    assert (result["corpus"], result["encoder"], result["method"], result["n"]) == ("clinic", "tiny", "pca", 60)
    assert "stored" in out.stderr  # progress on stderr, never in the JSON
    assert maps.find_projection(store, "clinic", PCA)["projection"] == result["projection"]
    assert list(pd.read_parquet(tmp_path / "map.parquet").columns)[:3] == ["doc_id", "x", "y"]


def test_a_new_umap_setting_starts_from_the_last_layout(store):
    embed_corpus(store, "clinic", EmbedOptions(encoder="tiny"))
    umap = ProjectOptions(encoder="tiny", n_neighbors=5, seed=3)
    first = maps.project_corpus(store, "clinic", umap)
    moved = maps.project_corpus(store, "clinic", umap.replace(min_dist=0.5))
    runs = {r["id"]: r for r in store.runs(kind="projection")}
    assert "init" not in runs[first["projection"]]["params"]  # nothing to start from: a cold layout
    assert runs[moved["projection"]]["params"]["init"] == f"map {first['projection']}"
    assert runs[moved["projection"]]["params"]["n_epochs"] == projection.WARM_EPOCHS
    a, b = (maps.load_projection(store, r["projection"])[["x", "y"]].to_numpy() for r in (first, moved))
    assert np.linalg.norm(projection.align_to(a, b) - a, axis=1).mean() < 0.5 * a.std(axis=0).sum()

    maps._layouts.clear()  # a new process: the newest stored map of the same notes and seed is used
    more = maps.project_corpus(store, "clinic", umap.replace(n_neighbors=8))
    assert store.runs(kind="projection")[0]["params"]["init"] == f"map {moved['projection']}"
    reseeded = maps.project_corpus(store, "clinic", umap.replace(seed=4))  # another seed asks for another map
    assert "init" not in next(r for r in store.runs(kind="projection") if r["id"] == reseeded["projection"])["params"]
    assert more["cached"] is reseeded["cached"] is False


def test_a_large_corpus_map_is_sampled_and_says_so(store, monkeypatch):
    monkeypatch.setattr(projection, "SAMPLE_ABOVE", 40)
    monkeypatch.setattr(projection, "SAMPLE_SIZE", 30)
    result = maps.project_corpus(store, "clinic", ProjectOptions(encoder="tiny", n_neighbors=5))
    params = store.runs(kind="projection")[0]["params"]
    assert params["sample"] == 30 and params["place_k"] == projection.PLACE_K and params["method"] == "umap"
    xy = maps.load_projection(store, result["projection"])[["x", "y"]].to_numpy()
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
