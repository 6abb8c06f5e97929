"""Ingest a corpus of notes (CSV, TSV, Parquet, JSONL, an upload in memory or a DataFrame) into the store,
and delete one again.

Two passes over the input, both streamed in chunks so memory stays flat for files larger than RAM:
1. check: columns exist, rows parse, texts are not all empty; detect metadata types; collect what is odd
   about the file (warnings) and what must be confirmed before storing it (refusals, lifted by `force`);
2. write: everything in one transaction, so a rejected or cancelled ingest leaves the store as it was.
The checks that span rows (duplicate texts and ids, conflicting metadata) keep 8-byte hashes per row,
so they hold across chunk boundaries.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from core.jobs import ACTIVE
from core.store import Store, StoreError, meta_table, quote, safe_name

CHUNK_ROWS = 50_000
MISSING = {"", "na", "n/a", "nan", "null", "none", "nat"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
SHORT_TEXT = 10  # characters: a "note" shorter than this is probably a code, a label or a number
ID_LIKE_CHARS = 16  # mean length of values in an identifier-like column
MIN_ROWS_FOR_SHAPE = 20  # near-unique / all-unique only mean something with this many values
SENTENCE_HEADER = 40  # a header cell this long (or of 6 words or more) reads like data, not a column name
Progress = Callable[[float, str], None]


class IngestError(ValueError):
    """Bad input: the message names the file, row or column and says what to do."""


@dataclass(frozen=True)
class InMemoryFile:
    """An uploaded file, parsed from memory so that no copy of the notes is written anywhere."""

    name: str
    data: bytes


Source = str | Path | InMemoryFile


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


# ---- reading: every format becomes a stream of string DataFrames --------------------------------


def _label(source: Source) -> str:
    return source.name if isinstance(source, InMemoryFile) else Path(source).name


def _open(source: Source) -> BinaryIO:
    return io.BytesIO(source.data) if isinstance(source, InMemoryFile) else open(source, "rb")


def _head(source: Source) -> bytes:
    with _open(source) as fh:
        return fh.read(4)


def detect_format(source: Source) -> str:
    name = _label(source)
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
    name = _label(source)
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
    name = _label(source)
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
    name = _label(source)
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

    name = _label(source)
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


# ---- profiles: what one pass learns about each column -------------------------------------------


def _missing(values: pd.Series) -> pd.Series:
    return values.str.strip().str.lower().isin(MISSING)


def _hashes(values: pd.Series) -> np.ndarray:
    return pd.util.hash_pandas_object(values, index=False).to_numpy()


@dataclass
class ColumnProfile:
    """Type and shape of a metadata column (values already trimmed)."""

    numeric: bool = True
    date: bool = True
    seen: int = 0
    hashes: list[np.ndarray] = field(default_factory=list)  # of every row, missing values included

    def update(self, values: pd.Series) -> None:
        self.hashes.append(_hashes(values.where(~_missing(values), "")))
        present = values[~_missing(values)]
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
class TextProfile:
    """Shape of a candidate text column: numeric, identifier-like, how long its values are."""

    rows: int = 0  # non-empty values
    numeric: bool = True
    chars: int = 0
    spaced: int = 0
    hashes: list[np.ndarray] = field(default_factory=list)

    def update(self, values: pd.Series) -> None:
        present = values[values.str.strip() != ""]
        if present.empty:
            return
        self.rows += len(present)
        self.chars += int(present.str.len().sum())
        self.spaced += int(present.str.strip().str.contains(r"\s").sum())
        self.hashes.append(_hashes(present))
        if self.numeric:
            self.numeric = bool(pd.to_numeric(present, errors="coerce").notna().all())

    @property
    def mean_chars(self) -> float:
        return self.chars / self.rows if self.rows else 0.0

    @property
    def distinct(self) -> int:
        return len(np.unique(np.concatenate(self.hashes))) if self.hashes else 0

    @property
    def is_numeric(self) -> bool:
        return bool(self.rows) and self.numeric

    @property
    def is_identifier_like(self) -> bool:
        """Near-unique values of a few characters without spaces: codes or ids, not notes."""
        return (self.rows >= MIN_ROWS_FOR_SHAPE and self.mean_chars <= ID_LIKE_CHARS
                and self.spaced <= 0.1 * self.rows and self.distinct >= 0.9 * self.rows)


def default_text_column(frame: pd.DataFrame) -> str:
    """The column with the longest texts among those that are neither numeric nor identifier-like."""
    profiles = {}
    for col in frame.columns:
        profiles[str(col)] = profile = TextProfile()
        profile.update(frame[col].astype(str))
    usable = [c for c, p in profiles.items() if not (p.is_numeric or p.is_identifier_like)] or list(profiles)
    return max(usable, key=lambda c: profiles[c].mean_chars)


def _sentence_header(columns: list[str]) -> str | None:
    return next((c for c in columns if len(c) >= SENTENCE_HEADER or len(c.split()) >= 6), None)


# ---- pass 1: check -------------------------------------------------------------------------------


@dataclass
class Plan:
    """What pass 1 learned: enough to write pass 2 without surprises, and what to tell the user first."""

    label: str
    text_col: str
    id_col: str | None
    header: bool = True
    meta: dict[str, str] = field(default_factory=dict)  # stored metadata column -> kind
    columns: list[str] = field(default_factory=list)  # every column of the file
    rows: int = 0
    skipped: int = 0
    duplicates: int = 0  # rows whose text repeats an earlier row's
    conflicts: int = 0  # groups of identical texts with different metadata values
    trimmed: dict[str, int] = field(default_factory=dict)  # metadata column -> values trimmed
    warnings: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # stored only when the user confirms (force)


def _chosen_meta(plan: Plan, meta_cols: list[str] | None) -> list[str]:
    """The metadata columns to store, each once, never the text or id column (with a warning each)."""
    if meta_cols is None:
        return [c for c in plan.columns if c not in (plan.text_col, plan.id_col)]
    chosen: list[str] = []
    for col in meta_cols:
        if col in chosen:
            plan.warnings.append(f"{plan.label}: column '{col}' was chosen twice as metadata; it is stored once")
        elif col in (plan.text_col, plan.id_col):
            role = "text" if col == plan.text_col else "id"
            plan.warnings.append(f"{plan.label}: column '{col}' is the {role} column; it is not stored again "
                                 "as metadata")
        else:
            chosen.append(col)
    return chosen


def _check_columns(plan: Plan, meta_cols: list[str]) -> None:
    sentence = _sentence_header(plan.columns) if plan.header else None
    for role, col in [("text", plan.text_col), ("id", plan.id_col)] + [("metadata", m) for m in meta_cols]:
        if col is not None and col not in plan.columns:
            if sentence:
                raise IngestError(f"{plan.label}: no column '{col}' for the {role}, and the header cell "
                                  f"'{sentence[:40]}…' reads like a note: the file seems to have no header row; "
                                  "read it without one (CLI: --no-header; Data page: 'No header row')")
            raise IngestError(f"{plan.label}: no column '{col}' for the {role} (columns: "
                              f"{', '.join(plan.columns)}); pick one of those")
    if sentence:
        plan.refusals.append(f"{plan.label}: the header cell '{sentence[:40]}…' reads like a note, not a column "
                             "name: the file seems to have no header row; read it without one (CLI: --no-header; "
                             "Data page: 'No header row'), or confirm to keep it (CLI: --force)")


def _prepare(chunk: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The chunk as stored: metadata values without stray leading or trailing spaces."""
    chunk = chunk.copy()
    for col in plan.meta:
        chunk[col] = chunk[col].astype(str).str.strip()
    return chunk


