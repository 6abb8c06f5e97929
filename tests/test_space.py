"""Embedding spaces: whole notes in overlapping windows, the space a corpus remembers, and every
reader of vectors using it (tiny random BERT, real DuckDB files)."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize
from transformers import AutoTokenizer

import core.embed as embed_mod
from core.corpus import ingest_frame
from core.embed import (LOADING, Embedder, Settings, corpus_space, embed_corpus, load_embeddings, long_note_summary,
                        resolve_space, share_longer, split_windows, vectors_in, window)
from core.encoders import get_encoder
from core.options import EmbedOptions
from core.space import EmbeddingSpace, remembered
from core.store import Store, StoreError, vector_table
from tests.conftest import record_calls
from tests.test_claims import bf16_exact

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


def alone(model, ids: list[int]) -> np.ndarray:
    """The vector of one window run through the plain model on its own: no batch, no padding."""
    full = torch.tensor([ids])
    with torch.inference_mode():
        out = model({"input_ids": full, "attention_mask": torch.ones_like(full),
                     "token_type_ids": torch.zeros_like(full)})
    return out["sentence_embedding"][0].float().numpy()


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
    here (the windows are cut to fit) and would land among the CLI's progress lines. transformers' warnings
    are switched back on for this test: `load_model` silences them for the whole process, so after any test
    that loaded an encoder the warning would not show whatever `split_windows` asked."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        windows, _ = split_windows(tokenizer, [words(2000)], WINDOW)
    finally:
        hf_logging.set_verbosity(before)
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
    vectors = [alone(model, [tokenizer.cls_token_id, *w, tokenizer.sep_token_id]) for w in oracle_windows(ids, WINDOW)]
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


NOTE = "chest pain radiating to the left arm, troponin raised; stent placed in the LAD after angiography. "


def test_windows_come_back_in_order_each_as_if_run_alone_whatever_batch_it_shared(models_dir, tokenizer, monkeypatch):
    """Windows of many lengths, cut into padded batches of at most 3 and run side by side on the CPU's lanes,
    come back in input order, float32, each equal to the window run on its own through the plain model;
    progress is the count of windows done after each batch. One batch runs on the calling thread alone."""
    model = SentenceTransformer(str(models_dir / "tiny"), device="cpu")
    emb = Embedder(model, Settings("cpu", "fp32", WINDOW, "chunk"), batch_size=3)
    texts = [NOTE[:n] for n in (5, 90, 12, 60, 30, 97, 2, 45)] + [NOTE * 2]
    windows, _ = split_windows(tokenizer, texts, WINDOW)
    assert len(windows) == 10 and len({len(w) for w in windows}) >= 6
    expected = np.stack([alone(model, w) for w in windows])
    lanes = record_calls(monkeypatch, embed_mod, "lanes")
    done = []
    got = emb.encode_windows(windows, done.append)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert done == [3, 6, 9, 10] and len(lanes) == 1  # four batches, on the lanes
    for count, lanes_used in [(5, 2), (3, 2)]:  # two batches: on the lanes; one batch: not
        done.clear()
        np.testing.assert_allclose(emb.encode_windows(windows[:count], done.append), expected[:count], atol=2e-5)
        assert done[-1] == count and len(lanes) == lanes_used


@pytest.mark.parametrize("normalises", [False, True])
def test_a_note_is_the_mean_of_its_windows_made_unit_length_when_the_encoder_normalises(models_dir, tokenizer,
                                                                                      normalises):
    """Each note's vector is the plain mean of its windows' vectors (numpy's mean of the windows run alone as
    the oracle), divided by its length when the encoder ends in a Normalize module; a note of one window is
    that window's vector, a note of exactly two windows the mean of both."""
    model = SentenceTransformer(str(models_dir / "tiny"), device="cpu")
    if normalises:
        model = SentenceTransformer(modules=[*model, Normalize()], device="cpu")
    emb = Embedder(model, Settings("cpu", "fp32", WINDOW, "chunk"), batch_size=8)
    texts = [NOTE * 4, "short note", NOTE * 2, NOTE[:40]]
    expected = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        vectors = np.array([alone(model, [tokenizer.cls_token_id, *w, tokenizer.sep_token_id])
                            for w in oracle_windows(ids, WINDOW)])
        mean = vectors.mean(axis=0)
        expected.append((mean / np.linalg.norm(mean) if normalises else mean, len(vectors)))
    assert [n for _, n in expected][1:] == [1, 2, 1] and expected[0][1] > 3
    got = emb.encode(texts)
    assert got.dtype == np.float32 and got.shape == (4, 32)
    np.testing.assert_allclose(got, np.array([v for v, _ in expected]), atol=2e-5)
    if normalises:
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    else:
        assert not np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-3)


