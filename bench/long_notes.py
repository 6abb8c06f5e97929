"""Whole notes or their first window: separability and few-shot on synthetic long notes.

    python bench/long_notes.py [--per-system 40] [--systems 8] [--seeds 5]

Builds sample_data.long_notes (synthetic notes of 300-1,500 tokens from HPO definitions, labelled by
organ system), cuts every note into the overlapping 256-token windows NoteSpace uses, embeds each
window once with the packaged MiniLM, and compares ways of making one vector per note from them:
the first window only (what truncation embeds), the plain mean of the windows (NoteSpace's
pooling, chosen by this measurement), and the mean weighted by each window's tokens. Separability (core/separability.py) and
few-shot macro-F1 (core/fewshot.py) per layout, with 95 % intervals. Prints a Markdown table and
saves bench/out/long_notes.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.embed import machine  # noqa: E402
from core.embed import Embedder, Settings, pool, split_windows  # noqa: E402
from core.encoders import get_encoder  # noqa: E402
from core.fewshot import learning_curve  # noqa: E402
from core.options import DEFAULT_MAX_LENGTH  # noqa: E402
from core.geometry import unit_rows  # noqa: E402
from core.separability import separability  # noqa: E402
from core.space import EmbeddingSpace  # noqa: E402
from core.store import Store  # noqa: E402
from sample_data.long_notes import long_notes  # noqa: E402

SHOTS = (2, 8)


def schemes(vectors: np.ndarray, owner: np.ndarray, lengths: np.ndarray, n: int) -> dict[str, np.ndarray]:
    first = np.searchsorted(owner, np.arange(n))
    return {"first window (truncate)": vectors[first],
            "mean of windows (NoteSpace)": unit_rows(pool(vectors, owner, np.ones_like(lengths), n)),
            "token-weighted mean": unit_rows(pool(vectors, owner, lengths, n))}


def scores(X: np.ndarray, y: np.ndarray, seeds: int) -> dict:
    sep = separability(X, y, knn_k=10, n_boot=1000)
    curve = learning_curve(X, y, shots=SHOTS, seeds=seeds).summary()
    return {"knn_accuracy": sep.knn_accuracy, "knn_accuracy_ci": sep.knn_accuracy_ci,
            "silhouette": sep.silhouette, "silhouette_ci": sep.silhouette_ci,
            "linear_probe_accuracy": sep.linear_probe_accuracy, "linear_probe_ci": sep.linear_probe_ci,
            "fewshot": {k: {"macro_f1": v["macro_f1"], "macro_f1_ci": v["macro_f1_ci"]} for k, v in curve.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-system", type=int, default=40)
    parser.add_argument("--systems", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    notes = long_notes(args.per_system, args.systems)
    with tempfile.TemporaryDirectory() as tmp:
        enc = get_encoder(Store(Path(tmp) / "bench.duckdb"), "minilm")
    settings = Settings.of(EmbeddingSpace("minilm", DEFAULT_MAX_LENGTH, "chunk", "fp32"), "cpu")
    emb = Embedder(enc, settings, 64)
    windows, owner = split_windows(emb.tokenizer, notes["text"].tolist(), DEFAULT_MAX_LENGTH)
    tokens = np.bincount(owner, weights=[len(w) for w in windows])
    started = time.perf_counter()
    vectors = emb.encode_windows(windows)
    seconds = time.perf_counter() - started
    lengths = np.array([len(w) for w in windows], dtype=np.float64)
    made = schemes(vectors, owner, lengths, len(notes))
    out = {"machine": machine(), "notes": len(notes), "windows": len(windows),
           "tokens_median": float(np.median(tokens)), "tokens_range": [float(tokens.min()), float(tokens.max())],
           "longer_than_window": int(np.count_nonzero(np.bincount(owner) > 1)), "embed_seconds": round(seconds, 1),
           "results": {}}
    for layout in ["all", *sorted(notes["layout"].unique())]:
        rows = np.ones(len(notes), bool) if layout == "all" else (notes["layout"] == layout).to_numpy()
        y = notes["organ_system"].to_numpy()[rows]
        out["results"][layout] = {name: scores(X[rows], y, args.seeds) for name, X in made.items()}
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / "long_notes.json").write_text(json.dumps(out, indent=1))
    ci = lambda v, c: f"{v:.3f} [{c[0]:.3f}, {c[1]:.3f}]"  # noqa: E731
    print(f"{out['notes']} notes, {out['windows']} windows, median {out['tokens_median']:.0f} tokens "
          f"({out['tokens_range'][0]:.0f}-{out['tokens_range'][1]:.0f}); {out['machine']}\n")
    print("| notes | vector per note | kNN-10 accuracy | silhouette | linear probe | "
          + " | ".join(f"few-shot macro-F1, {k}/class" for k in SHOTS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(SHOTS))
    for layout, by_scheme in out["results"].items():
        for name, r in by_scheme.items():
            fs = " | ".join(ci(r["fewshot"][str(k)]["macro_f1"], r["fewshot"][str(k)]["macro_f1_ci"]) for k in SHOTS)
            print(f"| {layout} | {name} | {ci(r['knn_accuracy'], r['knn_accuracy_ci'])} | "
                  f"{ci(r['silhouette'], r['silhouette_ci'])} | "
                  f"{ci(r['linear_probe_accuracy'], r['linear_probe_ci'])} | {fs} |")


if __name__ == "__main__":
    main()