def check(source: Source, text_col: str, id_col: str | None = None, meta_cols: list[str] | None = None,
          header: bool = True, chunks: Iterator[pd.DataFrame] | None = None) -> Plan:
    """Pass 1 over the whole input: raises IngestError when it cannot be stored at all; otherwise returns
    the plan with its warnings and the refusals that need the user's confirmation."""
    plan = Plan(_label(source), text_col, id_col, header)
    if chunks is None:
        chunks = read_chunks(source, _wanted(text_col, id_col, meta_cols), header=header)
    profiles: dict[str, ColumnProfile] | None = None
    text = TextProfile()
    kept_rows, ids = [], []
    first_empty = first_short = None
    n_short = 0
    trim_example: dict[str, str] = {}
    row = 0
    for chunk in chunks:
        if profiles is None:
            plan.columns = [str(c) for c in chunk.columns]
            chosen = _chosen_meta(plan, meta_cols)
            _check_columns(plan, chosen)
            profiles = {c: ColumnProfile() for c in chosen}
        numbers = np.arange(row + 1, row + len(chunk) + 1)
        row += len(chunk)
        texts = chunk[text_col].astype(str)
        stripped_len = texts.str.strip().str.len().to_numpy()
        empty, short = stripped_len == 0, (stripped_len > 0) & (stripped_len < SHORT_TEXT)
        if empty.any() and first_empty is None:
            first_empty = int(numbers[empty][0])
        if short.any() and first_short is None:
            first_short = int(numbers[short][0])
        n_short += int(short.sum())
        plan.skipped += int(empty.sum())
        kept = chunk[~empty]
        kept_rows.append(numbers[~empty])
        text.update(texts)  # hashes the non-empty texts, i.e. those of the rows kept
        if id_col is not None:
            ids.append(kept[id_col].astype(str).to_numpy())
        for col, profile in profiles.items():
            raw = kept[col].astype(str)
            stripped = raw.str.strip()
            changed = raw != stripped
            if changed.any():
                plan.trimmed[col] = plan.trimmed.get(col, 0) + int(changed.sum())
                trim_example.setdefault(col, raw[changed].iloc[0])
            profile.update(stripped)
    if profiles is None:
        raise IngestError(f"{plan.label}: the file has no rows")
    if row == 0:
        raise IngestError(f"{plan.label}: the file has a header but no rows")
    plan.rows = row - plan.skipped
    if plan.rows == 0:
        raise IngestError(f"{plan.label}: all {row} texts in column '{text_col}' are empty; "
                          "pick the column holding the notes")
    plan.meta = {c: p.kind for c, p in profiles.items()}
    kept = np.concatenate(kept_rows)
    _text_checks(plan, text, first_empty, n_short, first_short)
    _duplicate_checks(plan, np.concatenate(text.hashes), kept, profiles)
    if id_col is not None:
        _id_checks(plan, np.concatenate(ids), kept)
    for col, n in plan.trimmed.items():
        plan.warnings.append(f"{plan.label}: column '{col}': {n:,} values had leading or trailing spaces "
                             f"(e.g. '{trim_example[col]}'); they are stored trimmed")
    _meta_shape_checks(plan, profiles)
    return plan


