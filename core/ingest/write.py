"""Pass 2 of an ingest: the checked input written in one transaction (corpus row, documents, typed
metadata table, run), so a failed, rejected or cancelled ingest leaves the store exactly as it was."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from core.ingest import IngestError, Progress, Source
from core.ingest.check import Plan
from core.ingest.delete import delete_rows, refuse_if_busy
from core.ingest.profiles import is_missing
from core.ingest.read import read_chunks, wanted_columns
from core.store import Store, meta_table, quote


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _prepare(chunk: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The chunk as stored: metadata values without stray leading or trailing spaces."""
    chunk = chunk.copy()
    for col in plan.meta:
        chunk[col] = chunk[col].astype(str).str.strip()
    return chunk


def _typed_meta(chunk: pd.DataFrame, meta: dict[str, str]) -> pd.DataFrame:
    out = {}
    for col, kind in meta.items():
        raw = chunk[col].astype(str)
        missing = is_missing(raw)
        if kind == "numeric":
            out[col] = pd.to_numeric(raw.where(~missing), errors="coerce").astype("float64")
        elif kind == "date":
            out[col] = pd.to_datetime(raw.where(~missing), errors="coerce", format="mixed")
        else:
            out[col] = raw.where(~missing, None).astype(object)
    return pd.DataFrame(out, index=chunk.index)


def _stored(chunk: pd.DataFrame, plan: Plan, first_row: int, first_ord: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The documents and metadata rows a chunk becomes (first_row: 0-based row of the chunk in the file)."""
    chunk = _prepare(chunk, plan)
    texts = chunk[plan.text_col].astype(str)
    keep = (texts.str.strip() != "").to_numpy()
    kept = chunk[keep]
    ords = np.arange(first_ord, first_ord + len(kept))
    ids = (kept[plan.id_col].astype(str).tolist() if plan.id_col
           else [str(i) for i in np.flatnonzero(keep) + first_row + 1])
    docs = pd.DataFrame({"ord": ords, "doc_id": ids, "text": texts[keep].tolist()})
    docs["text_hash"] = [text_hash(t) for t in docs["text"]]
    docs["n_chars"] = docs["text"].str.len()
    meta = _typed_meta(kept, plan.meta).reset_index(drop=True)
    meta.insert(0, "ord", ords)
    return docs, meta


def stored_preview(source: Source, plan: Plan, n: int = 20) -> pd.DataFrame:
    """The first rows exactly as they would be stored: id, text and the chosen metadata, trimmed and typed."""
    head = next(read_chunks(source, wanted_columns(plan.text_col, plan.id_col, list(plan.meta)), chunk_rows=n,
                            header=plan.header))
    docs, meta = _stored(head, plan, 0, 0)
    # "(id)" and "(text)": a metadata column may well be called "id" or "text"
    return pd.concat([docs[["doc_id", "text"]].set_axis(["(id)", "(text)"], axis=1), meta.drop(columns="ord")], axis=1)


def write(store: Store, chunks: Iterator[pd.DataFrame], plan: Plan, name: str, source: str,
          progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
          replace: bool = False) -> dict:
    digest = hashlib.blake2b(digest_size=16)
    with store.transaction() as con:
        old = con.execute("SELECT id FROM corpora WHERE name = ?", [name]).fetchall()
        if old and not replace:
            raise IngestError(f"a corpus named '{name}' exists already; choose another name, or replace it "
                              "(CLI: --replace)")
        if old:
            refuse_if_busy(con, name)
            con.execute("DELETE FROM corpora WHERE id = ?", [old[0][0]])  # its rows go below, once the new ones are in
        corpus_id = con.execute(
            "INSERT INTO corpora (name, source, text_column, id_column, meta, params) VALUES (?, ?, ?, ?, ?, ?) "
            "RETURNING id",
            [name, source, plan.text_col, plan.id_col, json.dumps(plan.meta),
             json.dumps({"text": plan.text_col, "id": plan.id_col, "meta": list(plan.meta), "header": plan.header})],
        ).fetchone()[0]
        cols = ", ".join(f"{quote(c)} {dict(numeric='DOUBLE', date='TIMESTAMP').get(k, 'VARCHAR')}"
                         for c, k in plan.meta.items())
        con.execute(f"CREATE TABLE {meta_table(corpus_id)} (ord INTEGER{', ' + cols if cols else ''})")
        ord_, row = 0, 0
        for chunk in chunks:
            docs, meta = _stored(chunk, plan, row, ord_)
            for doc_id, h in zip(docs["doc_id"], docs["text_hash"]):
                digest.update(f"{doc_id}\x1f{h}\x1e".encode())
            with store.python_data():
                con.register("docs_chunk", docs)
                con.register("meta_chunk", meta)
                con.execute("INSERT INTO documents SELECT ?, ord, doc_id, text, text_hash, n_chars FROM docs_chunk",
                            [corpus_id])
                con.execute(f"INSERT INTO {meta_table(corpus_id)} SELECT * FROM meta_chunk")
                con.unregister("docs_chunk"), con.unregister("meta_chunk")
            ord_, row = ord_ + len(docs), row + len(chunk)
            if progress:
                progress(min(1.0, ord_ / max(plan.rows, 1)), f"{ord_:,} of {plan.rows:,} notes stored")
            if should_stop and should_stop():
                raise IngestError(f"{plan.label}: ingest cancelled; nothing was stored")
        if old:  # after the new documents, so vectors of texts the new corpus shares are kept
            delete_rows(con, old[0][0])
        con.execute("UPDATE corpora SET n_docs = ?, skipped = ?, data_hash = ? WHERE id = ?",
                    [plan.rows, plan.skipped, digest.hexdigest(), corpus_id])
        store.record_run(con, "ingest", corpus_id=corpus_id, params={"source": source, "text": plan.text_col,
                         "id": plan.id_col, "meta": plan.meta, "header": plan.header, "replace": bool(old)},
                         result={"rows": plan.rows, "skipped": plan.skipped, "data_hash": digest.hexdigest(),
                                 "duplicates": plan.duplicates, "conflicts": plan.conflicts})
    return {"corpus": name, "rows": plan.rows, "skipped": plan.skipped, "meta": plan.meta,
            "duplicates": plan.duplicates, "conflicts": plan.conflicts, "warnings": plan.warnings}
