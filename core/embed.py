"""Batched, cached embedding of a corpus.

Vectors are cached per embedding space (core/space.py: encoder fingerprint, max length, long-note
mode, precision) and text hash, so only texts never embedded in that space are computed; identical
texts are embedded once. Notes longer than the window are read whole by default when they are common
(more than LONG_SHARE of the corpus): overlapping windows, each embedded, averaged into one vector.
The corpus streams through in chunks (memory stays flat): each chunk is tokenised in a background
thread while the previous one computes, split into batches of similar token length under a token
budget (little padding), run in bf16 where the hardware supports it (on CPUs, through the rewrites
of core/cpu_inference.py), and written to DuckDB in its own transaction, so a killed run keeps every
finished chunk and resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from core.batching import length_batches
from core.cpu_inference import lanes
from core.devices import resolve_device
from core.encoders import Encoder, get_encoder, load_model
from core.options import DEFAULT_MAX_LENGTH, EmbedOptions
from core.space import EmbeddingSpace, overlap, remember, remembered, write_vectors
from core.store import Corpus, Store

CHUNK_DOCS = 2048
# Whole notes by default when more than this share of a corpus is longer than the window.
LONG_SHARE = 0.10
LONG_SAMPLE = 2000  # notes tokenised to measure that share
LOADING = 0.05  # the share of the progress bar for loading the encoder
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


def window(enc: Encoder) -> int:
    """The longest input the encoder's position embeddings allow."""
    config = Path(enc.path) / "config.json"
    return int(json.loads(config.read_text()).get("max_position_embeddings", 512)) if config.exists() else 512


@dataclass(frozen=True)
class Settings:
    """Everything that changes the vectors besides the encoder itself, and the device they run on."""

    device: str
    precision: str
    max_length: int
    long_notes: str

    @classmethod
    def resolve(cls, enc: Encoder, opts: EmbedOptions) -> Settings:
        """Options resolved for texts on their own (no corpus to judge): "auto" reads whole texts."""
        device = resolve_device(opts.device)
        return cls(device, resolve_precision(opts.precision, device),
                   min(opts.max_length or DEFAULT_MAX_LENGTH, window(enc)),
                   "chunk" if opts.long_notes == "auto" else opts.long_notes)

    @classmethod
    def of(cls, space: EmbeddingSpace, device: str = "auto") -> Settings:
        return cls(resolve_device(device), space.precision, space.max_length, space.long_notes)


class Embedder:
    """One loaded encoder (a SentenceTransformer on `settings.device`, in `settings.precision`) reading
    notes as `settings` say; `encode(texts)` returns float32 vectors in input order."""

    def __init__(self, model, settings: Settings, batch_size: int):
        self.device = settings.device
        self.precision = settings.precision
        self.model = model
        self.tokenizer = self.model.tokenizer
        self.max_length = settings.max_length
        self.chunk_long_notes = settings.long_notes == "chunk"
        self.normalises = any(type(m).__name__ == "Normalize" for m in self.model)
        self.max_batch = batch_size
        self.token_budget = TOKENS_PER_BATCH.get(self.device, TOKENS_PER_BATCH["cpu"])

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray, int]:
        """Token ids per window, the note of each window, and how many notes were longer than a window."""
        windows, owner = split_windows(self.tokenizer, texts, self.max_length)
        longer = int(np.count_nonzero(np.bincount(owner) > 1))
        if self.chunk_long_notes:
            return windows, owner, longer
        keep = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        return [windows[i] for i in keep], owner[keep], longer

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        return length_batches(lengths, self.token_budget, self.max_batch)

    def encode_windows(self, windows: list[list[int]], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors of the windows; `on_batch(windows_done)` after each batch, on the calling thread
        (Streamlit draws only from there)."""
        lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
        out = np.empty((len(windows), self.dimension), dtype=np.float32)
        batches = self.batches(lengths)

        def encode_batch(idx: np.ndarray) -> int:
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
            return len(idx)

        parallel = self.device == "cpu" and len(batches) > 1
        done = 0
        for n in (lanes().map(encode_batch, batches) if parallel else map(encode_batch, batches)):
            done += n
            if on_batch:
                on_batch(done)
        return out

    @property
    def dimension(self) -> int:
        return self.model.get_embedding_dimension()

    def pool_windows(self, vectors: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
        """One vector per note: the plain mean of its windows' vectors (renormalised when the encoder
        normalises); a one-window note keeps its window's vector exactly. The plain mean separated the
        synthetic long notes at least as well as a mean weighted by tokens (docs/results.md)."""
        if len(owner) == n:
            return vectors
        pooled = pool(vectors, owner, np.ones(len(owner)), n)
        if self.normalises:
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)
        single = np.bincount(owner, minlength=n) == 1
        pooled[single] = vectors[np.searchsorted(owner, np.flatnonzero(single))]
        return pooled.astype(np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        windows, owner, _ = self.tokenize(texts)
        return self.pool_windows(self.encode_windows(windows), owner, len(texts))


def load_embedder(enc: Encoder, settings: Settings, batch_size: int) -> Embedder:
    return Embedder(load_model(enc, settings.device, DTYPES[settings.precision]), settings, batch_size)


def split_windows(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """Every note cut into windows of at most max_length tokens (special tokens included), consecutive
    windows sharing `space.overlap` tokens; and the note of each window (ascending). Cut here, not by the
    tokenizer's overflowing tokens: tokenizers 0.23.2 returned at most two windows of a note that way
    (a 1,000-token note became 256 + 36 tokens), which silently cut long notes."""
    head, tail = special_tokens(tokenizer)
    body = max_length - len(head) - len(tail)
    step = body - overlap(max_length)
    windows, owner = [], []
    ids = tokenizer(texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False,
                    verbose=False)["input_ids"]
    for note, tokens in enumerate(ids):
        start = 0
        while True:
            windows.append(head + tokens[start:start + body] + tail)
            owner.append(note)
            if start + body >= len(tokens):
                break
            start += step
    return windows, np.asarray(owner, dtype=np.int64)


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text (BERT: [CLS] and [SEP])."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    at = next(i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare)
    return full[:at], full[at + len(bare):]


def pool(vectors: np.ndarray, owner: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Weighted mean of each note's window vectors (float64)."""
    pooled = np.zeros((n, vectors.shape[1]), dtype=np.float64)
    np.add.at(pooled, owner, vectors * weights[:, None])
    return pooled / np.bincount(owner, weights=weights, minlength=n)[:, None]