def _wanted(text_col: str, id_col: str | None, meta_cols: list[str] | None) -> list[str] | None:
    """Columns to read (Parquet reads only these); None reads them all."""
    if meta_cols is None:
        return None
    return list(dict.fromkeys([text_col] + ([id_col] if id_col else []) + list(meta_cols)))


def _text_checks(plan: Plan, text: TextProfile, first_empty: int | None, n_short: int,
                 first_short: int | None) -> None:
    col = plan.text_col
    if text.is_numeric:
        plan.refusals.append(f"{plan.label}: the text column '{col}' holds only numbers (a row index or a "
                             "measurement?); pick the column holding the notes, or confirm (CLI: --force)")
    elif text.is_identifier_like:
        plan.refusals.append(f"{plan.label}: the text column '{col}' looks like identifiers (near-unique values "
                             f"of {text.mean_chars:.0f} characters on average); pick the column holding the notes, "
                             "or confirm (CLI: --force)")
    if plan.skipped:
        plan.warnings.append(f"{plan.label}: column '{col}': {plan.skipped:,} rows have no text and are skipped "
                             f"(first at row {first_empty})")
    if n_short:
        plan.warnings.append(f"{plan.label}: column '{col}': {n_short:,} notes are shorter than {SHORT_TEXT} "
                             f"characters (first at row {first_short}); check that this column holds the notes")


def _duplicate_checks(plan: Plan, hashes: np.ndarray, rows: np.ndarray, profiles: dict[str, ColumnProfile]) -> None:
    repeats = pd.Series(hashes).duplicated().to_numpy()
    plan.duplicates = int(repeats.sum())
    if not plan.duplicates:
        return
    again = int(np.flatnonzero(repeats)[0])
    first = int(np.flatnonzero(hashes == hashes[again])[0])
    plan.warnings.append(f"{plan.label}: column '{plan.text_col}': {plan.duplicates:,} notes repeat an earlier "
                         f"note's text exactly (e.g. row {rows[again]} repeats row {rows[first]}); they are kept "
                         "and embedded once")
    if not profiles:
        return
    frame = pd.DataFrame({"text": hashes} | {col: np.concatenate(p.hashes) for col, p in profiles.items()})
    groups = frame[pd.Series(hashes).duplicated(keep=False).to_numpy()]
    differing = groups.groupby("text").nunique() > 1  # one row per repeated text, one column per metadata column
    plan.conflicts = int(differing.any(axis=1).sum())
    for col in differing.columns[differing.any()]:
        example = differing.index[differing[col].to_numpy()][0]
        where = rows[np.flatnonzero(hashes == example)[:2]]
        plan.warnings.append(f"{plan.label}: {int(differing[col].sum()):,} groups of identical texts carry "
                             f"different values of column '{col}' (e.g. rows {where[0]} and {where[1]}); the same "
                             "note filed twice? check the export")


