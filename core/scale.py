"""Embedding on a Ray cluster (`notespace embed --engine ray`), with the store as the one writer.

The driver (this process) finds the texts still missing vectors in the chosen embedding set and
writes them as Parquet shards (text hash, text) into a private folder beside the store (0700).
Ray Data reads them (`read_parquet`) and runs `map_batches` on actors that load the same Embedder
once (precision, length batching, long-note mode, device: one GPU per actor where the cluster has
GPUs, CPU actors otherwise). Each actor writes its results as a Parquet shard (text hash, vector)
under a name derived from the hashes it holds, renamed into place when complete, so a retried batch
rewrites the same shard. The driver imports the shards as they come, each in one transaction
through the store's own vector writer, then notes the shard as imported and deletes it.

Resuming: a rerun first imports the result shards a killed driver left behind (skipping those its
list says were imported already), then computes only what the store still misses; a killed worker
is restarted by Ray and its batch retried. The folder is removed once every vector is in the store.
Vectors and cache keys are those of the local path (core/embed.py): the same embedding space
(core/space.py: the corpus's remembered space, else the defaults, whole notes when many are long),
the same Embedder; the space is remembered for the corpus as a local run would.

Nothing reaches out: Ray's usage statistics and dashboard are off; a local Ray listens on loopback only
and spills objects into the private folder. Ray is the optional extra `scale`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.access import is_loopback
from core.embed import Settings, load_embedder, resolve_space
from core.encoders import Encoder, get_encoder
from core.errors import UserError
from core.options import EmbedOptions
from core.space import EmbeddingSpace, remember, remembered, write_vectors
from core.store import Corpus, Store

ROOT = Path(__file__).resolve().parent.parent
SHARD_ROWS = 1024  # texts per shard: one actor batch, one import transaction
IMPORTED = "imported.txt"  # result shards already in the store, one name a line
LONGER = b"longer"  # a result shard's metadata: how many of its texts were longer than the window


def ray_installed() -> bool:
    """Whether the extra 'scale' is installed (found without importing Ray)."""
    return importlib.util.find_spec("ray") is not None


def import_ray():
    """Ray, or one line saying how to get it."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before the import: Ray reads it then
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserError("--engine ray needs the optional extra 'scale': pip install 'notespace[scale]' "
                           "(Ray Data 2.60)") from None
    return ray