_embedders: dict[tuple, Embedder] = {}


def embedder(enc: Encoder, settings: Settings, batch_size: int) -> Embedder:
    key = (enc.fingerprint, settings, batch_size)
    if key not in _embedders:
        _embedders[key] = load_embedder(enc, settings, batch_size)
    return _embedders[key]


# ---- which space a corpus is embedded in -------------------------------------------------------


@cache
def _tokenizer(path: str, fingerprint: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def share_longer(store: Store, corpus: Corpus, enc: Encoder, max_length: int) -> float:
    """The share of the corpus's notes longer than one window (measured on up to LONG_SAMPLE notes)."""
    if corpus.n_docs == 0:
        return 0.0
    ords = np.unique(np.linspace(0, corpus.n_docs - 1, min(corpus.n_docs, LONG_SAMPLE)).astype(int)).tolist()
    texts = store.texts(corpus, ords)["text"].tolist()
    _, owner = split_windows(_tokenizer(enc.path, enc.fingerprint), texts, max_length)
    return float(np.mean(np.bincount(owner, minlength=len(texts)) > 1))


def resolve_space(store: Store, corpus: Corpus, enc: Encoder, opts: EmbedOptions) -> EmbeddingSpace:
    """The space these options ask for on this corpus. Settings left on auto (max_length 0, precision
    and long_notes "auto") are those of the space the corpus was last embedded in with the encoder,
    else the defaults: 256 tokens, the best precision of the device, and whole notes when more than
    LONG_SHARE of the notes are longer than the window."""
    known = remembered(store, corpus, enc.id)
    max_length = min(opts.max_length or (known.max_length if known else DEFAULT_MAX_LENGTH), window(enc))
    if opts.precision != "auto":
        precision = opts.precision
    else:
        precision = known.precision if known else resolve_precision("auto", resolve_device(opts.device))
    if opts.long_notes != "auto":
        long_notes = opts.long_notes
    elif known and known.max_length == max_length:
        long_notes = known.long_notes
    else:
        long_notes = "chunk" if share_longer(store, corpus, enc, max_length) > LONG_SHARE else "truncate"
    return EmbeddingSpace(enc.id, max_length, long_notes, precision)


# ---- the cache ---------------------------------------------------------------------------------


def _quiet(fraction: float, message: str = "") -> None:
    pass


def embed_corpus(store: Store, corpus_name: str, opts: EmbedOptions = EmbedOptions(),
                 progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Embed every note not yet in the corpus's space (see `resolve_space`) and remember that space.

    Returns {"corpus", "encoder", "n", "computed", "cached", "seconds", "truncated", "long_notes",
    "longer", "embedding"}: computed counts distinct texts, cached notes; longer counts the notes
    embedded now that were longer than the window, truncated those of them cut (0 with whole notes).
    Progress: loading the encoder is its own step, then it advances per batch.
    """
    report = progress or _quiet
    corpus = store.corpus(corpus_name)
    enc = get_encoder(store, opts.encoder)
    space = resolve_space(store, corpus, enc, opts)
    set_id = space.create_set(store)
    todo = space.missing_ords(store, corpus)
    cached = corpus.n_docs - space.missing(store, corpus)
    emb = None
    if todo:  # all cached: no model to load
        report(0.0, f"Loading the encoder '{enc.id}'…")
        emb = embedder(enc, Settings.of(space, opts.device), opts.batch_size)
        report(LOADING, f"Encoder '{enc.id}' loaded; embedding {len(todo):,} texts")
    started = time.perf_counter()
    computed = longer = 0
    chunks = [todo[i:i + CHUNK_DOCS] for i in range(0, len(todo), CHUNK_DOCS)]

    def prepare(ords: list[int]):
        frame = store.texts(corpus, ords)
        return frame["text_hash"].tolist(), emb.tokenize(frame["text"].tolist())

    def batch_done(n_windows: int, n_texts: int, windows_done: int) -> None:
        done = computed + n_texts * windows_done / max(n_windows, 1)
        report(LOADING + (1 - LOADING) * done / len(todo), f"{int(done):,} of {len(todo):,} new texts embedded")

    with store.released(), ThreadPoolExecutor(1) as tokenizer_pool, ThreadPoolExecutor(1) as writer:
        pending_write = None
        upcoming = tokenizer_pool.submit(prepare, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            hashes, (windows, owner, n_longer) = upcoming.result()
            if i + 1 < len(chunks):
                upcoming = tokenizer_pool.submit(prepare, chunks[i + 1])
            encoded = emb.encode_windows(windows, lambda d, w=len(windows), t=len(hashes): batch_done(w, t, d))
            vectors = emb.pool_windows(encoded, owner, len(hashes))
            if pending_write:
                pending_write.result()
            pending_write = writer.submit(write_vectors, store, set_id, enc.dim, hashes, vectors)
            computed += len(hashes)
            longer += n_longer
            if should_stop and should_stop():
                break
        if pending_write:
            pending_write.result()
    seconds = time.perf_counter() - started
    remember(store, corpus, space)
    result = {"corpus": corpus.name, "encoder": enc.id, "n": corpus.n_docs, "computed": computed,
              "cached": cached, "seconds": round(seconds, 4),
              "truncated": longer if space.long_notes == "truncate" else 0, "long_notes": space.long_notes,
              "longer": longer, "embedding": space.public()}
    if computed:
        with store.transaction() as con:
            store.record_run(con, "embed", corpus_id=corpus.id, encoder_id=enc.id,
                             params=opts.as_params() | space.cache_params(enc) | {"encoder": enc.id},
                             inputs={"data_hash": corpus.data_hash, "set_id": set_id}, result=result, seconds=seconds)
    if longer:
        report(1.0, long_note_summary(result))
    return result


def long_note_summary(result: dict) -> str:
    """What happened to the notes longer than the window, in words (the CLI's stderr, the Data page)."""
    window_ = result["embedding"]["max_length"]
    longer = f"{result['longer']:,} of the {result['computed']:,} texts embedded now were longer than {window_} tokens"
    if result["long_notes"] == "chunk":
        return f"{longer} and were read whole (overlapping {window_}-token windows, averaged)"
    return f"{longer} and were cut to their first {window_} tokens (long notes: truncate)"


def corpus_space(store: Store, corpus_name: str, encoder_id: str, progress: Progress | None = None) -> EmbeddingSpace:
    """The corpus's space for this encoder (the one it was last embedded in, else the defaults), with
    every note embedded there: what readers of vectors use unless told otherwise."""
    return EmbeddingSpace(**embed_corpus(store, corpus_name, EmbedOptions(encoder=encoder_id), progress)["embedding"])


def vectors_in(store: Store, corpus_name: str, space: EmbeddingSpace, progress: Progress | None = None) -> np.ndarray:
    """The corpus's vectors in this space, embedding the notes still missing there first."""
    corpus = store.corpus(corpus_name)
    if space.missing(store, corpus):
        embed_corpus(store, corpus_name, EmbedOptions(encoder=space.encoder, max_length=space.max_length,
                                                      long_notes=space.long_notes, precision=space.precision), progress)
    return space.load(store, corpus)


def load_embeddings(store: Store, corpus_name: str, opts: EmbedOptions = EmbedOptions(),
                    compute_missing: bool = True, progress: Progress | None = None) -> np.ndarray:
    """The corpus's vectors in the space these options resolve to, in note order (n x dim float32),
    embedding what is missing first."""
    corpus = store.corpus(corpus_name)
    if compute_missing:
        space = EmbeddingSpace(**embed_corpus(store, corpus_name, opts, progress)["embedding"])
    else:
        space = resolve_space(store, corpus, get_encoder(store, opts.encoder), opts)
    return space.load(store, corpus)


def embed_query(store: Store, text: str, space: EmbeddingSpace) -> np.ndarray:
    """One typed query embedded in the space of the corpus vectors it is compared with."""
    return embedder(get_encoder(store, space.encoder), Settings.of(space), EmbedOptions().batch_size).encode([text])[0]