def test_vectors_in_a_space_embed_the_missing_notes_there_then_read_that_set_in_note_order(db_path, models_dir,
                                                                                          monkeypatch):
    """`vectors_in` embeds what is missing in exactly the space asked for (not the one the corpus remembers:
    here every setting differs), with progress, and returns that space's stored vectors by note, read here
    straight from DuckDB; once nothing is missing it embeds nothing."""
    store = Store(db_path)
    texts = [NOTE * 3, "short note", "chest pain", "short note"]
    ingest_frame(store, pd.DataFrame({"text": texts}), "c", "text")
    embed_corpus(store, "c", CHUNK)  # remembered: 32-token windows, whole notes, fp32
    asked = EmbeddingSpace("tiny", 16, "truncate", "bf16")
    said = []
    X = vectors_in(store, "c", asked, progress=lambda f, m="": said.append(m))
    assert any("new texts embedded" in m for m in said)
    with store.connect() as con:
        rows = con.execute(
            f"SELECT d.ord, v.vector FROM documents d JOIN {vector_table(32)} v ON v.text_hash = d.text_hash "
            f"JOIN embedding_sets s ON s.id = v.set_id WHERE d.corpus_id = ? AND s.params->>'max_length' = '16' "
            f"AND s.params->>'long_notes' = 'truncate' AND s.params->>'precision' = 'bf16' ORDER BY d.ord",
            [store.corpus("c").id]).fetchall()
    assert [r[0] for r in rows] == [0, 1, 2, 3]
    np.testing.assert_array_equal(X, np.array([r[1] for r in rows], dtype=np.float32))
    chunked = load_embeddings(store, "c", CHUNK, compute_missing=False)
    assert not np.allclose(X, chunked, atol=1e-2)
    assert bf16_exact(X).all() and bf16_exact(chunked).mean() < 0.01  # really run in bf16, the other in fp32
    embedded = record_calls(monkeypatch, embed_mod, "embed_corpus")
    np.testing.assert_array_equal(vectors_in(store, "c", asked), X)
    assert embedded == []


