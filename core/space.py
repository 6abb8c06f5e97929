"""An embedding space: one encoder with the settings that shape its vectors, and where they are stored.

Two vectors can be compared only if they come from the same space: the same encoder weights, the
same window (max_length), the same treatment of notes longer than the window (truncated to their
first window, or read whole in overlapping windows and pooled) and the same precision. A space is a
plain value (no torch): it finds its stored vector set, counts the notes still missing vectors and
reads them. A corpus remembers the space it was last embedded in for each encoder (`remembered`),
and every page and verb that reads vectors uses that space, so the Data page's choice carries to
maps, clusters, evaluation, labels, search and Compare.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from core.encoders import Encoder, get_encoder
from core.stages import cache_key
from core.store import Corpus, Store, StoreError, vector_table

LONG_NOTE_MODES = ("truncate", "chunk")
LOAD_BATCH_ROWS = 16384


def overlap(max_length: int) -> int:
    """Tokens shared by consecutive windows of a long note, so no sentence is only seen cut in two."""
    return max_length // 8


@dataclass(frozen=True)
class EmbeddingSpace:
    encoder: str
    max_length: int  # tokens per window, special tokens included
    long_notes: str  # "truncate": a long note is its first window; "chunk": every window, pooled
    precision: str  # "fp32" | "bf16" | "fp16", resolved

    def __post_init__(self):
        if self.long_notes not in LONG_NOTE_MODES:
            raise ValueError(f"long_notes must be one of {LONG_NOTE_MODES}, not {self.long_notes!r}")

    def public(self) -> dict:
        """The `embedding` key of the JSON of every verb that reads vectors."""
        return asdict(self)

    def describe(self) -> str:
        how = "whole notes" if self.long_notes == "chunk" else "first window of each note"
        return f"{self.encoder} ({how}, {self.max_length}-token windows, {self.precision})"

    def cache_params(self, enc: Encoder) -> dict:
        # The device is left out: the same precision gives the same vectors (within float noise) anywhere.
        params = {"fingerprint": enc.fingerprint, "max_length": self.max_length, "precision": self.precision,
                  "long_notes": self.long_notes}
        chunked = {"overlap": overlap(self.max_length), "pooling": "mean"}
        return params | (chunked if self.long_notes == "chunk" else {})

    def _key(self, enc: Encoder) -> str:
        return cache_key(self.cache_params(enc))

    def stored_set(self, store: Store) -> int | None:
        """The id of this space's stored vector set, if any. Read-only, so opening a page never writes."""
        return self._located(store)[1]

    def _located(self, store: Store) -> tuple[Encoder, int | None]:
        enc = get_encoder(store, self.encoder)
        with store.connect() as con:
            row = con.execute("SELECT id FROM embedding_sets WHERE cache_key = ?", [self._key(enc)]).fetchall()
        return enc, (int(row[0][0]) if row else None)

    def create_set(self, store: Store) -> int:
        """The id of this space's vector set, created (with its vector table) on first use."""
        enc, found = self._located(store)  # the common case only reads: concurrent sessions never conflict
        if found is not None:
            return found
        key = self._key(enc)

        def create(con) -> int:
            con.execute(f"CREATE TABLE IF NOT EXISTS {vector_table(enc.dim)} (set_id INTEGER, text_hash VARCHAR, "
                        f"vector FLOAT[{enc.dim}], PRIMARY KEY (set_id, text_hash))")
            row = con.execute("SELECT id FROM embedding_sets WHERE cache_key = ?", [key]).fetchall()
            if row:
                return int(row[0][0])
            return int(con.execute(
                "INSERT INTO embedding_sets (cache_key, fingerprint, dim, params) VALUES (?, ?, ?, ?) RETURNING id",
                [key, enc.fingerprint, enc.dim, json.dumps(self.cache_params(enc) | {"encoder": enc.id})],
            ).fetchall()[0][0])

        return store.write(create)

    def _without_vectors(self, store: Store, corpus: Corpus, select: str, tail: str = "") -> list[tuple]:
        enc, set_id = self._located(store)
        dim = enc.dim
        with store.connect() as con:
            if set_id is None or not con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = ?",
                                                 [vector_table(dim)]).fetchall():
                return con.execute(f"SELECT {select} FROM documents d WHERE corpus_id = ? {tail}",
                                   [corpus.id]).fetchall()
            return con.execute(
                f"SELECT {select} FROM documents d WHERE corpus_id = ? AND NOT EXISTS "
                f"(SELECT 1 FROM {vector_table(dim)} v WHERE v.set_id = ? AND v.text_hash = d.text_hash) {tail}",
                [corpus.id, set_id]).fetchall()

    def missing(self, store: Store, corpus: Corpus) -> int:
        """How many notes of the corpus have no vector in this space yet."""
        return int(self._without_vectors(store, corpus, "count(*)")[0][0])

    def missing_ords(self, store: Store, corpus: Corpus) -> list[int]:
        """One note per distinct text still without a vector in this space, in corpus order."""
        return [r[0] for r in self._without_vectors(store, corpus, "min(ord)", "GROUP BY text_hash ORDER BY 1")]

    def load(self, store: Store, corpus: Corpus) -> np.ndarray:
        """The corpus's vectors in this space, in note order (n x dim float32); every note must have one."""
        enc, set_id = self._located(store)
        dim = enc.dim
        vectors = np.empty((corpus.n_docs, dim), dtype=np.float32)
        filled = 0
        if set_id is not None:
            with store.connect() as con:  # streamed into place by ord: no sort, no second copy of the result
                batches = con.sql(
                    f"SELECT d.ord, v.vector FROM documents d JOIN {vector_table(dim)} v "
                    f"ON v.set_id = ? AND v.text_hash = d.text_hash WHERE d.corpus_id = ?",
                    params=[set_id, corpus.id],
                ).to_arrow_reader(LOAD_BATCH_ROWS)
                for batch in batches:
                    vectors[batch.column(0).to_numpy()] = batch.column(1).flatten().to_numpy().reshape(-1, dim)
                    filled += batch.num_rows
        if filled != corpus.n_docs:  # one row a note (ords are unique): fewer rows, notes without vectors
            raise StoreError(f"corpus '{corpus.name}' is not fully embedded in this space ({self.describe()}); "
                             f"run `notespace embed --corpus {corpus.name} --encoder {self.encoder}` first")
        return vectors


