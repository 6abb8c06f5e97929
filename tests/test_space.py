"""Embedding spaces: whole notes in overlapping windows, the space a corpus remembers, and every
reader of vectors using it (tiny random BERT, real DuckDB files)."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer

import core.embed as embed_mod
from core.corpus import ingest_frame
from core.embed import Embedder, embed_corpus, load_embeddings, share_longer, split_windows, window
from core.encoders import get_encoder
from core.options import EmbedOptions
from core.space import EmbeddingSpace, remembered
from core.store import Store, StoreError
from tests.conftest import record_calls

WINDOW = 32  # tokens per window, [CLS] and [SEP] included: 30 of the note's own
CHUNK = EmbedOptions(encoder="tiny", precision="fp32", max_length=WINDOW, long_notes="chunk")


@pytest.fixture()
def tokenizer(models_dir):
    return AutoTokenizer.from_pretrained(str(models_dir / "tiny"))


def words(n: int) -> str:
    """A text of exactly n tokens ("chest" is one WordPiece token)."""
    return " ".join(["chest"] * n)


def oracle_windows(ids: list[int], window: int) -> list[list[int]]:
    """Overlapping windows as the space defines them, written out independently: `window - 2` of the
    note's tokens each, consecutive windows sharing window // 8 of them, the last reaching the end."""
    content, shared = window - 2, window // 8
    out, start = [], 0
    while True:
        out.append(ids[start:start + content])
        if start + content >= len(ids):
            return out
        start += content - shared


@pytest.mark.parametrize("n", [1, 29, 30, 31, 56, 57, 200])
def test_windows_cover_the_note_with_no_empty_window(tokenizer, n):
    ids = tokenizer(words(n), add_special_tokens=False)["input_ids"]
    assert len(ids) == n
    windows, owner = split_windows(tokenizer, [words(n)], WINDOW)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert [w[1:-1] for w in windows] == oracle_windows(ids, WINDOW)
    assert all(w[0] == cls and w[-1] == sep and len(w) > 2 for w in windows)  # never only special tokens
    assert owner.tolist() == [0] * len(windows) and (len(windows) == 1) == (n <= WINDOW - 2)


def test_cutting_a_long_note_prints_no_warning(tokenizer, capfd):
    """The tokenizer's "longer than the maximum sequence length ... indexing errors" warning would be false
    here (the windows are cut to fit) and would land among the CLI's progress lines."""
    windows, _ = split_windows(tokenizer, [words(2000)], WINDOW)
    assert len(windows) > 1 and capfd.readouterr().err == ""


@pytest.mark.parametrize(("config", "expected"), [
    ({"max_position_embeddings": 128}, 128),
    ({"hidden_size": 32}, 512),  # a config that does not say: BERT's 512
    (None, 512),  # no config.json at all
])
def test_the_window_is_the_encoders_position_limit(db_path, models_dir, tmp_path, config, expected):
    folder = tmp_path / "encoder"
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    enc = dataclasses.replace(get_encoder(Store(db_path), "tiny"), path=str(folder))
    assert window(enc) == expected


def test_the_long_share_is_measured_on_an_even_sample_from_first_to_last_note(db_path, models_dir, monkeypatch):
    """Past LONG_SAMPLE notes, the share of long notes is measured on LONG_SAMPLE distinct notes spread
    over the corpus, the first and the last included; a note of exactly two windows is long."""
    monkeypatch.setattr(embed_mod, "LONG_SAMPLE", 20)
    texts = [f"short note {i}" for i in range(100)]
    texts[0], texts[99] = words(40), words(300)  # two windows; ten windows
    store = Store(db_path)
    ingest_frame(store, pd.DataFrame({"text": texts}), "c", "text")
    tokenised = record_calls(monkeypatch, embed_mod, "split_windows")
    share = share_longer(store, store.corpus("c"), get_encoder(store, "tiny"), WINDOW)
    sampled = [texts.index(text) for text in tokenised[0][0][1]]
    assert len(set(sampled)) == len(sampled) == 20 and sampled[0] == 0 and sampled[-1] == 99
    assert max(np.diff(sampled)) <= 6  # 99 / 19 apart, give or take rounding
    assert share == pytest.approx(2 / 20)


