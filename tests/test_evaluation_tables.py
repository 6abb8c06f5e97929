"""core.evaluation.tables: numbers with their intervals, verdicts in each metric's own direction, and the
few-shot tables with their baselines and the shot counts that get no verdict."""

from __future__ import annotations

import math

import pytest

from core.evaluation.tables import (
    DIRECTION, comparison_words, comparisons_table, exhausted_shots, fewshot_class_frame, fewshot_table, fmt,
    metrics_table,
)


@pytest.mark.parametrize("value, ci, kwargs, text", [
    (0.12345, [0.1, 0.15], {}, "0.123 [0.100, 0.150]"),
    (0.031, [0.01, 0.052], {"sign": True}, "+0.031 [+0.010, +0.052]"),
    (0.5, [None, 0.6], {}, "0.500"),  # half an interval is no interval
    (123456.0, None, {}, "1.235e+05"),
    (None, [0.1, 0.2], {}, "n/a"),
    (math.nan, None, {}, "n/a"),
])
def test_fmt_gives_a_number_with_its_interval_or_says_none(value, ci, kwargs, text):
    assert fmt(value, ci, **kwargs) == text


@pytest.mark.parametrize("diff, excludes_zero, direction, verdict", [
    (0.03, True, "higher", "better"),
    (0.03, True, "lower", "worse"),  # e.g. Davies-Bouldin: a larger value is worse
    (-0.03, True, "lower", "better"),
    (0.03, False, "higher", "no clear difference"),
])
def test_a_verdict_comes_from_the_interval_in_the_metric_direction(diff, excludes_zero, direction, verdict):
    c = {"diff": diff, "ci": [diff - 0.01, diff + 0.01], "excludes_zero": excludes_zero}
    assert comparison_words(c, direction).endswith(f": {verdict}")
    assert comparison_words({"diff": None, "ci": None, "excludes_zero": False}, direction) == "n/a"


def test_every_compared_metric_has_a_direction():
    assert DIRECTION["davies_bouldin"] == "lower" and DIRECTION["knn_accuracy"] == "higher"
    assert DIRECTION["macro_f1"] == DIRECTION["accuracy"] == "higher"


def test_the_metrics_table_puts_the_paired_difference_beside_the_values():
    entry = {"knn_accuracy": 0.8, "knn_accuracy_ci": [0.7, 0.9]}
    result = {"encoders": {"a": entry, "b": entry | {"knn_accuracy": 0.9}},
              "comparisons": [{"a": "a", "b": "b", "metric": "knn_accuracy", "shots": None, "diff": 0.1,
                               "ci": [0.05, 0.15], "excludes_zero": True}]}
    row = metrics_table(result).set_index("Measure").iloc[0]
    assert row["a"] == "0.800 [0.700, 0.900]" and row["b"] == "0.900 [0.700, 0.900]"
    assert row["b minus a"] == "+0.100 [+0.050, +0.150]: better"
    assert row["Better"] == "higher is better"


def test_accuracies_sit_beside_their_baselines_in_the_metrics_table():
    entry = {"knn_accuracy": 0.8, "linear_probe_accuracy": 0.85, "silhouette": 0.1, "majority_baseline": 0.4,
             "chance": 0.25}
    table = metrics_table({"encoders": {"a": entry}}).set_index("Measure")["Largest class / guessing"]
    shown = {k: v for k, v in table.items() if v}
    assert len(shown) == 2 and set(shown.values()) == {"0.400 / 0.250"}
    assert all("kNN" in k or "probe" in k for k in shown)


def test_every_few_shot_class_is_listed_worst_first():
    per_class = {"b": {"test_notes": 5, "f1": 0.9, "recall": 1.0}, "a": {"test_notes": 3, "f1": 0.2, "recall": 0.1},
                 "c": {"test_notes": 4, "f1": 0.2, "recall": 0.3}}
    frame = fewshot_class_frame(per_class)
    assert frame["Class"].tolist() == ["a", "c", "b"]  # ties by name
    assert frame.set_index("Class").loc["c"].tolist() == [4, 0.2, 0.3]


def _point(f1, exhausted=()):
    return {"macro_f1": f1, "macro_f1_ci": [f1 - 0.1, f1 + 0.1], "accuracy": f1, "accuracy_ci": [f1 - 0.1, f1 + 0.1],
            "majority_baseline": 0.4, "chance": 0.25, "exhausted_classes": list(exhausted)}


def test_fewshot_tables_show_baselines_and_give_no_verdict_where_a_class_is_used_up():
    summaries = {"a": {"1": _point(0.3), "8": _point(0.6, ["rare"])},
                 "b": {"1": _point(0.5), "8": _point(0.7, ["rare"])}}
    assert exhausted_shots(summaries) == {8}
    table = fewshot_table(summaries, "accuracy").set_index("Notes per class")
    assert list(table.index) == [1, 8]
    assert table.loc[1, "b"] == "0.500 [0.400, 0.600]" and table.loc[1, "Always the largest class"] == "0.400"
    assert table.loc[1, "Guessing"] == "0.250" and table.loc[1, "Classes with all training notes used"] == "none"
    assert table.loc[8, "Classes with all training notes used"] == "1: no verdict"
    assert fewshot_table(summaries, "macro_f1").loc[0, "Guessing"] == "n/a"  # baselines are accuracies

    comps = [{"a": "a", "b": "b", "metric": "macro_f1", "shots": k, "diff": 0.2, "ci": [0.1, 0.3],
              "excludes_zero": True} for k in (1, 8)]
    words = comparisons_table(comps, exhausted_shots(summaries))["Difference [95% interval]: verdict"].tolist()
    assert words == ["+0.200 [+0.100, +0.300]: better",
                     "+0.200 [+0.100, +0.300]: no verdict (all training notes of some class used)"]
