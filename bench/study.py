"""The study behind docs/results.md: encoders compared on the public corpora that carry clinical labels.

    python bench/study.py --encoders minilm mlm-hpo declutr-hpo [--limit N] [--shots 1,2,4,8,16,32]
                          [--seeds 5] [--db PATH] [--out docs/results.md]

HPO definitions are labelled by organ system (23 classes) and drug reviews by condition. Each demo
corpus is loaded once into the store, embedded with every encoder (cached) and evaluated with
`evaluate_corpus`, which keeps every result in the store with its parameters and inputs, so a
repeated study only computes what changed. --limit N evaluates a seeded random sample of N notes
per corpus instead (a separate corpus, e.g. 'hpo-sample-300'), to check the pipeline quickly.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.cli import StderrProgress  # noqa: E402
from core.corpus import ingest_frame  # noqa: E402
from core.encoders import get_encoder  # noqa: E402
from core.evaluation import evaluate_corpus  # noqa: E402
from core.export import READING, render_report_md  # noqa: E402
from core.options import EvaluateOptions  # noqa: E402
from core.store import Store, StoreError  # noqa: E402
from sample_data.demo import DEMOS  # noqa: E402

# (demo corpus, label column, section title)
STUDY = [
    ("hpo", "organ_system", "HPO definitions by organ system"),
    ("drug-reviews", "condition", "Drug reviews by condition"),
]


def load_corpus(store: Store, demo: str, limit: int | None) -> str:
    """The demo corpus (or a seeded sample of it) in the store; loaded on first use only."""
    name = f"{demo}-sample-{limit}" if limit else demo
    try:
        store.corpus(name)
    except StoreError:
        loader, text, id_col, meta = DEMOS[demo]
        frame = loader()
        if limit:
            frame = frame.sample(n=min(limit, len(frame)), random_state=0).sort_index()
        print(f"loading '{name}' ({len(frame):,} notes)", file=sys.stderr)
        source = f"demo:{demo}" + (f" sample {limit}" if limit else "")
        ingest_frame(store, frame, name, text, id_col, meta, source=source)
    return name


def provenance(store: Store, encoder_ids: list[str], opts: EvaluateOptions, limit: int | None) -> list[str]:
    """How the numbers were made: command, date, code version, machine and every encoder's identity."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    lines = ["# Results", "",
             f"Produced by `python bench/study.py {' '.join(sys.argv[1:])}` on {datetime.date.today()} "
             f"(code {commit}, {device}). Few-shot: {opts.classifier} on frozen embeddings, shots {opts.shots}, "
             f"{opts.seeds} seeds, {opts.test_size:.0%} of each class held out."
             + (f" **Sample of {limit} notes per corpus: a pipeline check, not a result.**" if limit else ""),
             "Every number below is also stored, with its parameters and inputs, as a run in the store.", "",
             "| Encoder | Kind | Fingerprint | Provenance |", "|---|---|---|---|"]
    for e in encoder_ids:
        enc = get_encoder(store, e)
        card = ", ".join(f"{k}: {v}" for k, v in enc.provenance.items()
                         if k in ("objective", "base_encoder", "corpus", "steps")).replace("|", "\\|")
        lines.append(f"| {enc.id} | {enc.kind} | `{enc.fingerprint[:12]}` | {card or '-'} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", required=True, metavar="ID")
    parser.add_argument("--limit", type=int, help="evaluate a seeded sample of N notes per corpus")
    parser.add_argument("--shots", default="1,2,4,8,16,32")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--db", help="store file (default: $NOTESPACE_DB or ~/.notespace/notespace.duckdb)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    args = parser.parse_args(argv)
    store = Store(args.db) if args.db else Store()
    opts = EvaluateOptions(shots=args.shots, seeds=args.seeds)
    sections = []
    for demo, label, title in STUDY:
        name = load_corpus(store, demo, args.limit)
        started = time.perf_counter()
        result = evaluate_corpus(store, name, args.encoders, opts.replace(label=label), progress=StderrProgress())
        print(f"{name}: evaluated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        sections.append(render_report_md(result, title=title, level=2, details=False))
    text = "\n".join(provenance(store, args.encoders, opts, args.limit) + sections + READING)
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
