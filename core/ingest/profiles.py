"""Profiles: what one pass over the chunks learns about a column (its type, its shape, a hash per row)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MISSING = {"", "na", "n/a", "nan", "null", "none", "nat"}
ID_LIKE_CHARS = 16  # mean length of values in an identifier-like column
MIN_ROWS_FOR_SHAPE = 20  # near-unique / all-unique only mean something with this many values


def is_missing(values: pd.Series) -> pd.Series:
    return values.str.strip().str.lower().isin(MISSING)


def row_hashes(values: pd.Series) -> np.ndarray:
    return pd.util.hash_pandas_object(values, index=False).to_numpy()


def _all_dates(values: pd.Series) -> bool:
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    return bool(parsed.notna().all()) and bool(values.str.contains(r"\d").all())


@dataclass
class ColumnProfile:
    """Type and shape of a metadata column (values already trimmed)."""

    numeric: bool = True
    date: bool = True
    seen: int = 0
    hashes: list[np.ndarray] = field(default_factory=list)  # of every row, missing values included

    def update(self, values: pd.Series) -> None:
        self.hashes.append(row_hashes(values.where(~is_missing(values), "")))
        present = values[~is_missing(values)]
        if present.empty:
            return
        self.seen += len(present)
        if self.numeric:
            self.numeric = bool(pd.to_numeric(present, errors="coerce").notna().all())
        if self.date:  # numbers too, so the kind never depends on where a chunk ends; the first 100 values
            # first: most columns that are not dates fail there, without parsing the whole chunk
            self.date = all(_all_dates(part) for part in (present.iloc[:100], present))

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
        self.hashes.append(row_hashes(present))
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
