"""The study behind docs/results.md: the base encoder against adapted ones, on notes held out from adaptation.

    python bench/study.py [--limit N] [--steps N] [--seeds 5] [--shots 1,2,4,8,16,32] [--base minilm]
                          [--device auto] [--db PATH] [--out docs/results.md] [--runs bench/out/study_adapt.json]

For each corpus (HPO definitions by organ system, drug reviews by condition):

1. split it once into an adaptation part and a held-out part, stored as two corpora (`hpo-adapt`,
   `hpo-heldout`) whose source names the split: HPO per organ system (seed 0, 30 % held out), the drug
   reviews by their own train/test column;
2. adapt the base encoder with MLM, DeCLUTR and the metadata objective (label: the studied one) on the
   adaptation part only, through the job runner with the device's suggested settings (`--steps`
   overrides the steps, for checks), as `hpo-mlm`, `hpo-declutr`, `hpo-metadata`. An encoder that
   exists already is reused once its card shows it was made from that adaptation part with the same
   settings (an `hpo-metadata` made from the whole corpus would have seen the held-out labels);
3. evaluate the base and adapted encoders on the held-out part with `evaluate_corpus` (results cached
   in the store, so a rerun only computes what changed).

The report: provenance, the adaptation runs (also kept in --runs), separability and few-shot curves
per corpus, and the agreement with the paper's findings computed from the numbers. A "## Commentary"
section already in --out is kept. --limit N studies a seeded sample of N notes per corpus (corpora
and encoders named `hpo-sample-N-...`) to check the pipeline; point NOTESPACE_MODELS at a temporary
folder then, so check encoders stay out of models/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.cli import StderrProgress  # noqa: E402
from core.corpus import ingest_frame, text_hash  # noqa: E402
from core.encoders import Encoder, get_encoder, list_encoders  # noqa: E402
from core.evaluation import evaluate_corpus  # noqa: E402
from core.export import READING, render_report_md  # noqa: E402
from core.fewshot import split_train_test  # noqa: E402
from core.devices import resolve_device  # noqa: E402
from core.jobs import run_pretrain_now  # noqa: E402
from core.options import DEFAULT_ENCODER, EvaluateOptions, PretrainOptions  # noqa: E402
from core.store import Corpus, Store, StoreError  # noqa: E402
from core.training.settings import suggested_options  # noqa: E402
from sample_data.demo import DEMOS  # noqa: E402

OBJECTIVES = ("mlm", "declutr", "metadata")
SPLIT_SEED = 0
RUNS = ROOT / "bench" / "out" / "study_adapt.json"
COMMENTARY = "## Commentary"


@dataclass(frozen=True)
class Study:
    demo: str
    label: str
    title: str
    own_split: tuple[str, str, str] | None = None  # (column, adaptation value, held-out value)
    heldout: float = 0.3  # without an own split: this fraction of each class is held out


# The drug reviews' own split is the published one (600 / 379, random, not stratified): it leaves about
# as many evaluable classes as a stratified split would (50 conditions with >= 2 held-out notes), and
# involves no choice of ours.
STUDIES = [
    Study("hpo", "organ_system", "HPO definitions by organ system"),
    Study("drug-reviews", "condition", "Drug reviews by condition", own_split=("split", "train", "test")),
]


def prefix(study: Study, limit: int | None) -> str:
    """Start of the study's corpus and encoder names: samples never share names with the real study."""
    return f"{study.demo}-sample-{limit}" if limit else study.demo


def how_split(study: Study) -> str:
    if study.own_split:
        column, adapt_value, heldout_value = study.own_split
        return (f"the corpus's own `{column}` column ({adapt_value} / {heldout_value}), held-out copies of "
                "adaptation texts dropped")
    return (f"stratified by `{study.label}`, {study.heldout:.0%} of each class held out (seed {SPLIT_SEED}), "
            "identical texts on one side")


