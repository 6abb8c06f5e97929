"""The evaluation in words and tables for people: numbers with their intervals, verdicts of the paired
comparisons, and the tables the pages and the Markdown report show."""

from __future__ import annotations

import math

import pandas as pd

from core.evaluation.metrics import FEWSHOT_COMPARED, METRICS


def fmt(value, ci=None, digits: int = 3, sign: bool = False) -> str:
    """A number with its 95% interval in brackets; "n/a" for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    spec = f"{'+' if sign else ''}.{digits}f"
    text = format(value, spec) if abs(value) < 1e4 else f"{value:.4g}"
    if ci and ci[0] is not None and ci[1] is not None:
        text += f" [{format(ci[0], spec)}, {format(ci[1], spec)}]"
    return text


def comparison_words(c: dict, direction: str) -> str:
    """"+0.031 [+0.010, +0.052]: better" for one comparison, in the metric's own direction."""
    if c["diff"] is None:
        return "n/a"
    if not c["excludes_zero"]:
        verdict = "no clear difference"
    else:
        verdict = "better" if (c["diff"] > 0) == (direction == "higher") else "worse"
    return f"{fmt(c['diff'], c['ci'], sign=True)}: {verdict}"


DIRECTION = {key: better for key, _, better, _, _ in METRICS} | {m: "higher" for m in FEWSHOT_COMPARED}


ACCURACIES = ("knn_accuracy", "linear_probe_accuracy")


def metrics_table(result: dict) -> pd.DataFrame:
    """One row per headline metric: plain name, what it means, which way is better, the baselines beside
    each accuracy, each encoder's value with its 95% interval, and each later encoder's paired difference
    from the first."""
    names = list(result["encoders"])
    first = result["encoders"][names[0]] if names else {}
    baselines = f"{fmt(first.get('majority_baseline'))} / {fmt(first.get('chance'))}"
    rows = []
    for key, name, better, ci_key, meaning in METRICS:
        row = {"Measure": name, "What this means": meaning, "Better": f"{better} is better",
               "Largest class / guessing": baselines if key in ACCURACIES else ""}
        row |= {e: fmt(result["encoders"][e].get(key), result["encoders"][e].get(ci_key)) for e in names}
        for c in result.get("comparisons", []):
            if c["metric"] == key and c["shots"] is None:
                row[f"{c['b']} minus {c['a']}"] = comparison_words(c, better)
        rows.append(row)
    return pd.DataFrame(rows)


def separation_words(score: float | None) -> str:
    """The chance-corrected kNN score in words (0 = chance, 1 = perfect), for a reader new to the metrics;
    the thresholds are a rule of thumb, and the pages say so."""
    if score is None:
        return "cannot be told"
    return ("strongly" if score >= 0.6 else "moderately" if score >= 0.3 else "weakly" if score >= 0.1
            else "hardly at all")


def struggling_classes(per_class: dict[str, dict], key: str, overall: float | None, margin: float = 0.2) -> list[dict]:
    """Classes scoring at least `margin` below the overall score on `key`, worst first."""
    if overall is None:
        return []
    rows = [{"class": c} | v for c, v in per_class.items() if v.get(key) is not None and v[key] <= overall - margin]
    return sorted(rows, key=lambda r: r[key])


def per_class_frame(result: dict) -> pd.DataFrame:
    """One row per (encoder, class): notes, silhouette, kNN accuracy, alignment."""
    rows = [{"encoder": e, "class": c} | v for e, m in result["encoders"].items()
            for c, v in m.get("per_class", {}).items()]
    return pd.DataFrame(rows, columns=["encoder", "class", "n", "silhouette", "knn_accuracy", "alignment"])


def fewshot_class_frame(per_class: dict[str, dict]) -> pd.DataFrame:
    """One row per class of a few-shot point, worst F1 first: its test notes, F1 and recall (means over draws)."""
    rows = [{"Class": c, "Test notes": v["test_notes"], "F1": v["f1"], "Share of its notes found": v["recall"]}
            for c, v in per_class.items()]
    frame = pd.DataFrame(rows, columns=["Class", "Test notes", "F1", "Share of its notes found"])
    return frame.sort_values(["F1", "Class"], kind="stable").reset_index(drop=True)


FEWSHOT_WORDS = {"macro_f1": "Macro-F1", "accuracy": "Accuracy"}


def exhausted_shots(summaries: dict[str, dict]) -> set[int]:
    """Shot counts at which some class's whole training pool is in every draw (no verdict there)."""
    return {int(k) for s in summaries.values() for k, point in s.items() if point.get("exhausted_classes")}


def fewshot_table(summaries: dict[str, dict], metric: str) -> pd.DataFrame:
    """One row per shot count: each encoder's score with its 95% interval, the baselines beside it,
    and how many classes have every training note in every draw (such counts get no verdict)."""
    rows = []
    for k in sorted({int(k) for s in summaries.values() for k in s}):
        points = {e: s.get(str(k)) for e, s in summaries.items()}
        any_point = next(p for p in points.values() if p)
        exhausted = any_point.get("exhausted_classes") or []
        rows.append({"Notes per class": k}
                    | {e: fmt(p[metric], p.get(f"{metric}_ci")) if p else "n/a" for e, p in points.items()}
                    | {"Always the largest class": fmt(any_point.get("majority_baseline")) if metric == "accuracy"
                       else "n/a", "Guessing": fmt(any_point.get("chance")) if metric == "accuracy" else "n/a",
                       "Classes with all training notes used": f"{len(exhausted)}: no verdict" if exhausted else "none"})
    return pd.DataFrame(rows)


def comparisons_table(comps: list[dict], skipped: set[int] = frozenset()) -> pd.DataFrame:
    """The paired comparisons in words: what was compared, the difference with its interval, the verdict."""
    labels = {key: name for key, name, *_ in METRICS} | FEWSHOT_WORDS
    rows = []
    for c in comps:
        words = comparison_words(c, DIRECTION[c["metric"]])
        if c["shots"] is not None and c["shots"] in skipped:
            words = words.split(": ")[0] + ": no verdict (all training notes of some class used)"
        rows.append({"Compared": f"{c['b']} minus {c['a']}", "Measure": labels[c["metric"]],
                     "Notes per class": c["shots"], "Difference [95% interval]: verdict": words})
    return pd.DataFrame(rows, columns=["Compared", "Measure", "Notes per class", "Difference [95% interval]: verdict"])