def test_progress_says_each_step_and_moves_by_the_texts_done_across_chunks(db_path, models_dir, synthetic_df,
                                                                             tokenizer, monkeypatch):
    """Loading is step 0 to LOADING; then, per batch, LOADING + (1 - LOADING) x the share of the new texts
    done (a chunk's texts counted by the share of its windows done), so each chunk ends on its exact share;
    the last word is the long-note summary. The chunks (here 50, 50, 20 notes) are embedded in order, each
    once: a run stopped after the first has embedded exactly the first 50 notes, and `longer` counts the long
    notes of every chunk (the tokenizer as the oracle)."""
    monkeypatch.setattr(embed_mod, "CHUNK_DOCS", 50)
    store = Store(db_path)
    ingest_frame(store, synthetic_df, "notes", "text", "note_id")
    long = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) > WINDOW - 2 for t in synthetic_df["text"])
    assert 10 < long < 110
    calls: list[tuple[float, str]] = []
    result = embed_corpus(store, "notes", CHUNK.replace(batch_size=4), progress=lambda f, m="": calls.append((f, m)))
    assert calls[:2] == [(0.0, "Loading the encoder 'tiny'…"),
                         (LOADING, "Encoder 'tiny' loaded; embedding 120 texts")]
    assert calls[-1] == (1.0, long_note_summary(result))
    steps = calls[2:-1]
    assert all(m.endswith(" of 120 new texts embedded") for _, m in steps) and len(steps) >= 120 // 4
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions)
    for done in (50, 100, 120):  # the end of each chunk, exactly
        assert any(f == pytest.approx(LOADING + (1 - LOADING) * done / 120) and m.startswith(f"{done} of")
                   for f, m in steps)
    assert all(int(m.split()[0]) == int((f - LOADING) / (1 - LOADING) * 120 + 1e-9) for f, m in steps)
    assert (result["computed"], result["longer"], result["truncated"]) == (120, long, 0)
    space = EmbeddingSpace(**result["embedding"])
    assert space.load(store, store.corpus("notes")).shape == (120, 32)

    ingest_frame(store, synthetic_df, "again", "text", "note_id")  # the same texts: all cached
    assert embed_corpus(store, "again", CHUNK, progress=lambda f, m="": calls.append((f, m)))["computed"] == 0
    other = CHUNK.replace(max_length=64)
    embed_corpus(store, "again", other, should_stop=lambda: True)
    missing = EmbeddingSpace("tiny", 64, "chunk", "fp32").missing_ords(store, store.corpus("again"))
    assert missing == list(range(50, 120))  # the first chunk, and only it


def test_one_new_short_note_ends_progress_at_one(db_path, models_dir):
    store = Store(db_path)
    ingest_frame(store, pd.DataFrame({"text": ["short note"]}), "one", "text")
    calls = []
    embed_corpus(store, "one", CHUNK, progress=lambda f, m="": calls.append((f, m)))
    assert calls[-1] == (1.0, "1 of 1 new texts embedded")


def test_a_new_corpus_gets_the_devices_best_precision_and_a_chosen_long_note_mode_is_kept(db_path, models_dir,
                                                                                          monkeypatch):
    """Precision "auto" on a corpus never embedded with the encoder: the device's best (bf16 on a CPU with
    native bf16 dot products). long_notes "auto" after a run that chose truncation explicitly, on a corpus
    where more than a tenth of the notes are long: still truncation, the corpus's space, not the default."""
    monkeypatch.setattr(embed_mod, "cpu_has_bf16", lambda: True)
    store = Store(db_path)
    texts = [f"{words(100)} note {i}" for i in range(3)] + [f"short {i}" for i in range(17)]
    ingest_frame(store, pd.DataFrame({"text": texts}), "c", "text")
    corpus, enc = store.corpus("c"), get_encoder(store, "tiny")
    on_cpu = EmbedOptions(encoder="tiny", device="cpu", max_length=WINDOW)
    assert resolve_space(store, corpus, enc, on_cpu) == EmbeddingSpace("tiny", WINDOW, "chunk", "bf16")
    embed_corpus(store, "c", CHUNK.replace(long_notes="truncate"))
    assert resolve_space(store, corpus, enc, on_cpu) == EmbeddingSpace("tiny", WINDOW, "truncate", "fp32")


def test_the_corpus_space_and_load_embeddings_report_progress_while_they_embed(db_path, models_dir):
    store = Store(db_path)
    ingest_frame(store, pd.DataFrame({"text": ["chest pain", "knee pain", NOTE * 2]}), "c", "text")
    said = []
    space = corpus_space(store, "c", "tiny", progress=lambda f, m="": said.append(m))
    assert space == remembered(store, store.corpus("c"), "tiny") and space.missing(store, store.corpus("c")) == 0
    assert "3 of 3 new texts embedded" in said
    said.clear()
    X = load_embeddings(store, "c", CHUNK, progress=lambda f, m="": said.append(m))
    assert X.shape == (3, 32) and "3 of 3 new texts embedded" in said
