"""What leaves NoteSpace for people: spreadsheet-safe CSV files and the Markdown evaluation report."""

from __future__ import annotations

import re

import pandas as pd

from core.evaluation.metrics import METRICS
from core.evaluation.tables import (
    DIRECTION, comparison_words, exhausted_shots, fewshot_class_frame, fmt, separation_words, struggling_classes,
)
from core.intervals import N_BOOT

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Google Sheets
# (CSV injection): a note saying "=HYPERLINK(...)" must stay text when a clinician opens the file.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutralise(value):
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def safe_csv(df: pd.DataFrame) -> bytes:
    """UTF-8 CSV (with a byte-order mark, so Excel reads accents right) whose text cannot run as a formula.

    Text cells and column names starting with = + - @ tab or CR get a leading single quote;
    numbers, dates and booleans are left as they are (a negative number is not a formula).
    """
    out = df.copy()
    for i in range(out.shape[1]):  # by position: column names may repeat
        col = out.iloc[:, i]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col)):
            out.isetitem(i, col.astype(object).map(_neutralise))
    out.columns = [_neutralise(str(c)) for c in out.columns]
    # CRLF rows (RFC 4180): the csv writer then also quotes a lone CR inside a cell, which readers split on
    return out.to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig")


# ---------------------------------------------------------------- Markdown report
def _esc(text) -> str:
    """Names from the data as literal Markdown text: a pipe would break a table, and '<', '*', '[' ...
    would turn a class name into HTML, emphasis or a link (the drug reviews hold stray '</span>')."""
    return re.sub(r"([\\`*_\[\]<>|#!])", r"\\\1", str(text))


READING = [
    "## Reading the metrics", "",
    *[f"- {name}, {better} is better: {meaning}" for _, name, better, _, meaning in METRICS],
    "- Few-shot macro-F1: the F1 score averaged over classes, so a small class counts as much as a large one.",
    "", f"Intervals are 95% percentile bootstrap intervals: separability over {N_BOOT:,} resamples of the notes "
    "(silhouette, kNN and probe results per note averaged; the other metrics recomputed on each resample, "
    "Davies-Bouldin's and Calinski-Harabasz's intervals centred on the estimate, since repeated notes shift "
    "every replicate of a ratio to one side); "
    f"few-shot over {N_BOOT:,} resamples of the test notes and of the draws together. A comparison resamples both "
    "encoders identically (a paired bootstrap) and counts as a difference only when its interval excludes 0.", "",
]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def _overview(result: dict, first: dict) -> list[str]:
    lines = []
    if result.get("corpus") or result.get("label"):
        lines += [f"Corpus **{_esc(result.get('corpus', '?'))}**, label **{_esc(result.get('label', '?'))}**.", ""]
    if result.get("code"):
        code = result["code"]
        commit = f", commit {code['commit'][:10]}" + (" with uncommitted changes" if code.get("dirty") else "") \
            if code.get("commit") else ""
        lines += [f"Computed by NoteSpace {_esc(code.get('notespace', '?'))}{commit}, results version "
                  f"{code.get('results_version', '?')}.", ""]
    if first.get("n") is not None:
        lines.append(f"{first['n']} labelled notes in {first['n_classes']} classes.")
        dropped = sorted(first.get("dropped_classes") or {})
        if dropped:
            more = f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""
            lines.append(f"Dropped (fewer than 2 notes): {', '.join(map(_esc, dropped[:10]))}{more}.")
        if first.get("n_unlabelled"):
            lines.append(f"{first['n_unlabelled']} notes without a label were left out.")
        lines.append("")
    return lines


def _separability_section(result: dict, names: list[str]) -> list[str]:
    encs = result["encoders"]
    rows = [[name, better] + [fmt(encs[n].get(key), encs[n].get(ci_key)) for n in names]
            for key, name, better, ci_key, _ in METRICS]
    first = encs[names[0]] if names else {}
    lines = ["## Separability in the full embedding space", "",
             "Cosine geometry on L2-normalised vectors; 95% bootstrap intervals in brackets.", ""]
    lines += _table(["Metric", "Better"] + [_esc(n) for n in names], rows)
    if first.get("majority_baseline") is not None:
        lines += [f"Baselines for the accuracies: always answering the largest class scores "
                  f"{fmt(first['majority_baseline'])}; guessing among the {first['n_classes']} classes "
                  f"{fmt(first['chance'])}.", ""]
    for n in names:
        score = encs[n].get("knn_chance_corrected")
        lines.append(f"- {_esc(n)}: the label separates {separation_words(score)} "
                     f"(nearest notes share the label {fmt(score, encs[n].get('knn_chance_corrected_ci'))} "
                     f"beyond chance, on a scale from 0 = chance to 1 = always).")
    lines.append("- Words for that score are a rule of thumb: strongly from 0.6, moderately from 0.3, weakly from 0.1.")
    return lines + [""]


def _fewshot_section(result: dict, names: list[str], shots: list[str], first: dict) -> list[str]:
    rows = []
    for s in shots:
        fs = [result["encoders"][n].get("fewshot", {}).get(s) for n in names]
        base = next((f for f in fs if f), {})
        exhausted = base.get("exhausted_classes") or []
        rows.append([s] + [f"{fmt(f['macro_f1'], f.get('macro_f1_ci'))} / {fmt(f['accuracy'], f.get('accuracy_ci'))}"
                           if f else "n/a" for f in fs]
                    + [fmt(base.get("majority_baseline")), fmt(base.get("chance")),
                       f"{len(exhausted)}" + (" (no verdict)" if exhausted else "")])
    return ([f"## Few-shot learning curve ({first.get('fewshot_classifier', 'logreg')} on frozen embeddings)", "",
             "Macro-F1 / accuracy, mean over draws with 95% bootstrap intervals over test notes and draws. The same "
             f"held-out test notes ({first.get('fewshot_test_n', '?')}) and training draws serve every encoder; "
             "identical texts never sit on both sides. Majority: accuracy of always answering the most frequent "
             "class; chance: of guessing. Exhausted: classes whose every training note is in every draw at that "
             "count, so the draws do not vary for them; such counts get no verdict.", ""]
            + _table(["Notes per class"] + [_esc(n) for n in names] + ["Majority", "Chance", "Exhausted classes"],
                     rows))