def test_the_long_share_of_one_note_and_of_none(db_path, models_dir):
    store = Store(db_path)
    ingest_frame(store, pd.DataFrame({"text": [words(100)]}), "one", "text")
    corpus, enc = store.corpus("one"), get_encoder(store, "tiny")
    assert share_longer(store, corpus, enc, WINDOW) == 1.0
    assert share_longer(store, dataclasses.replace(corpus, n_docs=0), enc, WINDOW) == 0.0


def test_a_note_of_exactly_the_window_is_neither_cut_nor_chunked(db_path, models_dir):
    store = Store(db_path)
    ingest_frame(store, pd.DataFrame({"text": [words(WINDOW - 2), words(WINDOW - 1)]}), "edge", "text")
    result = embed_corpus(store, "edge", CHUNK)
    assert (result["longer"], result["truncated"], result["long_notes"]) == (1, 0, "chunk")
    cut = embed_corpus(store, "edge", CHUNK.replace(long_notes="truncate"))
    assert (cut["longer"], cut["truncated"], cut["long_notes"]) == (1, 1, "truncate")


def test_short_notes_pool_to_exactly_their_truncated_vectors(db_path, models_dir, synthetic_df, tokenizer):
    store = Store(db_path)
    notes = pd.concat([synthetic_df.head(30)["text"], pd.Series([words(300), words(95)])], ignore_index=True)
    ingest_frame(store, pd.DataFrame({"text": notes}), "mixed", "text")
    whole = load_embeddings(store, "mixed", CHUNK.replace(max_length=64))
    cut = load_embeddings(store, "mixed", CHUNK.replace(max_length=64, long_notes="truncate"))
    short = np.array([len(tokenizer(t)["input_ids"]) <= 64 for t in notes])
    assert short.sum() >= 20 and not short[30:].any()
    np.testing.assert_array_equal(whole[short], cut[short])
    assert not any(np.allclose(whole[i], cut[i]) for i in np.flatnonzero(~short))


def test_a_long_note_is_the_mean_of_its_windows(db_path, models_dir, tokenizer):
    store = Store(db_path)
    note = "chest pain radiating to the left arm, troponin raised; " * 12 + "stent placed in the LAD."
    ingest_frame(store, pd.DataFrame({"text": [note, "short note"]}), "one", "text")
    got = load_embeddings(store, "one", CHUNK)[0]

    model = SentenceTransformer(str(models_dir / "tiny"), device="cpu")  # plain, one window at a time
    ids = tokenizer(note, add_special_tokens=False)["input_ids"]
    vectors = []
    for w in oracle_windows(ids, WINDOW):
        full = torch.tensor([[tokenizer.cls_token_id, *w, tokenizer.sep_token_id]])
        with torch.inference_mode():
            out = model({"input_ids": full, "attention_mask": torch.ones_like(full),
                         "token_type_ids": torch.zeros_like(full)})
        vectors.append(out["sentence_embedding"][0].numpy())
    assert len(vectors) > 3
    expected = np.mean(np.array(vectors), axis=0)  # the tiny encoder does not normalise
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_a_100k_character_note_streams_into_one_vector(db_path, models_dir):
    store = Store(db_path)
    huge = ("cardiology chest pain troponin angina stent " * 2400)[:100_000]
    ingest_frame(store, pd.DataFrame({"text": [huge, "short note"]}), "huge", "text")
    result = embed_corpus(store, "huge", CHUNK.replace(max_length=256))
    X = load_embeddings(store, "huge", CHUNK.replace(max_length=256), compute_missing=False)
    assert (result["computed"], result["longer"], result["truncated"]) == (2, 1, 0)
    assert X.shape == (2, 32) and np.isfinite(X).all()


@pytest.mark.parametrize("n_long, expected", [(2, "truncate"), (3, "chunk")])
def test_whole_notes_by_default_when_more_than_a_tenth_are_long(db_path, models_dir, n_long, expected):
    store = Store(db_path)
    texts = [f"{words(100)} note {i}" for i in range(n_long)] + [f"short {i}" for i in range(20 - n_long)]
    ingest_frame(store, pd.DataFrame({"text": texts}), "c", "text")
    result = embed_corpus(store, "c", EmbedOptions(encoder="tiny", max_length=WINDOW))
    assert result["long_notes"] == expected and result["longer"] == n_long
    assert result["truncated"] == (n_long if expected == "truncate" else 0)
    assert remembered(store, store.corpus("c"), "tiny") == EmbeddingSpace(**result["embedding"])
    # later runs on defaults stay in that space, whatever it was decided from
    assert embed_corpus(store, "c", EmbedOptions(encoder="tiny"))["embedding"] == result["embedding"]


