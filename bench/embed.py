"""Embedding benchmark: NoteSpace vs plain sentence-transformers, cache reopen, memory at scale.

    python bench/embed.py [--repeats 3] [--hpo 5000] [--big 200000] [--skip-memory] [--long 320] [--only-long]

Every ratio is against plain fp32 `SentenceTransformer.encode` measured in the same run, on the
same texts and batch size; docs/s are medians of the repeats (min-max shown). The quality gate
compares each variant's vectors with the fp32 baseline: per-document cosine >= 0.999 and kNN-10
overlap >= 0.98. Results print as a Markdown table and are saved to bench/out/embed.json.

The long-note case (`long_note_case`) reads synthetic notes of hundreds to thousands of tokens
(sample_data/long_notes.py) whole, in overlapping 256-token windows, against plain fp32
sentence-transformers truncating the same notes to 256 tokens: notes/s, so the ratio says whether
reading the whole note costs more than the baseline's reading of its first window.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.corpus import ingest_frame  # noqa: E402
from core.embed import Embedder, Settings, cpu_has_bf16, embed_corpus, load_embeddings  # noqa: E402
from core.encoders import get_encoder, packaged_path  # noqa: E402
from core.options import EmbedOptions  # noqa: E402
from core.store import Store  # noqa: E402
from sample_data.demo import drug_reviews, hpo  # noqa: E402

GATE_COSINE, GATE_KNN = 0.999, 0.98


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    def neighbours(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(set(r) & set(s)) / k for r, s in zip(na, nb)]))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


ONNX_LABEL = "sentence-transformers ONNX Runtime backend, fp32"


def onnx_backend(device: str):
    """sentence-transformers' own ONNX Runtime backend on the packaged MiniLM, exported locally (no hub): what
    a user would pick instead of NoteSpace's CPU rewrites. Returns (model, None), or (None, why it cannot run)."""
    if device != "cpu":
        return None, "measured on CPUs only"
    from sentence_transformers import SentenceTransformer

    folder = Path(tempfile.mkdtemp()) / "minilm"  # the export may write beside the model: not into site-packages
    shutil.copytree(packaged_path(), folder)
    try:
        return SentenceTransformer(str(folder), device="cpu", backend="onnx", local_files_only=True), None
    except Exception as exc:  # optimum/onnxruntime missing or incompatible: the row says why
        return None, f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def compare_variants(name: str, texts: list[str], batch_size: int, repeats: int, device: str) -> list[dict]:
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(packaged_path()), device=device)
    plain.encode(texts[:64], batch_size=batch_size)  # warm-up
    enc = get_encoder(Store(Path(tempfile.mkdtemp()) / "s.duckdb"), "minilm")
    variants = {"sentence-transformers fp32 (baseline)": lambda: plain.encode(texts, batch_size=batch_size)}
    # bf16 only where NoteSpace would use it: on CPUs without native bf16 it is emulated and never the default
    precisions = (["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]) if device == "cpu" else ["bf16"]
    for precision in precisions:
        # the baseline reads the first 256 tokens, so NoteSpace truncates too (whole notes: long_note_case)
        opts = EmbedOptions(precision=precision, device=device, long_notes="truncate")
        emb = Embedder(enc, Settings.resolve(enc, opts), batch_size)
        emb.encode(texts[:64])
        variants[f"NoteSpace {precision}, token buckets"] = lambda emb=emb: emb.encode(texts)
    onnx, onnx_unavailable = onnx_backend(device)
    if onnx is not None:
        onnx.encode(texts[:64], batch_size=batch_size)
        variants[ONNX_LABEL] = lambda: onnx.encode(texts, batch_size=batch_size)
    rows, baseline = [], None
    for label, fn in variants.items():
        vectors, times = timed(fn, repeats)
        rates = [len(texts) / t for t in times]
        if baseline is None:
            baseline = (vectors, statistics.median(rates))
        rows.append({"corpus": name, "variant": label, "docs_per_s": statistics.median(rates),
                     "min_docs_per_s": min(rates), "max_docs_per_s": max(rates),
                     "ratio": statistics.median(rates) / baseline[1],
                     "min_cosine": min_cosine(vectors, baseline[0]), "knn10_overlap": knn_overlap(vectors, baseline[0])})
        rows[-1]["gate"] = rows[-1]["min_cosine"] >= GATE_COSINE and rows[-1]["knn10_overlap"] >= GATE_KNN
        print(f"  {label}: {rows[-1]['docs_per_s']:.1f} docs/s ({rows[-1]['ratio']:.2f}x)", file=sys.stderr)
    if onnx_unavailable:
        rows.append({"corpus": name, "variant": ONNX_LABEL, "unavailable": onnx_unavailable})
        print(f"  {ONNX_LABEL}: unavailable ({onnx_unavailable})", file=sys.stderr)
    return rows


def long_note_case(n: int, batch_size: int, repeats: int, device: str) -> dict:
    from sentence_transformers import SentenceTransformer

    from core.space import EmbeddingSpace
    from sample_data.long_notes import long_notes

    texts = long_notes(n_per_system=max(1, n // 8))["text"].tolist()
    plain = SentenceTransformer(str(packaged_path()), device=device)
    plain.max_seq_length = 256
    plain.encode(texts[:16], batch_size=batch_size)  # warm-up
    enc = get_encoder(Store(Path(tempfile.mkdtemp()) / "s.duckdb"), "minilm")
    precision = Settings.resolve(enc, EmbedOptions(device=device)).precision
    emb = Embedder(enc, Settings.of(EmbeddingSpace("minilm", 256, "chunk", precision), device), batch_size)
    emb.encode(texts[:16])
    windows = len(emb.tokenize(texts)[0])
    _, base_times = timed(lambda: plain.encode(texts, batch_size=batch_size), repeats)
    _, whole_times = timed(lambda: emb.encode(texts), repeats)
    base, whole = len(texts) / statistics.median(base_times), len(texts) / statistics.median(whole_times)
    print(f"  long notes: baseline {base:.1f} notes/s, NoteSpace whole notes {whole:.1f} ({whole / base:.2f}x)",
          file=sys.stderr)
    return {"notes": len(texts), "windows": windows, "precision": precision,
            "baseline_notes_per_s": base, "whole_notes_per_s": whole, "ratio": whole / base,
            "baseline_range": [len(texts) / max(base_times), len(texts) / min(base_times)],
            "whole_range": [len(texts) / max(whole_times), len(texts) / min(whole_times)]}


def print_long_note_case(r: dict) -> None:
    print(f"\nLong notes ({r['notes']} synthetic notes, {r['windows']:,} windows of 256 tokens): plain fp32 "
          f"sentence-transformers truncating to 256 tokens {r['baseline_notes_per_s']:.1f} notes/s "
          f"({r['baseline_range'][0]:.1f}-{r['baseline_range'][1]:.1f}); NoteSpace {r['precision']} whole notes "
          f"{r['whole_notes_per_s']:.1f} notes/s ({r['whole_range'][0]:.1f}-{r['whole_range'][1]:.1f}): "
          f"{r['ratio']:.2f}x per note.")


def cache_reopen(texts: list[str]) -> dict:
    import pandas as pd

    store = Store(Path(tempfile.mkdtemp()) / "s.duckdb")
    ingest_frame(store, pd.DataFrame({"text": texts}), "bench", "text")
    computed = embed_corpus(store, "bench")
    reopened = Store(store.path)
    start = time.perf_counter()
    again = embed_corpus(reopened, "bench")
    load_embeddings(reopened, "bench", compute_missing=False)
    cached_s = time.perf_counter() - start
    assert again["computed"] == 0
    return {"compute_s": computed["seconds"], "cached_embed_s": again["seconds"],
            "reopen_and_load_s": cached_s, "ratio": computed["seconds"] / max(cached_s, 1e-9)}


MEMORY_CHILD = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, {root!r})
from core.corpus import ingest_frame
from core.embed import embed_corpus
from core.options import EmbedOptions
from core.store import Store
from sample_data.synthetic import synthetic_notes
def peak_mb():  # VmHWM starts afresh at exec; ru_maxrss would carry the forking parent's peak over
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
n = {n}
store = Store(Path(tempfile.mkdtemp()) / "s.duckdb")
ingest_frame(store, synthetic_notes(n, seed=3, min_words=6, max_words=24), "big", "text", "note_id")
before = peak_mb()
result = embed_corpus(store, "big", EmbedOptions(max_length=64))
print(json.dumps({{"n": n, "peak_rss_mb": peak_mb(), "peak_rss_before_embed_mb": before,
                  "seconds": result["seconds"], "computed": result["computed"]}}))
"""


def memory(n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD.format(root=str(ROOT), n=n)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hpo", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--big", type=int, default=200_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--long", type=int, default=320, help="synthetic long notes for the long-note case")
    parser.add_argument("--only-long", action="store_true", help="run the long-note case alone")
    args = parser.parse_args()
    if args.only_long:
        result = {"machine": machine(), "long_notes": long_note_case(args.long, args.batch_size, args.repeats,
                                                                     args.device)}
        print(f"Machine: {result['machine']}")
        print_long_note_case(result["long_notes"])
        (ROOT / "bench" / "out").mkdir(exist_ok=True)
        (ROOT / "bench" / "out" / "embed_long.json").write_text(json.dumps(result, indent=2))
        return

    reviews = drug_reviews()["review"].tolist()
    definitions = hpo().sample(n=args.hpo, random_state=0)["definition"].tolist()
    report = {"machine": machine(), "rows": []}
    for name, texts in (("drug reviews (979)", reviews), (f"HPO definitions ({len(definitions):,})", definitions)):
        print(f"{name}:", file=sys.stderr)
        report["rows"] += compare_variants(name, texts, args.batch_size, args.repeats, args.device)
    report["long_notes"] = long_note_case(args.long, args.batch_size, args.repeats, args.device)
    report["cache"] = cache_reopen(reviews)
    if not args.skip_memory:
        report["memory"] = [memory(1000), memory(args.big)]

    print(f"\nMachine: {report['machine']}\n")
    print("| corpus | variant | docs/s (median, min-max) | vs plain fp32 | min cosine | kNN-10 overlap | gate |")
    print("|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        if "unavailable" in r:
            print(f"| {r['corpus']} | {r['variant']} | unavailable: {r['unavailable']} | | | | |")
            continue
        print(f"| {r['corpus']} | {r['variant']} | {r['docs_per_s']:.1f} ({r['min_docs_per_s']:.1f}-"
              f"{r['max_docs_per_s']:.1f}) | {r['ratio']:.2f}x | {r['min_cosine']:.5f} | {r['knn10_overlap']:.3f} | "
              f"{'pass' if r['gate'] else 'FAIL'} |")
    print_long_note_case(report["long_notes"])
    c = report["cache"]
    print(f"\nCache: computing the drug reviews took {c['compute_s']:.2f} s; reopening the store and loading "
          f"them cached took {c['reopen_and_load_s']:.3f} s ({c['ratio']:.0f}x faster).")
    if "memory" in report:
        small, big = report["memory"]
        print(f"Memory: peak RSS {small['peak_rss_mb']:.0f} MB embedding {small['n']:,} notes, "
              f"{big['peak_rss_mb']:.0f} MB embedding {big['n']:,} notes "
              f"({big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x; {big['n'] / big['seconds']:.0f} docs/s).")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "embed.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
