"""Embedding on a local Ray (1 and 2 workers) against the in-process path, on the same notes.

Each round embeds the same corpus from an empty cache with each engine, in turn, `--repeats` times
(the same run: the engines see the same machine load); one JSON line with the medians, the Ray
overhead per 10k notes ((ray seconds - local seconds) / notes x 10,000; it includes starting Ray
and the actors loading the encoder) and the machine. The default model is the packaged MiniLM;
`--tiny` uses a 2-layer random BERT, where almost all of the time is Ray's own.

    .venv/bin/python bench/scale.py --notes 2000 --repeats 3 [--tiny] [--shard-rows 512]

On a GPU machine the same script gives docs/s per GPU with `--workers-list 1,2,...` (one GPU per
actor, from the cluster's resources).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers-list", default="1,2")
    parser.add_argument("--shard-rows", type=int, default=512)
    parser.add_argument("--tiny", action="store_true", help="a tiny random BERT instead of MiniLM")
    args = parser.parse_args()

    from core.corpus import ingest_frame
    from core.embed import embed_corpus
    from core.options import EmbedOptions
    from core.scale import embed_on_ray
    from core.store import Store
    from sample_data.synthetic import synthetic_notes

    work = Path(tempfile.mkdtemp(prefix="notespace-bench-scale-"))
    os.environ["NOTESPACE_MODELS"] = str(work / "models")
    encoder = "minilm"
    if args.tiny:
        from tests.conftest import registered_tiny_encoder

        encoder = registered_tiny_encoder(work / "models")
    frame = synthetic_notes(args.notes, seed=0, min_words=40, max_words=160)
    opts = EmbedOptions(encoder=encoder)
    workers = [int(w) for w in args.workers_list.split(",")]
    times: dict[str, list[float]] = {"local": [], **{f"ray-{w}": [] for w in workers}}
    for r in range(args.repeats):
        for engine in times:
            store = Store(work / f"{engine}-{r}.duckdb")
            ingest_frame(store, frame, "bench", "text", "note_id", [])
            t0 = time.perf_counter()
            if engine == "local":
                embed_corpus(store, "bench", opts)
            else:
                embed_on_ray(store, "bench", opts, workers=int(engine.split("-")[1]), shard_rows=args.shard_rows)
            times[engine].append(time.perf_counter() - t0)
            print(f"round {r + 1}: {engine} {times[engine][-1]:.1f} s", file=sys.stderr, flush=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "notes": args.notes, "encoder": encoder, "repeats": args.repeats, "shard_rows": args.shard_rows,
        "median_s": {k: round(v, 2) for k, v in median.items()},
        "docs_per_s": {k: round(args.notes / v, 1) for k, v in median.items()},
        "ray_overhead_s_per_10k_notes": {k: round((v - median["local"]) / args.notes * 10_000, 1)
                                         for k, v in median.items() if k != "local"},
        "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "gpu": gpu_name(),
                    "load_avg_at_end": os.getloadavg()[0], "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))


if __name__ == "__main__":
    main()
