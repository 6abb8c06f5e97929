"""Batched, cached embedding of a corpus.

Vectors are cached per (encoder fingerprint, max length, long-note mode, precision) and text hash,
so only texts never embedded with those settings are computed; identical texts are embedded once.
The corpus streams through in chunks (memory stays flat): each chunk is tokenised in a background
thread while the previous one computes, split into batches of similar token length under a token
budget (little padding), run in bf16 where the hardware supports it (on CPUs, through the rewrites
of core/cpu_inference.py), and written to DuckDB in its own transaction, so a killed run keeps every
finished chunk and resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from core.batching import length_batches
from core.cpu_inference import lanes
from core.devices import resolve_device
from core.encoders import Encoder, get_encoder, load_model
from core.options import EmbedOptions
from core.store import Corpus, Store, StoreError, vector_table

CHUNK_DOCS = 2048
LOAD_BATCH_ROWS = 16384
# On CPUs each core runs its own batch (cpu_inference.lanes); 4,096 tokens beat 2,048 and 8,192-16,384 there.
TOKENS_PER_BATCH = {"cpu": 4096, "mps": 16384, "cuda": 131072}
Progress = Callable[[float, str], None]


# ---- device and precision -------------------------------------------------------------------


@cache
def cpu_has_bf16() -> bool:
    """bf16 is only faster on CPUs with native bf16 dot products (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---- the encoder in a given precision --------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything that changes the vectors besides the encoder itself: part of the cache key."""

    device: str
    precision: str
    max_length: int
    long_notes: str

    @classmethod
    def resolve(cls, enc: Encoder, opts: EmbedOptions) -> Settings:
        device = resolve_device(opts.device)
        config = json.loads((Path(enc.path) / "config.json").read_text()) if (Path(enc.path) / "config.json").exists() else {}
        limit = int(config.get("max_position_embeddings", 512))
        return cls(device, resolve_precision(opts.precision, device), min(opts.max_length, limit), opts.long_notes)

    def cache_params(self, enc: Encoder) -> dict:
        # The device is left out: the same precision gives the same vectors (within float noise) anywhere.
        return {"fingerprint": enc.fingerprint, "max_length": self.max_length, "precision": self.precision,
                "long_notes": self.long_notes}


class Embedder:
    """One loaded encoder at one precision; `encode(texts)` returns float32 vectors in input order."""

    def __init__(self, enc: Encoder, settings: Settings, batch_size: int):
        self.device = settings.device
        self.precision = settings.precision
        self.model = load_model(enc, self.device, DTYPES[self.precision])
        self.tokenizer = self.model.tokenizer
        self.max_length = settings.max_length
        self.chunk_long_notes = settings.long_notes == "chunk"
        self.normalises = any(type(m).__name__ == "Normalize" for m in self.model)
        self.max_batch = batch_size
        self.token_budget = TOKENS_PER_BATCH.get(self.device, TOKENS_PER_BATCH["cpu"])

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray, int]:
        """Token ids per window, the document of each window, and how many texts were too long."""
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_overflowing_tokens=True,
                             return_attention_mask=False, return_token_type_ids=False)
        owner = np.asarray(enc["overflow_to_sample_mapping"])
        first = np.r_[True, owner[1:] != owner[:-1]]
        truncated = int(np.count_nonzero(np.bincount(owner) > 1))
        if self.chunk_long_notes:
            return enc["input_ids"], owner, truncated
        keep = np.flatnonzero(first)
        return [enc["input_ids"][i] for i in keep], owner[keep], truncated

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        return length_batches(lengths, self.token_budget, self.max_batch)

    def encode_windows(self, windows: list[list[int]]) -> np.ndarray:
        lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
        out = np.empty((len(windows), self.dimension), dtype=np.float32)
        batches = self.batches(lengths)

        def encode_batch(idx: np.ndarray) -> None:
            width = int(lengths[idx].max())
            ids = np.full((len(idx), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = windows[i]
                mask[row, : lengths[i]] = 1
            features = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                        "token_type_ids": torch.zeros_like(torch.from_numpy(ids))}
            if self.device != "cpu":
                features = {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in features.items()}
            with torch.inference_mode():  # per thread: the lanes need it too
                out[idx] = self.model(features)["sentence_embedding"].float().cpu().numpy()

        if self.device == "cpu" and len(batches) > 1:
            list(lanes().map(encode_batch, batches))
        else:
            for idx in batches:
                encode_batch(idx)
        return out

    @property
    def dimension(self) -> int:
        return self.model.get_embedding_dimension()

    def pool_windows(self, vectors: np.ndarray, owner: np.ndarray, lengths: np.ndarray, n: int) -> np.ndarray:
        """Mean of each document's window vectors, weighted by window length."""
        if len(owner) == n:
            return vectors
        pooled = np.zeros((n, vectors.shape[1]), dtype=np.float64)
        np.add.at(pooled, owner, vectors * lengths[:, None])
        pooled /= np.bincount(owner, weights=lengths, minlength=n)[:, None]
        if self.normalises:
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)
        return pooled.astype(np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        windows, owner, _ = self.tokenize(texts)
        lengths = np.fromiter((len(w) for w in windows), dtype=np.float64, count=len(windows))
        return self.pool_windows(self.encode_windows(windows), owner, lengths, len(texts))


_embedders: dict[tuple, Embedder] = {}


def embedder(enc: Encoder, settings: Settings, batch_size: int) -> Embedder:
    key = (enc.fingerprint, settings, batch_size)
    if key not in _embedders:
        _embedders[key] = Embedder(enc, settings, batch_size)
    return _embedders[key]


# ---- the cache ---------------------------------------------------------------------------------


def embedding_set(store: Store, enc: Encoder, params: dict, dim: int) -> int:
    """The id of the cached vector set for these settings (created on first use)."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]
    with store.connect() as con:  # the common case only reads, so concurrent sessions never conflict
        row = con.execute("SELECT id FROM embedding_sets WHERE cache_key = ?", [key]).fetchall()
    if row:
        return int(row[0][0])

    def create(con) -> int:
        con.execute(f"CREATE TABLE IF NOT EXISTS {vector_table(dim)} "
                    f"(set_id INTEGER, text_hash VARCHAR, vector FLOAT[{dim}], PRIMARY KEY (set_id, text_hash))")
        found = con.execute("SELECT id FROM embedding_sets WHERE cache_key = ?", [key]).fetchall()
        if found:
            return int(found[0][0])
        return int(con.execute(
            "INSERT INTO embedding_sets (cache_key, fingerprint, dim, params) VALUES (?, ?, ?, ?) RETURNING id",
            [key, enc.fingerprint, dim, json.dumps(params | {"encoder": enc.id})],
        ).fetchall()[0][0])

    return store.write(create)


def _missing_ords(store: Store, corpus: Corpus, set_id: int, dim: int) -> list[int]:
    """One document per distinct text not yet embedded with this set."""
    with store.connect() as con:
        rows = con.execute(
            f"SELECT min(ord) FROM documents d WHERE corpus_id = ? AND NOT EXISTS "
            f"(SELECT 1 FROM {vector_table(dim)} v WHERE v.set_id = ? AND v.text_hash = d.text_hash) "
            f"GROUP BY text_hash ORDER BY 1",
            [corpus.id, set_id],
        ).fetchall()
    return [r[0] for r in rows]


def _write_vectors(store: Store, set_id: int, dim: int, hashes: list[str], vectors: np.ndarray) -> None:
    table = pa.table({"text_hash": hashes,
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim)})
    def insert(con) -> None:
        with store.python_data():
            con.register("new_vectors", table)
            con.execute(f"INSERT INTO {vector_table(dim)} SELECT ?, text_hash, vector FROM new_vectors "
                        f"ON CONFLICT DO NOTHING", [set_id])
            con.unregister("new_vectors")

    store.write(insert)


def embed_corpus(store: Store, corpus_name: str, opts: EmbedOptions = EmbedOptions(),
                 progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Embed every document not yet cached; returns {"corpus", "encoder", "n", "computed", "cached", "seconds"}."""
    corpus = store.corpus(corpus_name)
    enc = get_encoder(store, opts.encoder)
    settings = Settings.resolve(enc, opts)
    params = settings.cache_params(enc)
    set_id = embedding_set(store, enc, params, enc.dim)
    todo = _missing_ords(store, corpus, set_id, enc.dim)
    cached = corpus.n_docs - _count_missing_docs(store, corpus, set_id, enc.dim)
    emb = embedder(enc, settings, opts.batch_size) if todo else None  # all cached: no model to load
    started = time.perf_counter()
    computed = truncated = 0
    chunks = [todo[i:i + CHUNK_DOCS] for i in range(0, len(todo), CHUNK_DOCS)]

    def prepare(ords: list[int]):
        frame = store.texts(corpus, ords)
        return frame["text_hash"].tolist(), emb.tokenize(frame["text"].tolist())

    with ThreadPoolExecutor(1) as tokenizer_pool, ThreadPoolExecutor(1) as writer:
        pending_write = None
        upcoming = tokenizer_pool.submit(prepare, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            hashes, (windows, owner, n_truncated) = upcoming.result()
            if i + 1 < len(chunks):
                upcoming = tokenizer_pool.submit(prepare, chunks[i + 1])
            lengths = np.fromiter((len(w) for w in windows), dtype=np.float64, count=len(windows))
            vectors = emb.pool_windows(emb.encode_windows(windows), owner, lengths, len(hashes))
            if pending_write:
                pending_write.result()
            pending_write = writer.submit(_write_vectors, store, set_id, enc.dim, hashes, vectors)
            computed += len(hashes)
            truncated += n_truncated
            if progress:
                progress(computed / len(todo), f"{computed:,} of {len(todo):,} new texts embedded")
            if should_stop and should_stop():
                break
        if pending_write:
            pending_write.result()
    seconds = time.perf_counter() - started
    result = {"corpus": corpus.name, "encoder": enc.id, "n": corpus.n_docs, "computed": computed,
              "cached": cached, "seconds": round(seconds, 4)}
    if computed:
        with store.transaction() as con:
            store.record_run(con, "embed", corpus_id=corpus.id, encoder_id=enc.id, params=opts.as_params() | params,
                             inputs={"data_hash": corpus.data_hash, "set_id": set_id},
                             result=result | {"truncated": truncated}, seconds=seconds)
    if truncated and progress:
        progress(1.0, f"{truncated:,} notes were longer than {settings.max_length} tokens and were "
                      f"{'chunked and pooled' if settings.long_notes == 'chunk' else 'truncated'}")
    return result


def _count_missing_docs(store: Store, corpus: Corpus, set_id: int, dim: int) -> int:
    with store.connect() as con:
        return con.execute(
            f"SELECT count(*) FROM documents d WHERE corpus_id = ? AND NOT EXISTS "
            f"(SELECT 1 FROM {vector_table(dim)} v WHERE v.set_id = ? AND v.text_hash = d.text_hash)",
            [corpus.id, set_id],
        ).fetchone()[0]


def load_embeddings(store: Store, corpus_name: str, opts: EmbedOptions = EmbedOptions(),
                    compute_missing: bool = True, progress: Progress | None = None) -> np.ndarray:
    """The corpus's vectors in document order (n x dim float32), embedding what is missing first."""
    corpus = store.corpus(corpus_name)
    enc = get_encoder(store, opts.encoder)
    set_id = embedding_set(store, enc, Settings.resolve(enc, opts).cache_params(enc), enc.dim)
    if _count_missing_docs(store, corpus, set_id, enc.dim):
        if not compute_missing:
            raise StoreError(f"corpus '{corpus.name}' is not fully embedded with '{enc.id}'; run embed first")
        embed_corpus(store, corpus_name, opts, progress)
    vectors = np.empty((corpus.n_docs, enc.dim), dtype=np.float32)
    with store.connect() as con:  # streamed into place by ord: no sort, no second copy of the result
        batches = con.sql(
            f"SELECT d.ord, v.vector FROM documents d JOIN {vector_table(enc.dim)} v "
            f"ON v.set_id = ? AND v.text_hash = d.text_hash WHERE d.corpus_id = ?",
            params=[set_id, corpus.id],
        ).to_arrow_reader(LOAD_BATCH_ROWS)
        filled = 0
        for batch in batches:
            vectors[batch.column(0).to_numpy()] = batch.column(1).flatten().to_numpy().reshape(-1, enc.dim)
            filled += batch.num_rows
    if filled != corpus.n_docs:
        raise StoreError(f"corpus '{corpus.name}' changed while its vectors were read; try again")
    return vectors


def embed_query(store: Store, text: str, opts: EmbedOptions = EmbedOptions()) -> np.ndarray:
    """One typed query embedded with the same encoder and settings as the corpus vectors."""
    enc = get_encoder(store, opts.encoder)
    return embedder(enc, Settings.resolve(enc, opts), opts.batch_size).encode([text])[0]
