import time

import numpy as np
import pandas as pd
import pytest
from sentence_transformers import SentenceTransformer

import core.embed as embed_mod
import core.space as space_mod
from core.corpus import ingest_frame
from core.embed import (Embedder, Settings, embed_corpus, embed_query, load_embedder, load_embeddings,
                        long_note_summary)
from core.encoders import get_encoder
from core.errors import UserError
from core.space import EmbeddingSpace
from core.options import EmbedOptions
from core.store import Store

TINY = EmbedOptions(encoder="tiny", precision="fp32")


@pytest.fixture()
def store(db_path, models_dir, synthetic_df):
    s = Store(db_path)
    ingest_frame(s, synthetic_df, "notes", "text", "note_id")
    return s


def test_second_embed_is_all_cached_and_identical(store):
    first = embed_corpus(store, "notes", TINY)
    assert (first["n"], first["computed"], first["cached"]) == (120, 120, 0)
    X1 = load_embeddings(store, "notes", TINY, compute_missing=False)
    second = embed_corpus(Store(store.path), "notes", TINY)
    assert (second["computed"], second["cached"]) == (0, 120)
    np.testing.assert_array_equal(X1, load_embeddings(store, "notes", TINY, compute_missing=False))


def test_vectors_match_plain_sentence_transformers(store, models_dir, synthetic_df, monkeypatch):
    monkeypatch.setattr(space_mod, "LOAD_BATCH_ROWS", 7)  # read back in many batches, each put in place by ord
    X = load_embeddings(store, "notes", TINY)
    reference = SentenceTransformer(str(models_dir / "tiny"), device="cpu").encode(synthetic_df["text"].tolist())
    np.testing.assert_allclose(X, reference, atol=2e-5)


def test_identical_texts_are_embedded_once(db_path, models_dir):
    store = Store(db_path)
    ingest_frame(store, pd.DataFrame({"text": ["same note", "same note", "other note"]}), "dups", "text")
    result = embed_corpus(store, "dups", TINY)
    assert (result["computed"], result["n"]) == (2, 3)
    X = load_embeddings(store, "dups", TINY, compute_missing=False)
    np.testing.assert_array_equal(X[0], X[1])


def test_settings_change_the_cache_key(store):
    embed_corpus(store, "notes", TINY)
    assert embed_corpus(store, "notes", TINY.replace(max_length=16))["computed"] == 120
    assert embed_corpus(store, "notes", TINY.replace(batch_size=7))["computed"] == 0  # batching is not a setting of the vectors


def test_killed_run_resumes_where_it_stopped(store, monkeypatch):
    monkeypatch.setattr(embed_mod, "CHUNK_DOCS", 50)
    partial = embed_corpus(store, "notes", TINY, should_stop=lambda: True)
    assert partial["computed"] == 50
    rest = embed_corpus(store, "notes", TINY)
    assert (rest["computed"], rest["cached"]) == (70, 50)


def test_long_notes_truncate_or_chunk(db_path, models_dir):
    store = Store(db_path)
    long_note = " ".join(["cardiology chest pain troponin"] * 60)
    ingest_frame(store, pd.DataFrame({"text": [long_note, "short note"]}), "long", "text")
    opts = TINY.replace(max_length=32)
    said = {mode: long_note_summary(embed_corpus(store, "long", opts.replace(long_notes=mode)))
            for mode in ("truncate", "chunk")}
    truncated = load_embeddings(store, "long", opts.replace(long_notes="truncate"), compute_missing=False)
    chunked = load_embeddings(store, "long", opts.replace(long_notes="chunk"), compute_missing=False)
    assert not np.allclose(truncated[0], chunked[0])  # the long note differs ...
    np.testing.assert_allclose(truncated[1], chunked[1], atol=1e-6)  # ... a short one does not
    # and the user is told which happened to how many (the CLI's stderr, the Data page)
    longer = "1 of the 2 texts embedded now were longer than 32 tokens"
    assert said == {"truncate": f"{longer} and were cut to their first 32 tokens (long notes: truncate)",
                    "chunk": f"{longer} and were read whole (overlapping 32-token windows, averaged)"}


def test_texts_on_their_own_get_the_asked_settings_else_256_token_windows_read_whole(db_path, models_dir,
                                                                                      monkeypatch):
    monkeypatch.setattr(embed_mod, "cpu_has_bf16", lambda: True)
    enc = get_encoder(Store(db_path), "tiny")  # its position embeddings stop at 512
    on_cpu = EmbedOptions(encoder="tiny", device="cpu")
    assert Settings.resolve(enc, on_cpu) == Settings("cpu", "bf16", 256, "chunk")
    asked = on_cpu.replace(precision="fp32", max_length=100, long_notes="truncate")
    assert Settings.resolve(enc, asked) == Settings("cpu", "fp32", 100, "truncate")
    assert Settings.resolve(enc, on_cpu.replace(max_length=4096)).max_length == 512


def test_batches_cover_every_text_under_the_token_budget(db_path, models_dir):
    enc = get_encoder(Store(db_path), "tiny")
    emb = load_embedder(enc, Settings.resolve(enc, TINY), batch_size=8)
    emb.token_budget = 100
    lengths = np.array([3, 50, 7, 7, 20, 1, 99, 12, 12, 12, 5])
    batches = list(emb.batches(lengths))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert all(len(b) * lengths[b].max() <= 100 or len(b) == 1 for b in batches)
    assert all(len(b) <= 8 for b in batches)


