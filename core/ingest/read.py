"""Reading: every input (CSV, TSV, Parquet, JSONL, an upload in memory, a DataFrame) becomes a stream of
DataFrames of strings, CHUNK_ROWS rows at a time (Parquet keeps its own types)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from core.ingest import IngestError, InMemoryFile, Source

CHUNK_ROWS = 50_000
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def source_label(source: Source) -> str:
    return source.name if isinstance(source, InMemoryFile) else Path(source).name


def _open(source: Source) -> BinaryIO:
    return io.BytesIO(source.data) if isinstance(source, InMemoryFile) else open(source, "rb")


def _head(source: Source) -> bytes:
    with _open(source) as fh:
        return fh.read(4)


def detect_format(source: Source) -> str:
    name = source_label(source)
    if _head(source) == b"PAR1":  # a Parquet file is Parquet whatever its extension says
        return "parquet"
    suffix = Path(name).suffix
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise IngestError(f"{name}: unknown file type '{suffix}'; use .csv, .tsv, .parquet or .jsonl")
    if fmt == "parquet":
        raise IngestError(f"{name}: named .parquet but is not a Parquet file; check the export or rename it")
    return fmt


def _encoding(source: Source) -> str:
    if _head(source)[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    return "utf-8-sig"  # plain UTF-8, with or without a byte-order mark


def read_chunks(source: Source, columns: list[str] | None = None, chunk_rows: int | None = None,
                header: bool = True) -> Iterator[pd.DataFrame]:
    """Yield the file as DataFrames of strings (Parquet keeps its own types). Without a header row,
    columns are named column_1, column_2, ..."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    name = source_label(source)
    if isinstance(source, InMemoryFile):
        if not source.data:
            raise IngestError(f"{name}: the file is empty")
    else:
        source = Path(source)
        if not source.exists():
            raise IngestError(f"{source}: no such file")
        if source.stat().st_size == 0:
            raise IngestError(f"{name}: the file is empty")
    fmt = detect_format(source)
    try:
        if fmt == "parquet":
            yield from _parquet_chunks(source, columns, chunk_rows)
        elif fmt == "jsonl":
            yield from _jsonl_chunks(source, chunk_rows)
        else:
            yield from _delimited_chunks(source, "\t" if fmt == "tsv" else ",", chunk_rows, header)
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{name}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "re-save the file as UTF-8 and ingest again"
        ) from None


def _delimited_chunks(source: Source, sep: str, chunk_rows: int, header: bool) -> Iterator[pd.DataFrame]:
    name = source_label(source)
    try:
        with _open(source) as fh:
            reader = pd.read_csv(fh, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                                 encoding=_encoding(source), chunksize=chunk_rows, engine="c",
                                 header=0 if header else None)
            for chunk in reader:
                if not header:
                    chunk.columns = [f"column_{i + 1}" for i in range(chunk.shape[1])]
                yield chunk
    except pd.errors.EmptyDataError:
        raise IngestError(f"{name}: no header row found; the first line must name the columns") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).split("C error: ")[-1].strip()
        raise IngestError(
            f"{name}: {detail}; fix that row (quote fields that contain '{sep}' or line breaks) and retry"
        ) from None


def _jsonl_chunks(source: Source, chunk_rows: int) -> Iterator[pd.DataFrame]:
    rows: list[dict] = []
    name = source_label(source)
    with _open(source) as raw, io.TextIOWrapper(raw, encoding=_encoding(source)) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IngestError(f"{name}, line {line_no}: not valid JSON ({exc.msg}); fix or remove it") from None
            if not isinstance(record, dict):
                raise IngestError(f"{name}, line {line_no}: expected a JSON object per line")
            rows.append({k: v if isinstance(v, str) or v is None else json.dumps(v) if isinstance(v, (list, dict))
                         else str(v) for k, v in record.items()})
            if len(rows) == chunk_rows:
                yield pd.DataFrame(rows).fillna("")
                rows = []
    if rows:
        yield pd.DataFrame(rows).fillna("")


def _parquet_chunks(source: Source, columns: list[str] | None, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = source_label(source)
    with _open(source) as fh:
        pf = pq.ParquetFile(fh)
        schema = pf.schema_arrow
        for col in columns or schema.names:
            if col in schema.names and pa.types.is_nested(schema.field(col).type):
                raise IngestError(f"{name}: column '{col}' holds nested values ({schema.field(col).type}); "
                                  "flatten it to text or numbers, or leave it out")
        wanted = [c for c in (columns or schema.names)
                  if c in schema.names and not pa.types.is_nested(schema.field(c).type)]
        if pf.metadata.num_rows == 0:
            yield pd.DataFrame(columns=schema.names)
            return
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=wanted):
            yield batch.to_pandas().astype(object).where(lambda d: d.notna(), "").astype(str)


def frame_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A DataFrame already in memory as a file would be read: strings, missing values empty."""
    return frame.astype(object).where(frame.notna(), "").astype(str).reset_index(drop=True)


def frame_chunks(as_text: pd.DataFrame) -> Iterator[pd.DataFrame]:
    """The rows of frame_as_text(...) in chunks, like a file's (one empty chunk for an empty frame)."""
    for start in range(0, max(len(as_text), 1), CHUNK_ROWS):
        yield as_text.iloc[start:start + CHUNK_ROWS]


def wanted_columns(text_col: str, id_col: str | None, meta_cols: list[str] | None) -> list[str] | None:
    """Columns to read (Parquet reads only these); None reads them all."""
    if meta_cols is None:
        return None
    return list(dict.fromkeys([text_col] + ([id_col] if id_col else []) + list(meta_cols)))


def preview(source: Source, n: int = 200, header: bool = True) -> pd.DataFrame:
    """The first rows of a file, for choosing columns before ingest."""
    return next(read_chunks(source, chunk_rows=n, header=header))