def test_progress_loads_the_encoder_first_then_moves_per_batch(db_path, models_dir, synthetic_df):
    store = Store(db_path)
    ingest_frame(store, synthetic_df, "notes", "text", "note_id")
    calls: list[tuple[float, str]] = []
    embed_corpus(store, "notes", CHUNK.replace(batch_size=4), progress=lambda f, m="": calls.append((f, m)))
    assert calls[0][1].startswith("Loading the encoder")
    batches = [f for f, m in calls if "new texts embedded" in m]
    assert len(batches) >= 120 // 4  # one 2,048-note chunk, yet at least one step per batch of 4
    assert batches == sorted(batches) and batches[-1] == pytest.approx(1.0)


def test_a_store_embedded_before_spaces_existed_remembers_its_latest_space(db_path, models_dir, synthetic_df):
    store = Store(db_path)
    ingest_frame(store, synthetic_df.head(20), "old", "text", "note_id")
    embed_corpus(store, "old", CHUNK.replace(long_notes="truncate"))
    space = remembered(store, store.corpus("old"), "tiny")
    for _ in range(2):  # the migration, run again on a store that already has the table, changes nothing
        with store.connect() as con:
            con.execute("DELETE FROM corpus_spaces")
            con.execute("DELETE FROM schema_version WHERE version = 3")
        reopened = Store(db_path)
        assert remembered(reopened, reopened.corpus("old"), "tiny") == space
    assert space == EmbeddingSpace("tiny", WINDOW, "truncate", "fp32")


def test_every_reader_uses_the_space_the_corpus_was_embedded_in(db_path, models_dir, synthetic_df, monkeypatch):
    from core.clusters import cluster_corpus
    from core.evaluation.corpus import evaluate_corpus
    from core.labels import add_labels, predict_from_labels
    from core.maps import embedded, project_corpus
    from core.options import ClusterOptions, EvaluateOptions, ProjectOptions

    store = Store(db_path)
    ingest_frame(store, synthetic_df, "clinic", "text", "note_id", ["specialty"])
    space = EmbeddingSpace(**embed_corpus(store, "clinic", CHUNK)["embedding"])

    def recomputed(*args, **kwargs):
        raise AssertionError("vectors were computed again")

    monkeypatch.setattr(Embedder, "encode_windows", recomputed)
    assert embedded(store, "clinic", "tiny")
    assert project_corpus(store, "clinic", ProjectOptions(encoder="tiny", method="pca"))["embedding"] == space.public()
    assert cluster_corpus(store, "clinic", ClusterOptions(encoder="tiny", method="kmeans", k=4))["embedding"] \
        == space.public()
    evaluated = evaluate_corpus(store, "clinic", ["tiny"], EvaluateOptions(label="specialty", shots="1", seeds=1))
    assert evaluated["embedding"] == {"tiny": space.public()}
    add_labels(store, "clinic", "mine", [0, 1], "a")
    add_labels(store, "clinic", "mine", [2, 3], "b")
    assert len(predict_from_labels(store, "clinic", "tiny", "mine").model.predictions) == 120
    # the vectors read are the chunk space's, not the default truncation's
    X = space.load(store, store.corpus("clinic"))
    assert X.shape == (120, 32) and space.long_notes == "chunk"


def test_loading_needs_every_note_embedded_and_duplicate_texts_share_one_vector(db_path, models_dir):
    store = Store(db_path)
    texts = ["chest pain", "knee pain", "chest pain", "rash"]  # a duplicate text: one stored vector, two notes
    ingest_frame(store, pd.DataFrame({"text": texts}), "ward", "text")
    embed_corpus(store, "ward", EmbedOptions(encoder="tiny"))
    space = remembered(store, store.corpus("ward"), "tiny")
    vectors = space.load(store, store.corpus("ward"))
    assert vectors.shape[0] == 4 and np.array_equal(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])

    ingest_frame(store, pd.DataFrame({"text": ["rash", "chest pain", "new cough"]}), "clinic", "text")
    clinic = store.corpus("clinic")
    assert space.missing(store, clinic) == 1
    with pytest.raises(StoreError, match=r"corpus 'clinic' is not fully embedded .*notespace embed --corpus clinic"):
        space.load(store, clinic)
    with pytest.raises(StoreError, match="not fully embedded"):  # a space nothing was embedded in yet
        dataclasses.replace(space, max_length=64).load(store, clinic)
