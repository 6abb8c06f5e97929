"""Ingest, piece by piece; callers use the entry points in core/corpus.py.

Two passes over the input, both streamed in chunks so memory stays flat for files larger than RAM:
- read.py: every format (CSV, TSV, Parquet, JSONL, an upload in memory, a DataFrame) as chunks of strings;
- profiles.py: what a pass learns about a column (type, shape, 8-byte hashes per row);
- check.py: pass 1, the checks: what cannot be stored, what is odd (warnings), what needs confirming
  (refusals); the checks that span rows keep hashes per row, so they hold across chunk boundaries;
- write.py: pass 2, everything in one transaction, so a rejected or cancelled ingest leaves the store as it was;
- delete.py: removing a corpus, or the one an ingest replaces, with everything keyed by it.

This file holds only the types they share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

Progress = Callable[[float, str], None]


class IngestError(UserError):
    """Bad input: the message names the file, row or column and says what to do."""


@dataclass(frozen=True)
class InMemoryFile:
    """An uploaded file, parsed from memory so that no copy of the notes is written anywhere."""

    name: str
    data: bytes


Source = str | Path | InMemoryFile
