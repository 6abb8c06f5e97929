"""Ingest a corpus of notes (CSV, TSV, Parquet, JSONL or a DataFrame) into the store.

Two passes over the input, both streamed in chunks so memory stays flat for files larger than RAM:
1. validate: columns exist, rows parse, ids are unique, texts are not all empty; detect metadata types;
2. write: everything in one transaction, so a rejected or cancelled ingest leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.store import Store, StoreError, meta_table, quote, safe_name

CHUNK_ROWS = 50_000
MISSING = {"", "na", "n/a", "nan", "null", "none", "nat"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
Progress = Callable[[float, str], None]


class IngestError(ValueError):
    """Bad input: the message names the file, row or column and says what to do."""


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


# ---- reading: every format becomes a stream of string DataFrames --------------------------------


def detect_format(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PAR1":  # a Parquet file is Parquet whatever its extension says
        return "parquet"
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise IngestError(f"{path.name}: unknown file type '{path.suffix}'; use .csv, .tsv, .parquet or .jsonl")
    if fmt == "parquet":
        raise IngestError(f"{path.name}: named .parquet but is not a Parquet file; check the export or rename it")
    return fmt


def _encoding(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    return "utf-8-sig"  # plain UTF-8, with or without a byte-order mark


def read_chunks(path: Path, columns: list[str] | None = None, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Yield the file as DataFrames of strings (Parquet keeps its own types)."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise IngestError(f"{path.name}: the file is empty")
    fmt = detect_format(path)
    try:
        if fmt == "parquet":
            yield from _parquet_chunks(path, columns, chunk_rows)
        elif fmt == "jsonl":
            yield from _jsonl_chunks(path, chunk_rows)
        else:
            yield from _delimited_chunks(path, "\t" if fmt == "tsv" else ",", chunk_rows)
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{path.name}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "re-save the file as UTF-8 and ingest again"
        ) from None


def _delimited_chunks(path: Path, sep: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                             encoding=_encoding(path), chunksize=chunk_rows, engine="c")
        for chunk in reader:
            yield chunk
    except pd.errors.EmptyDataError:
        raise IngestError(f"{path.name}: no header row found; the first line must name the columns") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).split("C error: ")[-1].strip()
        raise IngestError(
            f"{path.name}: {detail}; fix that row (quote fields that contain '{sep}' or line breaks) and retry"
        ) from None


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    rows: list[dict] = []
    with open(path, encoding=_encoding(path)) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IngestError(f"{path.name}, line {line_no}: not valid JSON ({exc.msg}); fix or remove it") from None
            if not isinstance(record, dict):
                raise IngestError(f"{path.name}, line {line_no}: expected a JSON object per line")
            rows.append({k: v if isinstance(v, str) or v is None else json.dumps(v) if isinstance(v, (list, dict))
                         else str(v) for k, v in record.items()})
            if len(rows) == chunk_rows:
                yield pd.DataFrame(rows).fillna("")
                rows = []
    if rows:
        yield pd.DataFrame(rows).fillna("")


def _parquet_chunks(path: Path, columns: list[str] | None, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    for name in columns or schema.names:
        if name in schema.names and pa.types.is_nested(schema.field(name).type):
            raise IngestError(f"{path.name}: column '{name}' holds nested values ({schema.field(name).type}); "
                              "flatten it to text or numbers, or leave it out")
    wanted = [c for c in (columns or schema.names) if c in schema.names and not pa.types.is_nested(schema.field(c).type)]
    if pf.metadata.num_rows == 0:
        yield pd.DataFrame(columns=schema.names)
        return
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=wanted):
        yield batch.to_pandas().astype(object).where(lambda d: d.notna(), "").astype(str)


# ---- validation ------------------------------------------------------------------------------


@dataclass
class ColumnProfile:
    numeric: bool = True
    date: bool = True
    seen: int = 0

    def update(self, values: pd.Series) -> None:
        present = values[~values.str.strip().str.lower().isin(MISSING)]
        if present.empty:
            return
        self.seen += len(present)
        if self.numeric:
            self.numeric = bool(pd.to_numeric(present, errors="coerce").notna().all())
        if self.date and not self.numeric:
            parsed = pd.to_datetime(present, errors="coerce", format="mixed")
            self.date = bool(parsed.notna().all()) and bool(present.str.contains(r"\d").all())

    @property
    def kind(self) -> str:
        if self.seen and self.numeric:
            return "numeric"
        if self.seen and self.date:
            return "date"
        return "categorical"


@dataclass
class Plan:
    """What pass 1 learned: enough to write pass 2 without surprises."""

    label: str
    text_col: str
    id_col: str | None
    meta: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    skipped: int = 0


def _check_columns(label: str, columns: list[str], text_col: str, id_col: str | None, meta_cols: list[str]) -> None:
    for role, col in [("text", text_col), ("id", id_col)] + [("metadata", m) for m in meta_cols]:
        if col is not None and col not in columns:
            raise IngestError(f"{label}: no column '{col}' for the {role} (columns: {', '.join(map(str, columns))}); "
                              "pick one of those")


def validate(chunks: Iterator[pd.DataFrame], label: str, text_col: str, id_col: str | None,
             meta_cols: list[str] | None) -> Plan:
    plan = Plan(label, text_col, id_col)
    profiles: dict[str, ColumnProfile] | None = None
    seen_ids: dict[str, int] = {}
    row = 0
    for chunk in chunks:
        if profiles is None:
            columns = [str(c) for c in chunk.columns]
            chosen = meta_cols if meta_cols is not None else [c for c in columns if c not in (text_col, id_col)]
            _check_columns(label, columns, text_col, id_col, chosen)
            profiles = {c: ColumnProfile() for c in chosen}
        texts = chunk[text_col].astype(str)
        empty = texts.str.strip() == ""
        plan.skipped += int(empty.sum())
        plan.rows += int((~empty).sum())
        if id_col is not None:
            for offset, (doc_id, blank) in enumerate(zip(chunk[id_col].astype(str), empty)):
                if blank:
                    continue
                if doc_id in seen_ids:
                    raise IngestError(f"{label}, row {row + offset + 1}: id '{doc_id}' in column '{id_col}' appears "
                                      f"again (first at row {seen_ids[doc_id]}); make ids unique or omit the id column")
                seen_ids[doc_id] = row + offset + 1
        for col, profile in profiles.items():
            profile.update(chunk[col].astype(str))
        row += len(chunk)
    if profiles is None:
        raise IngestError(f"{label}: the file has no rows")
    if row == 0:
        raise IngestError(f"{label}: the file has a header but no rows")
    if plan.rows == 0:
        raise IngestError(f"{label}: all {row} texts in column '{text_col}' are empty; pick the column holding the notes")
    plan.meta = {c: p.kind for c, p in profiles.items()}
    return plan


# ---- writing -----------------------------------------------------------------------------------


def _typed_meta(chunk: pd.DataFrame, meta: dict[str, str]) -> pd.DataFrame:
    out = {}
    for col, kind in meta.items():
        raw = chunk[col].astype(str)
        missing = raw.str.strip().str.lower().isin(MISSING)
        if kind == "numeric":
            out[col] = pd.to_numeric(raw.where(~missing), errors="coerce").astype("float64")
        elif kind == "date":
            out[col] = pd.to_datetime(raw.where(~missing), errors="coerce", format="mixed")
        else:
            out[col] = raw.where(~missing, None).astype(object)
    return pd.DataFrame(out, index=chunk.index)


def write(store: Store, chunks: Iterator[pd.DataFrame], plan: Plan, name: str, source: str,
          progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    digest = hashlib.blake2b(digest_size=16)
    with store.transaction() as con:
        if con.execute("SELECT 1 FROM corpora WHERE name = ?", [name]).fetchone():
            raise IngestError(f"a corpus named '{name}' exists already; choose another name")
        corpus_id = con.execute(
            "INSERT INTO corpora (name, source, text_column, id_column, meta, params) VALUES (?, ?, ?, ?, ?, ?) "
            "RETURNING id",
            [name, source, plan.text_col, plan.id_col, json.dumps(plan.meta),
             json.dumps({"text": plan.text_col, "id": plan.id_col, "meta": list(plan.meta)})],
        ).fetchone()[0]
        cols = ", ".join(f"{quote(c)} {dict(numeric='DOUBLE', date='TIMESTAMP').get(k, 'VARCHAR')}"
                         for c, k in plan.meta.items())
        con.execute(f"CREATE TABLE {meta_table(corpus_id)} (ord INTEGER{', ' + cols if cols else ''})")
        ord_, row = 0, 0
        for chunk in chunks:
            texts = chunk[plan.text_col].astype(str)
            keep = texts.str.strip() != ""
            kept = chunk[keep]
            n = len(kept)
            ords = range(ord_, ord_ + n)
            ids = (kept[plan.id_col].astype(str).tolist() if plan.id_col
                   else [str(i + 1) for i in (chunk.index[keep] - chunk.index[0] + row)])
            docs = pd.DataFrame({"ord": ords, "doc_id": ids, "text": texts[keep].tolist()})
            docs["text_hash"] = [text_hash(t) for t in docs["text"]]
            docs["n_chars"] = docs["text"].str.len()
            for doc_id, h in zip(docs["doc_id"], docs["text_hash"]):
                digest.update(f"{doc_id}\x1f{h}\x1e".encode())
            meta = _typed_meta(kept, plan.meta).reset_index(drop=True)
            meta.insert(0, "ord", list(ords))
            with store.python_data():
                con.register("docs_chunk", docs)
                con.register("meta_chunk", meta)
                con.execute("INSERT INTO documents SELECT ?, ord, doc_id, text, text_hash, n_chars FROM docs_chunk",
                            [corpus_id])
                con.execute(f"INSERT INTO {meta_table(corpus_id)} SELECT * FROM meta_chunk")
                con.unregister("docs_chunk"), con.unregister("meta_chunk")
            ord_, row = ord_ + n, row + len(chunk)
            if progress:
                progress(min(1.0, ord_ / max(plan.rows, 1)), f"{ord_:,} of {plan.rows:,} notes stored")
            if should_stop and should_stop():
                raise IngestError(f"{plan.label}: ingest cancelled; nothing was stored")
        con.execute("UPDATE corpora SET n_docs = ?, skipped = ?, data_hash = ? WHERE id = ?",
                    [plan.rows, plan.skipped, digest.hexdigest(), corpus_id])
        store.record_run(con, "ingest", corpus_id=corpus_id, params={"source": source, "text": plan.text_col,
                         "id": plan.id_col, "meta": plan.meta},
                         result={"rows": plan.rows, "skipped": plan.skipped, "data_hash": digest.hexdigest()})
    return {"corpus": name, "rows": plan.rows, "skipped": plan.skipped, "meta": plan.meta}


def ingest_file(store: Store, path: str | Path, name: str, text_col: str, id_col: str | None = None,
                meta_cols: list[str] | None = None, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None) -> dict:
    """Validate then store a file; returns {"corpus", "rows", "skipped", "meta"}."""
    path = Path(path)
    safe_name(name)
    wanted = [text_col] + ([id_col] if id_col else []) + list(meta_cols or [])
    columns = wanted if meta_cols is not None else None
    plan = validate(read_chunks(path, columns), path.name, text_col, id_col, meta_cols)
    return write(store, read_chunks(path, columns), plan, name, f"file:{path.resolve()}", progress, should_stop)


def ingest_frame(store: Store, df: pd.DataFrame, name: str, text_col: str, id_col: str | None = None,
                 meta_cols: list[str] | None = None, source: str = "dataframe",
                 progress: Progress | None = None) -> dict:
    """Same checks and transaction as a file, for a DataFrame already in memory (demo corpora, uploads)."""
    safe_name(name)
    as_text = df.astype(object).where(df.notna(), "").astype(str).reset_index(drop=True)

    def chunks() -> Iterator[pd.DataFrame]:
        for start in range(0, max(len(as_text), 1), CHUNK_ROWS):
            yield as_text.iloc[start:start + CHUNK_ROWS]

    plan = validate(chunks(), name, text_col, id_col, meta_cols)
    return write(store, chunks(), plan, name, source, progress)


def preview(path: str | Path, n: int = 20) -> pd.DataFrame:
    """The first rows of a file, for choosing columns before ingest."""
    return next(read_chunks(Path(path), chunk_rows=n))


def corpus_info(store: Store, name: str) -> dict:
    c = store.corpus(name)
    return {"corpus": c.name, "rows": c.n_docs, "skipped": c.skipped, "meta": c.meta}


def delete_corpus(store: Store, name: str) -> None:
    c = store.corpus(name)
    with store.transaction() as con:
        con.execute("DELETE FROM documents WHERE corpus_id = ?", [c.id])
        con.execute(f"DROP TABLE IF EXISTS {c.meta_table}")
        con.execute("DELETE FROM corpora WHERE id = ?", [c.id])


__all__ = ["IngestError", "StoreError", "ingest_file", "ingest_frame", "preview", "corpus_info", "text_hash"]
