"""What leaves NoteSpace for people: spreadsheet-safe CSV files and the Markdown evaluation report."""

from __future__ import annotations

import re

import pandas as pd

from core.evaluation import METRICS

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


def _fmt(v, ci=None, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    text = f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.4g}"
    if ci and ci[0] is not None and ci[1] is not None:
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def _ranked(result: dict, key: str, direction: str, ci_key: str | None = None, shot: str | None = None):
    """Encoders with a value for the metric, best first: [(name, value, ci)]."""
    rows = []
    for name, e in result["encoders"].items():
        src = e.get("fewshot", {}).get(shot, {}) if shot else e
        if src.get(key) is not None:
            rows.append((name, src[key], src.get(ci_key) if ci_key else None))
    return sorted(rows, key=lambda r: -r[1] if direction == "higher" else r[1])


def _verdict(rows, direction: str) -> str:
    """"best", and whether its 95% interval clears the runner-up's."""
    (best, v, ci), (second, v2, ci2) = rows[0], rows[1]
    text = f"**{best}** ({_fmt(v)} vs {second} {_fmt(v2)})"
    if ci and ci2 and None not in ci and None not in ci2:
        clear = ci[0] > ci2[1] if direction == "higher" else ci[1] < ci2[0]
        text += "; 95% intervals do not overlap" if clear else "; 95% intervals overlap, so not clearly better"
    return text


READING = [
    "## Reading the metrics", "",
    "- Silhouette: how much closer a note is to its own label than to the nearest other label (-1..1).",
    "- kNN accuracy: share of notes whose nearest neighbours (leave-one-out) carry their label.",
    "- Linear probe: cross-validated logistic-regression accuracy on the frozen embeddings.",
    "- Davies-Bouldin (lower is better), Calinski-Harabasz (higher is better): compactness vs separation.",
    "- Alignment (lower: same-label notes closer) and uniformity (lower: space used more evenly),",
    "  after Wang & Isola (2020).", "",
]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def _overview(result: dict, first: dict) -> list[str]:
    lines = []
    if result.get("corpus") or result.get("label"):
        lines += [f"Corpus **{_esc(result.get('corpus', '?'))}**, label **{_esc(result.get('label', '?'))}**.", ""]
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
    encs, rows = result["encoders"], []
    for key, label, direction, ci_key in METRICS:
        cells = [_fmt(encs[n].get(key), encs[n].get(ci_key) if ci_key else None) for n in names]
        ranked = _ranked(result, key, direction)
        if len(ranked) > 1:  # bold the best
            cells = [f"**{c}**" if n == ranked[0][0] else c for n, c in zip(names, cells)]
        rows.append([label, direction] + cells)
    return (["## Separability in the full embedding space", "",
             "Cosine geometry on L2-normalised vectors; 95% bootstrap intervals in brackets.", ""]
            + _table(["Metric", "Better"] + [_esc(n) for n in names], rows))


def _fewshot_section(result: dict, names: list[str], shots: list[str], first: dict) -> list[str]:
    rows = []
    for s in shots:
        fs = [result["encoders"][n].get("fewshot", {}).get(s) for n in names]
        rows.append([s] + [f"{_fmt(f['macro_f1'], f.get('macro_f1_ci'))} / {_fmt(f['accuracy'])}" if f else "n/a"
                           for f in fs])
    return ([f"## Few-shot learning curve ({first.get('fewshot_classifier', 'logreg')} on frozen embeddings)", "",
             "Macro-F1, mean over seeds with 95% t-interval; accuracy after the slash. The same held-out "
             f"test notes ({first.get('fewshot_test_n', '?')}) and training samples serve every encoder.", ""]
            + _table(["Notes per class"] + [_esc(n) for n in names], rows))


def _verdicts(result: dict, names: list[str], shots: list[str]) -> list[str]:
    lines = ["## Which encoder is best at what", ""]
    if len(names) < 2:
        return lines + ["Only one encoder was evaluated: compare it with its base model to see what changed.", ""]
    for key, label, direction, ci_key in METRICS:
        ranked = _ranked(result, key, direction, ci_key)
        if len(ranked) > 1:
            lines.append(f"- {label}: {_verdict(ranked, direction)}.")
    wins: dict[str, int] = {}
    for s in shots:
        ranked = _ranked(result, "macro_f1", "higher", "macro_f1_ci", shot=s)
        if len(ranked) > 1:
            lines.append(f"- Few-shot macro-F1 at {s} per class: {_verdict(ranked, 'higher')}.")
            wins[ranked[0][0]] = wins.get(ranked[0][0], 0) + 1
    if wins:
        top = max(wins, key=wins.get)
        lines.append(f"- Overall on the few-shot curve: **{top}** is best at {wins[top]} of {len(shots)} shot counts.")
    return lines + [""]


def _per_class_section(name: str, per: dict, limit: int = 30) -> list[str]:
    shown = sorted(per.items(), key=lambda kv: -kv[1]["n"])[:limit]  # largest classes first
    rows = [[_esc(c), str(v["n"]), _fmt(v.get("silhouette")), _fmt(v.get("knn_accuracy")), _fmt(v.get("alignment"))]
            for c, v in shown]
    lines = [f"## Per class: {_esc(name)}", ""]
    lines += _table(["Class", "Notes", "Silhouette", "kNN accuracy", "Alignment"], rows)
    if len(per) > len(shown):
        lines += [f"({len(per) - len(shown)} smaller classes not shown.)", ""]
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
    lines += _verdicts(result, names, shots)
    if details:
        for n in names:
            if encs[n].get("per_class"):
                lines += _per_class_section(n, encs[n]["per_class"])
        lines += READING
    return "\n".join("#" * (level - 1) + line if line.startswith("#") else line for line in lines)