def _verdicts(result: dict, names: list[str]) -> list[str]:
    """Each encoder against the first from the paired comparisons only; exhausted shot counts left out."""
    lines = ["## Each encoder against the first", ""]
    if len(names) < 2:
        return lines + ["Only one encoder was evaluated: compare it with its base model to see what changed.", ""]
    labels = {key: name for key, name, *_ in METRICS} | {"macro_f1": "Few-shot macro-F1", "accuracy": "Few-shot accuracy"}
    skipped = exhausted_shots({n: e.get("fewshot", {}) for n, e in result["encoders"].items()})
    for c in result.get("comparisons", []):
        if c["shots"] is not None and c["shots"] in skipped:
            continue
        where = f" at {c['shots']} per class" if c["shots"] is not None else ""
        lines.append(f"- {labels[c['metric']]}{where}: {_esc(c['b'])} minus {_esc(c['a'])} = "
                     f"{comparison_words(c, DIRECTION[c['metric']])}.")
    for b in names[1:]:
        tally = {"better": 0, "worse": 0, "no clear difference": 0}
        for c in result.get("comparisons", []):
            if c["b"] == b and c["metric"] == "macro_f1" and c["shots"] not in skipped:
                tally[comparison_words(c, "higher").split(": ")[-1]] += 1
        if sum(tally.values()):
            lines.append(f"- Few-shot macro-F1 overall: {_esc(b)} is clearly better than {_esc(names[0])} at "
                         f"{tally['better']}, clearly worse at {tally['worse']}, and not clearly different at "
                         f"{tally['no clear difference']} of {sum(tally.values())} shot counts with a verdict.")
    if skipped:
        lines.append(f"- No verdict at {', '.join(map(str, sorted(skipped)))} per class: some class's training "
                     "notes are all used in every draw there.")
    return lines + [""]


def _per_class_section(name: str, entry: dict, limit: int = 30) -> list[str]:
    per = entry["per_class"]
    shown = sorted(per.items(), key=lambda kv: -kv[1]["n"])[:limit]  # largest classes first
    rows = [[_esc(c), str(v["n"]), fmt(v.get("silhouette")), fmt(v.get("knn_accuracy")), fmt(v.get("alignment"))]
            for c, v in shown]
    lines = [f"## Per class: {_esc(name)}", ""]
    lines += _table(["Class", "Notes", "Silhouette", "kNN accuracy", "Alignment"], rows)
    if len(per) > len(shown):
        lines += [f"({len(per) - len(shown)} smaller classes not shown.)", ""]
    weak = struggling_classes(per, "knn_accuracy", entry.get("knn_accuracy"))
    if weak:
        lines += ["Classes at least 0.2 below the overall kNN accuracy: "
                  + ", ".join(f"{_esc(w['class'])} ({fmt(w['knn_accuracy'])}, {w['n']} notes)" for w in weak) + ".", ""]
    return lines


def _fewshot_per_class_section(name: str, entry: dict, limit: int = 30) -> list[str]:
    """Each class's few-shot F1 and recall at the largest shot count, worst first."""
    k = max(entry["fewshot"], key=int)
    frame = fewshot_class_frame(entry["fewshot"][k].get("per_class", {}))
    rows = [[_esc(r["Class"]), str(r["Test notes"]), fmt(r["F1"]), fmt(r["Share of its notes found"])]
            for r in frame.head(limit).to_dict("records")]
    lines = [f"## Few-shot per class: {_esc(name)}, {k} notes per class", "",
             "Mean over draws, worst first."
             + (" Every training note of some classes is used in every draw at this count."
                if entry["fewshot"][k].get("exhausted_classes") else ""), ""]
    lines += _table(["Class", "Test notes", "F1", "Share of its notes found"], rows)
    if len(frame) > limit:
        lines += [f"({len(frame) - limit} better classes not shown.)", ""]
    return lines


def render_report_md(result: dict, title: str = "NoteSpace evaluation", level: int = 1, details: bool = True) -> str:
    """A readable Markdown report of `evaluate_encoders` / `evaluate_corpus` output.

    `level` nests it under a larger document (2: the title becomes "##"); details=False leaves out
    the per-class tables and the guide to the metrics (a study lists several corpora, one guide).
    """
    encs = result["encoders"]
    names = list(encs)
    first = encs[names[0]] if names else {}
    shots = sorted({s for e in encs.values() for s in e.get("fewshot", {})}, key=int)
    lines = [f"# {title}", ""] + _overview(result, first) + _separability_section(result, names)
    if shots:
        lines += _fewshot_section(result, names, shots, first)
    lines += _verdicts(result, names)
    if details:
        for n in names:
            if encs[n].get("per_class"):
                lines += _per_class_section(n, encs[n])
            if encs[n].get("fewshot"):
                lines += _fewshot_per_class_section(n, encs[n])
        lines += READING
    return "\n".join("#" * (level - 1) + line if line.startswith("#") else line for line in lines)
