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


def _tied_result() -> dict:
    """Two encoders, six shot counts: b clearly better at three, clearly worse at three, and ahead on
    every point estimate of the separability metrics with intervals that include 0."""
    from core.evaluation.metrics import METRICS

    def point(f1):
        return {"macro_f1": f1, "macro_f1_ci": [f1 - 0.01, f1 + 0.01], "accuracy": f1, "accuracy_ci": [f1 - 0.01, f1 + 0.01],
                "exhausted_classes": [], "majority_baseline": 0.2, "chance": 0.1}

    shots = ["1", "2", "4", "8", "16", "32"]
    encoders = {n: {key: 0.5 + bump for key, *_ in METRICS} | {"fewshot": {s: point(0.5) for s in shots}}
                for n, bump in (("a", 0.0), ("b", 0.016))}
    comparisons = [{"a": "a", "b": "b", "metric": key, "shots": None, "diff": 0.016, "ci": [-0.01, 0.04],
                    "excludes_zero": False} for key, *_ in METRICS]
    comparisons += [{"a": "a", "b": "b", "metric": "macro_f1", "shots": int(s), "diff": d, "ci": [d - 0.01, d + 0.01],
                     "excludes_zero": True} for s, d in zip(shots, (0.05, 0.05, 0.05, -0.05, -0.05, -0.05))]
    return {"encoders": encoders, "comparisons": comparisons}


def test_report_calls_a_three_three_tie_no_winner_and_judges_by_paired_intervals_only():
    from core.export import render_report_md

    md = render_report_md(_tied_result())
    assert "best at" not in md and "is best" not in md
    assert "clearly better than a at 3, clearly worse at 3, and not clearly different at 0 of 6" in md
    # ahead on every point estimate, but each paired interval includes 0: no verdict either way
    verdicts = [line for line in md.splitlines() if line.startswith("- ") and " minus a = " in line
                and " at " not in line.split(" minus ")[0]]
    assert len(verdicts) == 8 and all(line.endswith("no clear difference.") for line in verdicts)


def test_declutr_help_claims_nothing_the_evidence_does_not_support():
    from core.training.registry import get_objective

    text = get_objective("declutr").help.lower()
    assert "best" not in text and "few labels" not in text and "compare it with its base" in text
