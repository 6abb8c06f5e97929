"""safe_csv: text that a spreadsheet would run as a formula stays text; everything else is untouched."""

import io

import pandas as pd
import pytest

from core.export import safe_csv


def read_back(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\r=1+1"])
def test_formula_starts_are_quoted(cell):
    back = read_back(safe_csv(pd.DataFrame({"text": [cell]})))
    assert back["text"][0] == "'" + cell


def test_other_cells_numbers_and_missing_values_are_left_alone():
    df = pd.DataFrame({"id": ["n1", "n2", "n3"], "text": ["chest pain = angina", "a-b", None],
                       "score": [-0.5, 1.0, 2.0], "correct": [True, False, True],
                       "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"])})
    data = safe_csv(df)
    assert data.startswith(b"\xef\xbb\xbf")  # a byte-order mark: Excel then reads UTF-8 accents right
    back = read_back(data)
    assert list(back["text"]) == ["chest pain = angina", "a-b", ""]
    assert list(back["score"]) == ["-0.5", "1.0", "2.0"]  # a negative number is a number, not a formula
    assert list(back["correct"]) == ["True", "False", "True"] and back["when"][0] == "2024-01-01"
    assert list(df["text"])[0] == "chest pain = angina"  # the caller's frame is not modified


def test_column_names_and_arrow_strings_are_covered():
    df = pd.DataFrame({"=cmd": pd.array(["-x", "ok"], dtype="string[pyarrow]"), "café": ["é", "ü"]})
    back = read_back(safe_csv(df))
    assert list(back.columns) == ["'=cmd", "café"] and list(back["'=cmd"]) == ["'-x", "ok"]
    twice = pd.DataFrame([["=a", "+b"]], columns=["note", "note"])  # repeated names are still covered
    assert read_back(safe_csv(twice)).iloc[0].tolist() == ["'=a", "'+b"]