def _id_checks(plan: Plan, ids: np.ndarray, rows: np.ndarray) -> None:
    repeats = pd.Series(ids).duplicated().to_numpy()
    if not repeats.any():
        return
    again = int(np.flatnonzero(repeats)[0])
    first = int(np.flatnonzero(ids == ids[again])[0])
    plan.warnings.append(f"{plan.label}: column '{plan.id_col}': {int(repeats.sum()):,} ids appear again (e.g. "
                         f"'{ids[again]}' at rows {rows[first]} and {rows[again]}); make ids unique or leave the "
                         "id column out")


def _meta_shape_checks(plan: Plan, profiles: dict[str, ColumnProfile]) -> None:
    missing = _hashes(pd.Series([""]))[0]
    for col, profile in profiles.items():
        hashes = np.concatenate(profile.hashes)
        distinct = len(np.unique(hashes[hashes != missing]))
        if profile.seen >= 2 and distinct == 1:
            plan.warnings.append(f"{plan.label}: metadata column '{col}' has one value in every row; it cannot "
                                 "tell notes apart: leave it out unless you need it")
        elif (profile.seen >= MIN_ROWS_FOR_SHAPE and distinct == profile.seen
              and plan.meta[col] in ("categorical", "numeric")):
            plan.warnings.append(f"{plan.label}: metadata column '{col}' has a different value in every row (an id "
                                 "or row index?); it cannot group notes: leave it out, or choose it as the id column")


# ---- pass 2: write -------------------------------------------------------------------------------