def write_vectors(store: Store, set_id: int, dim: int, hashes: list[str], vectors: np.ndarray) -> None:
    """Add vectors to a set in one transaction; rows already there are kept (a retried write adds nothing)."""
    table = pa.table({"text_hash": hashes,
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim)})
    def insert(con) -> None:
        with store.python_data():
            con.register("new_vectors", table)
            con.execute(f"INSERT INTO {vector_table(dim)} SELECT ?, text_hash, vector FROM new_vectors "
                        f"ON CONFLICT DO NOTHING", [set_id])
            con.unregister("new_vectors")

    store.write(insert)


def remembered(store: Store, corpus: Corpus, encoder_id: str) -> EmbeddingSpace | None:
    """The space the corpus was last embedded in with this encoder (None: never embedded with it)."""
    with store.connect() as con:
        row = con.execute("SELECT space FROM corpus_spaces WHERE corpus_id = ? AND encoder_id = ?",
                          [corpus.id, encoder_id]).fetchall()
    return EmbeddingSpace(**json.loads(row[0][0])) if row else None


def remember(store: Store, corpus: Corpus, space: EmbeddingSpace) -> None:
    if remembered(store, corpus, space.encoder) == space:
        return  # unchanged: reading a corpus never writes

    def write(con) -> None:
        con.execute("INSERT OR REPLACE INTO corpus_spaces (corpus_id, encoder_id, space) VALUES (?, ?, ?)",
                    [corpus.id, space.encoder, json.dumps(space.public())])

    store.write(write)


def ready(store: Store, corpus_name: str, encoder_id: str) -> EmbeddingSpace | None:
    """The corpus's space for this encoder when every note has its vector there, else None."""
    corpus = store.corpus(corpus_name)
    space = remembered(store, corpus, get_encoder(store, encoder_id).id)
    return space if space is not None and not space.missing(store, corpus) else None