def split(frame: pd.DataFrame, study: Study, text: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(adaptation part, held-out part), as `how_split` says, split by text hash: a text repeated in the
    corpus sits on one side only (an own split's held-out copies of adaptation texts are dropped)."""
    hashes = frame[text].astype(str).map(text_hash)
    if study.own_split:
        column, adapt_value, heldout_value = study.own_split
        adapt = frame[column] == adapt_value
        return frame[adapt], frame[(frame[column] == heldout_value) & ~hashes.isin(set(hashes[adapt]))]
    codes = pd.factorize(frame[study.label].astype(str))[0]
    # one-note classes stay in adaptation
    adapt_idx, heldout_idx = split_train_test(codes, study.heldout, SPLIT_SEED, hashes.to_numpy())
    return frame.iloc[adapt_idx], frame.iloc[heldout_idx]


def corpora(store: Store, study: Study, limit: int | None) -> tuple[str, str]:
    """The study's (adaptation, held-out) corpora in the store; made on first use only."""
    names = (f"{prefix(study, limit)}-adapt", f"{prefix(study, limit)}-heldout")
    known = {c.name for c in store.corpora()}
    if all(n in known for n in names):
        return names
    loader, text, id_col, meta = DEMOS[study.demo]
    frame = loader()
    if limit:
        frame = frame.sample(n=min(limit, len(frame)), random_state=SPLIT_SEED).sort_index()
    sample = f", seeded sample of {len(frame)} notes (seed {SPLIT_SEED})" if limit else ""
    for name, part, which in zip(names, split(frame, study, text), ("adaptation", "held-out")):
        if name not in known:
            print(f"loading '{name}' ({len(part):,} notes)", file=sys.stderr)
            ingest_frame(store, part, name, text, id_col, meta,
                         source=f"demo:{study.demo}{sample}; {which} part, split by {how_split(study)}")
    return names


def _check_made_from(enc: Encoder, corpus: Corpus, opts: PretrainOptions) -> None:
    """Raise unless the existing encoder was made from `corpus` with `opts`: one made from other notes
    (the whole corpus, held-out labels included) would leak into the evaluation."""
    card = enc.provenance
    differs = [k for k, v in opts.as_params().items() if card.get("params", {}).get(k) != v]
    if card.get("corpus") != corpus.name or card.get("data_hash") != corpus.data_hash:
        differs.insert(0, f"corpus (made from '{card.get('corpus')}')")
    if differs:
        raise StoreError(f"encoder '{enc.id}' ({enc.path}) exists but was not made by this study ({', '.join(differs)} "
                         f"differ); remove it, or point NOTESPACE_MODELS elsewhere")


def adapt(store: Store, corpus: str, name_prefix: str, label: str, base: str = DEFAULT_ENCODER, steps: int = 0,
          device: str = "auto", objectives=OBJECTIVES, runs: Path = RUNS) -> list[dict]:
    """Adapt `base` with each objective on `corpus` (encoders PREFIX-OBJECTIVE) with the device's suggested
    settings (`steps` > 0 overrides the steps), reusing those that exist. One record per encoder, also
    kept in `runs` (JSON by encoder): wall time of the run that made it, training time, final loss,
    usable documents."""
    device = resolve_device(device)
    kept = json.loads(runs.read_text()) if runs.exists() else {}
    c, records = store.corpus(corpus), []
    for objective in objectives:
        name, suggested = f"{name_prefix}-{objective}", suggested_options(device, objective)
        opts = PretrainOptions(objective=objective, name=name, label=label if objective == "metadata" else "",
                               base=base, steps=steps or suggested["steps"], batch_size=suggested["batch_size"],
                               max_length=suggested["max_length"], lr=suggested["lr"], device=device)
        enc = next((e for e in list_encoders(store) if e.id == name), None)
        if enc:
            _check_made_from(enc, c, opts)
            print(f"{name}: exists, made from '{corpus}' with these settings: reused", file=sys.stderr)
            earlier = kept.get(name, {})  # its wall time, if the run that made it was recorded
            wall = earlier.get("wall_s") if earlier.get("fingerprint") == enc.fingerprint else None
        else:
            print(f"{name}: adapting {base} on '{corpus}' ({opts.steps} steps, {device})", file=sys.stderr)
            started = time.perf_counter()
            run_pretrain_now(store, corpus, opts, progress=StderrProgress())
            wall, enc = round(time.perf_counter() - started, 1), get_encoder(store, name)
        card = enc.provenance
        kept[name] = {"encoder": name, "objective": objective, "corpus": corpus, "base": base, "label": opts.label,
                      "steps": card["steps"], "batch_size": opts.batch_size, "max_length": opts.max_length,
                      "device": card["hardware"]["device"], "device_name": card["hardware"]["device_name"],
                      "wall_s": wall, "train_s": round(card["seconds"], 1), "final_loss": card["final_loss"],
                      "usable_docs": card["usable_docs"], "total_docs": card["total_docs"],
                      "fingerprint": enc.fingerprint}
        records.append(kept[name])
    runs.parent.mkdir(parents=True, exist_ok=True)
    runs.write_text(json.dumps(kept, indent=1) + "\n", encoding="utf-8")
    return records


# ---------------------------------------------------------------- the report
def _num(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _clears(a, b) -> bool:
    """Whether interval `a` lies wholly above interval `b`."""
    return bool(a and b and None not in (*a, *b) and a[0] > b[1])


def _mean_f1(entry: dict) -> float | None:
    values = [s["macro_f1"] for s in entry.get("fewshot", {}).values() if s.get("macro_f1") is not None]
    return float(np.mean(values)) if values else None


def _verdict(hits: int, of: int) -> str:
    return "yes" if hits == of else "partly" if hits else "no"


def agreement(corpus_title: str, result: dict, roles: dict[str, str]) -> list[list[str]]:
    """Table rows (finding, corpus, measured, agrees?) for the paper's three findings, from one
    corpus's evaluation; `roles` maps base / mlm / declutr / metadata to encoder ids."""
    encs = result["encoders"]
    base, declutr, metadata = roles["base"], roles["declutr"], roles["metadata"]
    adapted = [roles[o] for o in OBJECTIVES]
    shots = sorted(encs[base].get("fewshot", {}), key=int)
    means = {e: _mean_f1(encs[e]) for e in encs}
    best = max(means, key=lambda e: -1.0 if means[e] is None else means[e])

    def f1(e: str, s: str) -> dict:
        return encs[e]["fewshot"][s]

    wins = sum(max(encs, key=lambda e: f1(e, s)["macro_f1"] or 0.0) == declutr for s in shots)
    clear = sum(all(_clears(f1(declutr, s)["macro_f1_ci"], f1(e, s)["macro_f1_ci"]) for e in encs if e != declutr)
                for s in shots)
    rows = [["DeCLUTR best for few-shot classification", corpus_title,
             "mean macro-F1 over " + ", ".join(shots) + " notes per class: "
             + ", ".join(f"{e} {_num(means[e])}" for e in encs) + f"; best **{best}**. {declutr} best at {wins} of "
             f"{len(shots)} shot counts, its 95% interval clear of every other encoder's at {clear}",
             "yes" if best == declutr else "no"]]
    sep_hits, sep_text = 0, []
    for key, name in (("silhouette", "silhouette"), ("knn_accuracy", "kNN accuracy")):
        ranked = sorted(encs, key=lambda e: -(encs[e].get(key) if encs[e].get(key) is not None else -np.inf))
        top, second = ranked[0], ranked[1]
        sep_hits += top == metadata
        clear_of = _clears(encs[top].get(f"{key}_ci"), encs[second].get(f"{key}_ci"))
        sep_text.append(f"{name}: best **{top}** {_num(encs[top].get(key))} vs {second} {_num(encs[second].get(key))}"
                        f" (95% intervals {'do not overlap' if clear_of else 'overlap'})")
    rows.append(["Metadata objective best for separability of the label", corpus_title, "; ".join(sep_text),
                 _verdict(sep_hits, 2)])
    for what, key in (("few-shot (mean macro-F1)", None), ("silhouette", "silhouette"),
                      ("kNN accuracy", "knn_accuracy")):
        value = (lambda e: means[e]) if key is None else (lambda e, k=key: encs[e].get(k))
        beat = [e for e in adapted if None not in (value(e), value(base)) and value(e) > value(base)]
        measured = ", ".join(f"{e} {value(e) - value(base):+.3f}" if None not in (value(e), value(base)) else f"{e} n/a"
                             for e in adapted)
        if key is None:
            measured += "; above base with non-overlapping 95% intervals at " + ", ".join(
                f"{e} {sum(_clears(f1(e, s)['macro_f1_ci'], f1(base, s)['macro_f1_ci']) for s in shots)}"
                for e in adapted) + f" of {len(shots)} shot counts"
        rows.append([f"Every adapted encoder better than base: {what}", corpus_title,
                     f"difference from {base}: {measured}", _verdict(len(beat), len(adapted))])
    return rows


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    import torch

    from core.training.save import hardware

    hw = hardware(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return f"{hw['device_name']} ({os.cpu_count()} cores), torch {hw['torch']}, {hw['platform']}"


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def _kept_commentary(out: Path) -> list[str]:
    """The "## Commentary" section of an earlier report (up to the next "## " heading), else a placeholder."""
    old = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    if COMMENTARY in old:
        start = old.index(COMMENTARY)
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
        return old[start:end]
    return [COMMENTARY, "", "_The lead's reading of these numbers goes here; this section is kept when the file is "
            "regenerated._", ""]


def report(args, opts: EvaluateOptions, store: Store, sections: list[dict], seconds: dict) -> str:
    """docs/results.md from each corpus's split, adaptation records and evaluation."""
    base = get_encoder(store, args.base)
    lines = ["# Results", "",
             f"Produced by `python bench/study.py {args.command}` on {datetime.date.today()} "
             f"(code {_commit()}, {_machine()}), in {_minutes(sum(seconds.values()))} "
             f"(adaptation {_minutes(seconds['adapt'])}, evaluation {_minutes(seconds['evaluate'])}; reused "
             "adaptation runs take no time)."
             + (f" **A sample of {args.limit} notes per corpus: a pipeline check, not a result.**" if args.limit
                else ""),
             "Each corpus is split once into an adaptation part and a held-out part; the encoders are adapted on "
             "the adaptation part only and every number below comes from the held-out part. Classes with fewer "
             "than 2 held-out notes are left out of the evaluation (as `notespace evaluate` does: a class needs a "
             "note on each side of the few-shot split). "
             f"Few-shot: {opts.classifier} on frozen embeddings, {opts.shots} notes per class, {opts.seeds} seeds, "
             f"{opts.test_size:.0%} of each held-out class kept for testing. Every number is also stored, with its "
             "parameters and inputs, as a run in the store.", "",
             "## Corpora", "",
             "| Corpus | Label | Split | Adaptation notes | Held-out notes | Evaluated (notes in classes) |",
             "|---|---|---|---|---|---|"]
    for s in sections:
        first = next(iter(s["result"]["encoders"].values()))
        lines.append(f"| {s['study'].title} | `{s['study'].label}` | {how_split(s['study'])}: `{s['adapt']}` / "
                     f"`{s['heldout']}` | "
                     f"{store.corpus(s['adapt']).n_docs:,} | {store.corpus(s['heldout']).n_docs:,} | "
                     f"{first['n']:,} in {first['n_classes']} classes ({len(first.get('dropped_classes') or {})} "
                     "smaller classes left out) |")
    lines += ["", "## Adaptation runs", "",
              f"Base encoder `{base.id}` (`{base.fingerprint[:12]}`); the device's suggested settings "
              "(`core/training/settings.py`), the metadata objective pulling the studied label together. Wall time "
              "covers the whole job (loading, training, saving); training time the optimizer steps only. Also in "
              f"`{_shown(args.runs)}`.", "",
              "| Encoder | Objective | Adapted on | Steps x batch x max length | Device | Wall time | Training time "
              "| Final loss | Usable docs | Fingerprint |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in sections:
        for r in s["runs"]:
            lines.append(f"| {r['encoder']} | {r['objective']} | `{r['corpus']}` | {r['steps']} x {r['batch_size']} x "
                         f"{r['max_length']} | {r['device_name']} | {_minutes(r['wall_s'])} | {_minutes(r['train_s'])}"
                         f" | {_num(r['final_loss'])} | {r['usable_docs']:,} of {r['total_docs']:,} | "
                         f"`{r['fingerprint'][:12]}` |")
    lines.append("")
    for s in sections:
        lines.append(render_report_md(s["result"], title=s["study"].title, level=2, details=False))
    lines += ["## Agreement with the paper", "",
              "Computed from the tables above: the paper's findings (docs/paper.md) are that contrastive (DeCLUTR) "
              "training is best for few-shot classification, the metadata objective gives the clearest separability "
              "of the metadata label, and every adapted encoder beats its base. Here the metadata objective "
              "pulls together the very label evaluated, on other notes than those evaluated. Differences inside "
              "the 95% intervals are not evidence either way.", "",
              "| Finding | Corpus | Measured | Agrees |", "|---|---|---|---|"]
    for s in sections:
        lines += ["| " + " | ".join(row) + " |" for row in agreement(s["study"].title, s["result"], s["roles"])]
    lines.append("")
    return "\n".join(lines + _kept_commentary(Path(args.out)) + READING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="study a seeded sample of N notes per corpus (a pipeline check)")
    parser.add_argument("--steps", type=int, default=0, help="adaptation steps (default: the device's suggestion)")
    parser.add_argument("--shots", default="1,2,4,8,16,32")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--base", default=DEFAULT_ENCODER, help="encoder to adapt and compare with")
    parser.add_argument("--device", default="auto", help="where to adapt")
    parser.add_argument("--db", help="store file (default: $NOTESPACE_DB or ~/.notespace/notespace.duckdb)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument("--runs", type=Path, default=RUNS, help="adaptation records (JSON)")
    args = parser.parse_args(argv)
    args.command = shlex.join(sys.argv[1:] if argv is None else argv)
    store = Store(args.db) if args.db else Store()
    opts = EvaluateOptions(shots=args.shots, seeds=args.seeds)
    sections, seconds = [], {"adapt": 0.0, "evaluate": 0.0}
    try:
        for study in STUDIES:
            adapt_name, heldout_name = corpora(store, study, args.limit)
            started = time.perf_counter()
            runs = adapt(store, adapt_name, prefix(study, args.limit), study.label, args.base, args.steps, args.device,
                         runs=args.runs)
            seconds["adapt"] += time.perf_counter() - started
            roles = {"base": args.base} | {r["objective"]: r["encoder"] for r in runs}
            started = time.perf_counter()
            result = evaluate_corpus(store, heldout_name, list(roles.values()), opts.replace(label=study.label),
                                     progress=StderrProgress())
            seconds["evaluate"] += time.perf_counter() - started
            print(f"{heldout_name}: evaluated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            sections.append({"study": study, "adapt": adapt_name, "heldout": heldout_name, "runs": runs,
                             "roles": roles, "result": result})
    except (StoreError, ValueError) as exc:
        print(f"study: {exc}", file=sys.stderr)
        return 1
    Path(args.out).write_text(report(args, opts, store, sections, seconds), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
