"""Pass 1 of an ingest: read the whole input once and decide whether and how it can be stored.

Raises IngestError for what cannot be stored at all (a missing column, no rows, no text); otherwise
returns a Plan with the metadata types, the warnings (what is odd about the file) and the refusals
(what is stored only once the user confirms). The checks that span rows (duplicate texts and ids,
conflicting metadata) keep 8-byte hashes per row, so they hold across chunk boundaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.ingest import IngestError, Source
from core.ingest.profiles import MIN_ROWS_FOR_SHAPE, ColumnProfile, TextProfile, row_hashes
from core.ingest.read import read_chunks, source_label, wanted_columns

SHORT_TEXT = 10  # characters: a "note" shorter than this is probably a code, a label or a number
SENTENCE_HEADER = 40  # a header cell this long (or of 6 words or more) reads like data, not a column name


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


def check(source: Source, text_col: str, id_col: str | None = None, meta_cols: list[str] | None = None,
          header: bool = True, chunks: Iterator[pd.DataFrame] | None = None) -> Plan:
    """Pass 1 over the whole input: raises IngestError when it cannot be stored at all; otherwise returns
    the plan with its warnings and the refusals that need the user's confirmation."""
    plan = Plan(source_label(source), text_col, id_col, header)
    if chunks is None:
        chunks = read_chunks(source, wanted_columns(text_col, id_col, meta_cols), header=header)
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


def _repeats(values: np.ndarray) -> tuple[int, int, int]:
    """How many values repeat an earlier one; the position of the first repeat and of the value it repeats."""
    repeats = pd.Series(values).duplicated().to_numpy()
    if not repeats.any():
        return 0, -1, -1
    again = int(np.flatnonzero(repeats)[0])
    return int(repeats.sum()), int(np.flatnonzero(values == values[again])[0]), again


def _duplicate_checks(plan: Plan, hashes: np.ndarray, rows: np.ndarray, profiles: dict[str, ColumnProfile]) -> None:
    plan.duplicates, first, again = _repeats(hashes)
    if not plan.duplicates:
        return
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
    repeated, first, again = _repeats(ids)
    if not repeated:
        return
    plan.warnings.append(f"{plan.label}: column '{plan.id_col}': {repeated:,} ids appear again (e.g. "
                         f"'{ids[again]}' at rows {rows[first]} and {rows[again]}); make ids unique or leave the "
                         "id column out")


def _meta_shape_checks(plan: Plan, profiles: dict[str, ColumnProfile]) -> None:
    missing = row_hashes(pd.Series([""]))[0]
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


def confirmed(plan: Plan, force: bool) -> Plan:
    """The plan to write: refused unless confirmed; a confirmed refusal is still reported, as a warning."""
    if not plan.refusals:
        return plan
    if not force:
        more = len(plan.refusals) - 1
        raise IngestError(plan.refusals[0] + (f" ({more} more check(s) also failed)" if more else ""))
    plan.warnings = plan.refusals + plan.warnings
    return plan


def _sentence_header(columns: list[str]) -> str | None:
    return next((c for c in columns if len(c) >= SENTENCE_HEADER or len(c.split()) >= 6), None)