def work_dir(store: Store, corpus: Corpus, set_id: int) -> Path:
    """The private folder of one corpus x embedding set, beside the store (shards in and out)."""
    return store.path.parent / f".{store.path.stem}-scale-c{corpus.id}-s{set_id}"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class EmbedShards:
    """A Ray Data actor: loads the Embedder once, embeds each batch, writes it as a result shard."""

    def __init__(self, enc: Encoder, settings: Settings, batch_size: int, out_dir: str, threads: int) -> None:
        if settings.device == "cpu":
            import torch

            torch.set_num_threads(threads)
        self.embedder = load_embedder(enc, settings, batch_size)
        self.out_dir = Path(out_dir)

    def __call__(self, batch: pa.Table) -> pa.Table:
        hashes = batch.column("text_hash").to_pylist()
        windows, owner, longer = self.embedder.tokenize(batch.column("text").to_pylist())
        vectors = self.embedder.pool_windows(self.embedder.encode_windows(windows), owner, len(hashes))
        name = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:32] + ".parquet"
        table = pa.table({"text_hash": hashes, "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.ravel(), pa.float32()), vectors.shape[1])}).replace_schema_metadata({LONGER: str(longer)})
        tmp = self.out_dir / f".tmp-{os.getpid()}-{name}"
        pq.write_table(table, tmp)
        os.replace(tmp, self.out_dir / name)  # complete or absent, never half-written
        return pa.table({"shard": [name], "rows": [len(hashes)]})


@contextlib.contextmanager
def _node_on_loopback():
    """Ray gives a local node this machine's reachable address, and binds its servers (GCS, raylet,
    workers, agents) to it, unless its cluster mode is off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read
    when Ray is imported): off while a local Ray starts, so that nothing of it listens beyond loopback."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


@contextlib.contextmanager
def _ray_session(ray, address: str | None, workers: int, spill_dir: Path):
    """Connect to a cluster at `address`, or start a local Ray for this machine."""
    if ray.is_initialized():  # a caller's session (tests, notebooks): use it as it is
        yield
        return
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True, "logging_level": "WARNING"}
    if address:
        ray.init(address=address, **quiet)
    else:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        spill = {"type": "filesystem", "params": {"directory_path": str(spill_dir)}}
        # One CPU slot beyond the cores, for the Parquet reads: actors holding every slot would starve them
        with _node_on_loopback():
            ray.init(num_cpus=max(workers, os.cpu_count() or 1) + 1,
                     _system_config={"object_spilling_config": json.dumps(spill)}, **quiet)
        if not all(is_loopback(node["NodeManagerAddress"]) for node in ray.nodes()):
            ray.shutdown()  # never serve this machine's notes to the network
            raise RuntimeError("the local Ray did not start on loopback; start Ray yourself and pass --ray-address")
    try:
        yield
    finally:
        ray.shutdown()


def _cluster_has_gpus(ray) -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def ray_space(store: Store, corpus: Corpus, enc: Encoder, opts: EmbedOptions, gpus: bool) -> tuple[EmbeddingSpace, Settings]:
    """The space the local path would choose (core.embed.resolve_space), with its precision and device
    judged by the actors' hardware, not the driver's (which may have no GPU): bf16 on GPU actors when
    the precision is left on auto and the corpus has no space with this encoder yet."""
    space = resolve_space(store, corpus, enc, opts.replace(device="cpu"))
    if not (gpus and opts.device in ("auto", "cuda")):
        return space, Settings.of(space, "cpu")
    if opts.precision == "auto" and remembered(store, corpus, enc.id) is None:
        space = dataclasses.replace(space, precision="bf16")
    return space, Settings(device="cuda", precision=space.precision, max_length=space.max_length,
                           long_notes=space.long_notes)


def _import_shards(store: Store, set_id: int, dim: int, out_dir: Path, names: list[str]) -> tuple[int, int]:
    """Import finished result shards into the store (one transaction each); returns (rows imported,
    how many of them were longer than the window)."""
    ledger = out_dir.parent / IMPORTED
    done = set(ledger.read_text().split()) if ledger.exists() else set()
    rows = longer = 0
    for name in names:
        shard = out_dir / name
        if name not in done:
            table = pq.read_table(shard)
            vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
            write_vectors(store, set_id, dim, table.column("text_hash").to_pylist(), vectors)
            # Should the driver die between the commit and this line, a rerun's insert skips the rows
            # already there (ON CONFLICT DO NOTHING): nothing lands twice either way.
            with open(ledger, "a") as fh:
                fh.write(name + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            rows += table.num_rows
            longer += int((table.schema.metadata or {}).get(LONGER, 0))
        shard.unlink(missing_ok=True)
    return rows, longer


def _finished_shards(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.glob("*.parquet")) if out_dir.is_dir() else []


def _write_inputs(store: Store, corpus: Corpus, ords: list[int], in_dir: Path, shard_rows: int) -> int:
    """The texts at `ords` as Parquet shards (text hash, text); returns how many shards."""
    shutil.rmtree(in_dir, ignore_errors=True)
    _private_dir(in_dir)
    chunks = [ords[i:i + shard_rows] for i in range(0, len(ords), shard_rows)]
    for k, chunk in enumerate(chunks):
        frame = store.texts(corpus, chunk)
        pq.write_table(pa.table({"text_hash": frame["text_hash"].tolist(), "text": frame["text"].tolist()}),
                       in_dir / f"part-{k:06d}.parquet")
    return len(chunks)


def embed_on_ray(store: Store, corpus_name: str, opts: EmbedOptions = EmbedOptions(), address: str | None = None,
                 workers: int | None = None, progress=None, shard_rows: int = SHARD_ROWS) -> dict:
    """Embed what the store misses on Ray, in the space `embed` would use; returns `embed`'s JSON plus
    engine and workers."""
    ray = import_ray()
    corpus = store.corpus(corpus_name)
    enc = get_encoder(store, opts.encoder)
    workers = workers or (1 if address else max(1, (os.cpu_count() or 1) // 2))
    started = time.perf_counter()
    probe_dir = work_dir(store, corpus, 0)  # spill folder until the set id is known
    with store.released(), _ray_session(ray, address, workers, _private_dir(probe_dir) / "spill"):
        space, settings = ray_space(store, corpus, enc, opts, _cluster_has_gpus(ray))
        set_id = space.create_set(store)
        folder = _private_dir(work_dir(store, corpus, set_id))
        in_dir, out_dir = folder / "in", _private_dir(folder / "out")
        # a killed run's results first
        computed, longer = _import_shards(store, set_id, enc.dim, out_dir, _finished_shards(out_dir))
        todo = space.missing_ords(store, corpus)
        cached = corpus.n_docs - space.missing(store, corpus)
        total = computed + len(todo)
        if todo:
            shards = _write_inputs(store, corpus, todo, in_dir, shard_rows)
            threads = max(1, (int(ray.cluster_resources().get("CPU", 1)) - 1) // workers)  # one left for reads
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars, ctx.print_on_execution_start = False, False  # our progress only
            # One block per shard, so that every actor gets work (Ray would merge small files into one block)
            results = ray.data.read_parquet(str(in_dir)).repartition(shards).map_batches(
                EmbedShards, batch_size=shard_rows, batch_format="pyarrow", concurrency=workers,
                num_gpus=1 if settings.device == "cuda" else 0, num_cpus=0 if settings.device == "cuda" else threads,
                fn_constructor_args=(enc, settings, opts.batch_size, str(out_dir), threads))
            rows = iter(results.iter_rows())
            try:
                for row in rows:  # streamed: shards are imported while others compute
                    rows_in, longer_in = _import_shards(store, set_id, enc.dim, out_dir, [row["shard"]])
                    computed, longer = computed + rows_in, longer + longer_in
                    if progress:
                        progress(computed / total, f"{computed:,} of {total:,} new texts embedded on {workers} Ray workers")
            finally:
                getattr(rows, "close", lambda: None)()  # stops the dataset's actors on an error or Ctrl-C
    shutil.rmtree(probe_dir, ignore_errors=True)
    shutil.rmtree(work_dir(store, corpus, set_id), ignore_errors=True)  # every vector is in the store
    seconds = time.perf_counter() - started
    remember(store, corpus, space)
    result = {"corpus": corpus.name, "encoder": enc.id, "n": corpus.n_docs, "computed": computed, "cached": cached,
              "seconds": round(seconds, 4), "truncated": longer if space.long_notes == "truncate" else 0,
              "long_notes": space.long_notes, "longer": longer, "embedding": space.public(),
              "engine": "ray", "workers": workers}
    if computed:
        with store.transaction() as con:
            store.record_run(con, "embed", corpus_id=corpus.id, encoder_id=enc.id,
                             params=opts.as_params() | space.cache_params(enc) | {"encoder": enc.id, "engine": "ray",
                                                                                  "workers": workers},
                             inputs={"data_hash": corpus.data_hash, "set_id": set_id}, result=result, seconds=seconds)
    return result