def _typed_meta(chunk: pd.DataFrame, meta: dict[str, str]) -> pd.DataFrame:
    out = {}
    for col, kind in meta.items():
        raw = chunk[col].astype(str)
        missing = _missing(raw)
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
    head = next(read_chunks(source, _wanted(plan.text_col, plan.id_col, list(plan.meta)), chunk_rows=n,
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
            _refuse_if_busy(con, name)
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
            _delete_rows(con, old[0][0])
        con.execute("UPDATE corpora SET n_docs = ?, skipped = ?, data_hash = ? WHERE id = ?",
                    [plan.rows, plan.skipped, digest.hexdigest(), corpus_id])
        store.record_run(con, "ingest", corpus_id=corpus_id, params={"source": source, "text": plan.text_col,
                         "id": plan.id_col, "meta": plan.meta, "header": plan.header, "replace": bool(old)},
                         result={"rows": plan.rows, "skipped": plan.skipped, "data_hash": digest.hexdigest(),
                                 "duplicates": plan.duplicates, "conflicts": plan.conflicts})
    return {"corpus": name, "rows": plan.rows, "skipped": plan.skipped, "meta": plan.meta,
            "duplicates": plan.duplicates, "conflicts": plan.conflicts, "warnings": plan.warnings}


def _confirmed(plan: Plan, force: bool) -> Plan:
    """The plan to write: refused unless confirmed; a confirmed refusal is still reported, as a warning."""
    if not plan.refusals:
        return plan
    if not force:
        more = len(plan.refusals) - 1
        raise IngestError(plan.refusals[0] + (f" ({more} more check(s) also failed)" if more else ""))
    plan.warnings = plan.refusals + plan.warnings
    return plan


def ingest_file(store: Store, path: Source, name: str, text_col: str, id_col: str | None = None,
                meta_cols: list[str] | None = None, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None, *, header: bool = True, force: bool = False,
                replace: bool = False) -> dict:
    """Check then store a file (a path, or an InMemoryFile from an upload); returns {"corpus", "rows",
    "skipped", "meta", "duplicates", "conflicts", "warnings"}. `force` stores despite refusals;
    `replace` swaps a corpus of the same name for this one, all or nothing."""
    safe_name(name)
    plan = _confirmed(check(path, text_col, id_col, meta_cols, header), force)
    source = f"upload:{path.name}" if isinstance(path, InMemoryFile) else f"file:{Path(path).resolve()}"
    chunks = read_chunks(path, _wanted(text_col, id_col, list(plan.meta)), header=header)
    return write(store, chunks, plan, name, source, progress, should_stop, replace)


def ingest_frame(store: Store, df: pd.DataFrame, name: str, text_col: str, id_col: str | None = None,
                 meta_cols: list[str] | None = None, source: str = "dataframe",
                 progress: Progress | None = None, *, force: bool = False, replace: bool = False) -> dict:
    """Same checks and transaction as a file, for a DataFrame already in memory (demo corpora)."""
    safe_name(name)
    as_text = df.astype(object).where(df.notna(), "").astype(str).reset_index(drop=True)

    def chunks() -> Iterator[pd.DataFrame]:
        for start in range(0, max(len(as_text), 1), CHUNK_ROWS):
            yield as_text.iloc[start:start + CHUNK_ROWS]

    plan = _confirmed(check(InMemoryFile(name, b""), text_col, id_col, meta_cols, chunks=chunks()), force)
    return write(store, chunks(), plan, name, source, progress, replace=replace)


def preview(source: Source, n: int = 200, header: bool = True) -> pd.DataFrame:
    """The first rows of a file, for choosing columns before ingest."""
    return next(read_chunks(source, chunk_rows=n, header=header))


def corpus_info(store: Store, name: str) -> dict:
    c = store.corpus(name)
    return {"corpus": c.name, "rows": c.n_docs, "skipped": c.skipped, "meta": c.meta}


# ---- delete --------------------------------------------------------------------------------------


def _refuse_if_busy(con, name: str) -> None:
    busy = con.execute("SELECT id, kind FROM jobs WHERE list_contains(?, state) AND "
                       "json_extract_string(params, '$.corpus') = ? ORDER BY id", [list(ACTIVE), name]).fetchall()
    if busy:
        raise StoreError(f"corpus '{name}' is in use by {busy[0][1]} job {busy[0][0]}; wait for it to finish or "
                         "cancel it on the Pretrain page, then try again")


VECTOR_TABLES = "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'vectors_d%'"
OWN_TEXTS = ("SELECT text_hash FROM documents WHERE corpus_id = ? EXCEPT "
             "SELECT text_hash FROM documents WHERE corpus_id <> ?")  # texts no other corpus holds


def _doomed(con, corpus_id: int) -> dict[str, int]:
    """How many rows deleting the corpus removes, by kind."""
    def count(sql: str, params: list) -> int:
        return int(con.execute(sql, params).fetchall()[0][0])

    return {
        "documents": count("SELECT count(*) FROM documents WHERE corpus_id = ?", [corpus_id]),
        "vectors": sum(count(f"SELECT count(*) FROM {t[0]} WHERE text_hash IN ({OWN_TEXTS})", [corpus_id, corpus_id])
                       for t in con.execute(VECTOR_TABLES).fetchall()),
        "maps": count("SELECT count(*) FROM runs WHERE corpus_id = ? AND kind = 'projection'", [corpus_id]),
        "clusters": count("SELECT count(*) FROM runs WHERE corpus_id = ? AND kind = 'cluster'", [corpus_id]),
        "labels": count("SELECT count(*) FROM map_labels WHERE corpus_id = ?", [corpus_id]),
        "runs": count("SELECT count(*) FROM runs WHERE corpus_id = ?", [corpus_id]),
    }


def _delete_rows(con, corpus_id: int) -> dict[str, int]:
    """Everything keyed by the corpus: documents, metadata, runs (ingest, maps, clusters, evaluations) with
    their rows, labels made on its maps, and the vectors of texts no other corpus holds. Encoders stay."""
    deleted = _doomed(con, corpus_id)
    for (table,) in con.execute(VECTOR_TABLES).fetchall():
        con.execute(f"DELETE FROM {table} WHERE text_hash IN ({OWN_TEXTS})", [corpus_id, corpus_id])
    for table in ("projections", "cluster_members", "cluster_labels"):
        con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT id FROM runs WHERE corpus_id = ?)", [corpus_id])
    for table in ("runs", "map_labels", "documents"):
        con.execute(f"DELETE FROM {table} WHERE corpus_id = ?", [corpus_id])
    con.execute(f"DROP TABLE IF EXISTS {meta_table(corpus_id)}")
    con.execute("DELETE FROM corpora WHERE id = ?", [corpus_id])
    return deleted


def deletion_summary(store: Store, name: str) -> dict:
    """What deleting the corpus would remove, counted without removing anything (for the confirmation)."""
    c = store.corpus(name)
    with store.connect() as con:
        return {"corpus": c.name, "deleted": _doomed(con, c.id)}


def delete_corpus(store: Store, name: str) -> dict:
    """Delete a corpus and everything keyed by it, all or nothing; returns {"corpus", "deleted": counts}."""
    c = store.corpus(name)
    with store.transaction() as con:
        _refuse_if_busy(con, c.name)
        deleted = _delete_rows(con, c.id)
    return {"corpus": c.name, "deleted": deleted}


__all__ = ["IngestError", "InMemoryFile", "StoreError", "check", "corpus_info", "default_text_column",
           "delete_corpus", "deletion_summary", "ingest_file", "ingest_frame", "preview", "stored_preview",
           "text_hash"]
