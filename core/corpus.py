"""Corpora in and out of the store: ingest a file (CSV, TSV, Parquet, JSONL, an upload in memory) or a
DataFrame, check it first, see what would be stored, delete a corpus. The entry points the CLI, the pages
and the tests use; the work is done in core/ingest/ (read, check, write, delete)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from core.ingest import IngestError, InMemoryFile, Progress, Source
from core.ingest.check import check, confirmed
from core.ingest.delete import delete_corpus, deletion_summary
from core.ingest.profiles import default_text_column
from core.ingest.read import frame_as_text, frame_chunks, preview, read_chunks, wanted_columns
from core.ingest.write import stored_preview, text_hash, write
from core.store import Store, StoreError, safe_name


def ingest_file(store: Store, path: Source, name: str, text_col: str, id_col: str | None = None,
                meta_cols: list[str] | None = None, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None, *, header: bool = True, force: bool = False,
                replace: bool = False) -> dict:
    """Check then store a file (a path, or an InMemoryFile from an upload); returns {"corpus", "rows",
    "skipped", "meta", "duplicates", "conflicts", "warnings"}. `force` stores despite refusals;
    `replace` swaps a corpus of the same name for this one, all or nothing."""
    safe_name(name)
    with store.released():
        plan = confirmed(check(path, text_col, id_col, meta_cols, header), force)
        source = f"upload:{path.name}" if isinstance(path, InMemoryFile) else f"file:{Path(path).resolve()}"
        chunks = read_chunks(path, wanted_columns(text_col, id_col, list(plan.meta)), header=header)
        return write(store, chunks, plan, name, source, progress, should_stop, replace)


def ingest_frame(store: Store, df: pd.DataFrame, name: str, text_col: str, id_col: str | None = None,
                 meta_cols: list[str] | None = None, source: str = "dataframe",
                 progress: Progress | None = None, *, force: bool = False, replace: bool = False) -> dict:
    """Same checks and transaction as a file, for a DataFrame already in memory (demo corpora)."""
    safe_name(name)
    with store.released():
        as_text = frame_as_text(df)
        plan = confirmed(check(InMemoryFile(name, b""), text_col, id_col, meta_cols, chunks=frame_chunks(as_text)),
                         force)
        return write(store, frame_chunks(as_text), plan, name, source, progress, replace=replace)


def corpus_info(store: Store, name: str) -> dict:
    c = store.corpus(name)
    return {"corpus": c.name, "rows": c.n_docs, "skipped": c.skipped, "meta": c.meta}


__all__ = ["IngestError", "InMemoryFile", "StoreError", "check", "corpus_info", "default_text_column",
           "delete_corpus", "deletion_summary", "ingest_file", "ingest_frame", "preview", "stored_preview",
           "text_hash"]