def test_query_embedding_matches_the_corpus_vector(store, synthetic_df):
    result = embed_corpus(store, "notes", TINY)
    X = load_embeddings(store, "notes", TINY, compute_missing=False)
    q = embed_query(store, synthetic_df["text"].iloc[5], EmbeddingSpace(**result["embedding"]))
    np.testing.assert_allclose(q, X[5], atol=1e-5)


def test_embed_records_provenance(store):
    """The run's row: its corpus and encoder, the settings of the space (with the encoder), the data and the
    vector set it wrote (the set's id read straight from DuckDB), the result returned and its seconds."""
    started = time.perf_counter()
    result = embed_corpus(store, "notes", TINY)
    elapsed = time.perf_counter() - started
    corpus = store.corpus("notes")
    assert set(result) == {"corpus", "encoder", "n", "computed", "cached", "seconds", "truncated", "long_notes",
                           "longer", "embedding"}
    assert (result["corpus"], result["encoder"], result["n"]) == ("notes", "tiny", 120)
    assert 0 < result["seconds"] <= elapsed
    with store.connect() as con:
        set_id = con.execute("SELECT id FROM embedding_sets").fetchall()
    assert len(set_id) == 1
    [run] = store.runs("embed")
    assert (run["kind"], run["corpus_id"], run["encoder_id"]) == ("embed", corpus.id, "tiny")
    assert run["inputs"] == {"data_hash": corpus.data_hash, "set_id": set_id[0][0]}
    assert run["result"] == result and run["seconds"] == pytest.approx(result["seconds"], abs=1e-4)
    space = result["embedding"]
    assert run["params"]["encoder"] == "tiny" and run["params"]["precision"] == "fp32"
    assert {k: run["params"][k] for k in ("max_length", "long_notes")} == {k: space[k] for k in ("max_length",
                                                                                                 "long_notes")}
    assert run["params"]["fingerprint"] == get_encoder(store, "tiny").fingerprint
    embed_corpus(store, "notes", TINY)  # all cached: no run recorded
    assert len(store.runs("embed")) == 1


@pytest.mark.parametrize(("device", "per_batch"), [("cpu", 32), ("mps", 128), ("cuda", 1024), ("xpu", 32)])
def test_batches_hold_the_devices_token_budget_and_never_more_than_the_batch_size(models_dir, device, per_batch):
    """4,096 tokens a batch on a CPU (also for a device without its own budget), 16,384 on mps, 131,072 on
    cuda: 128-token windows go 32, 128 or 1,024 to a batch; and a batch never holds more than batch_size."""
    model = SentenceTransformer(str(models_dir / "tiny"), device="cpu")
    lengths = np.full(4096, 128)
    wide = Embedder(model, Settings(device, "fp32", 128, "chunk"), batch_size=100_000)
    assert [len(b) for b in wide.batches(lengths)] == [per_batch] * (4096 // per_batch)
    narrow = Embedder(model, Settings(device, "fp32", 128, "chunk"), batch_size=10)
    assert {len(b) for b in narrow.batches(lengths)} == {10, 4096 % 10}


@pytest.mark.real_model
def test_bf16_stays_faithful_to_fp32_on_the_real_model(db_path, synthetic_df):
    from tests.test_claims import bf16_exact

    store = Store(db_path)
    ingest_frame(store, synthetic_df.head(40), "real", "text", "note_id")
    fp32 = load_embeddings(store, "real", EmbedOptions(precision="fp32"))
    bf16 = load_embeddings(store, "real", EmbedOptions(precision="bf16"))
    assert bf16_exact(bf16).all() and bf16_exact(fp32).mean() < 0.01  # really bf16 against really fp32
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.999


@pytest.mark.parametrize(("precision", "device", "cpu_bf16", "cuda_bf16", "expected"), [
    ("fp32", "cpu", True, True, "fp32"),  # a precision asked for is kept, whatever the hardware
    ("bf16", "cpu", False, False, "bf16"),
    ("fp16", "cuda", True, True, "fp16"),
    ("auto", "cpu", True, False, "bf16"),  # bf16 on a CPU only with native bf16 dot products (AVX512-BF16, AMX)
    ("auto", "cpu", False, True, "fp32"),
    ("auto", "cuda", False, True, "bf16"),
    ("auto", "cuda", True, False, "fp16"),
    ("auto", "mps", True, True, "fp32"),
])
def test_auto_precision_follows_the_hardware_and_an_asked_one_is_kept(monkeypatch, precision, device, cpu_bf16,
                                                                      cuda_bf16, expected):
    monkeypatch.setattr(embed_mod, "cpu_has_bf16", lambda: cpu_bf16)
    monkeypatch.setattr(embed_mod.torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda_bf16)
    assert embed_mod.resolve_precision(precision, device) == expected


def test_long_note_windows_are_pooled_by_their_weights():
    """A long note's vector is the weighted mean of its windows' vectors (numpy's average as the oracle):
    with weights that differ, dropping them, or dividing by them, gives other vectors."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 4)).astype(np.float32)
    owner = np.array([0, 0, 0, 1, 2, 2])
    weights = np.array([3.0, 1.0, 0.5, 2.0, 1.0, 4.0])
    expected = np.stack([np.average(vectors[owner == note], axis=0, weights=weights[owner == note])
                         for note in range(3)])
    np.testing.assert_allclose(embed_mod.pool(vectors, owner, weights, 3), expected, rtol=1e-6)


@pytest.mark.skipif(embed_mod.torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_device_asked_for_is_used_or_refused_never_swapped_for_another(store):
    """--device cuda on a machine without CUDA stops with the reason, rather than embedding on the CPU."""
    with pytest.raises(UserError, match="no CUDA GPU is available"):
        embed_corpus(store, "notes", TINY.replace(device="cuda"))
    assert store.runs("embed") == []
