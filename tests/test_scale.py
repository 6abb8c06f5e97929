"""`notespace embed --engine ray` (core/scale.py) on a real local Ray (2 CPU workers, the tiny encoder).

One Ray session serves the module (starting Ray costs seconds); shards hold 16 texts so a run of the
120 synthetic notes has 8 of them, enough to kill a worker or the driver between two.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the optional extra 'scale' (make test installs it)")

from core import cli  # noqa: E402
from core.corpus import ingest_frame  # noqa: E402
from core.embed import embed_corpus, load_embeddings  # noqa: E402
from core.options import EmbedOptions  # noqa: E402
from core.scale import ROOT, embed_on_ray, import_ray, work_dir  # noqa: E402
from core.space import remembered  # noqa: E402
from core.store import Store  # noqa: E402

pytestmark = pytest.mark.robustness  # make test-robustness (docs/testing.md)

OPTS = EmbedOptions(encoder="tiny")
ROWS = 16


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import_ray()  # usage statistics off before Ray starts
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), before]))  # the workers import core/
    ray.init(num_cpus=3, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="WARNING")
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = before


@pytest.fixture()
def store(db_path, models_dir, synthetic_df):
    s = Store(db_path)
    ingest_frame(s, synthetic_df, "clinic", "text", "note_id", ["specialty", "site"])
    return s


def local_vectors(tmp_path: Path, synthetic_df) -> tuple[np.ndarray, list[str], dict]:
    """The same corpus embedded in process, in a store of its own: (vectors, cache keys, embed's JSON)."""
    other = Store(tmp_path / "local.duckdb")
    ingest_frame(other, synthetic_df, "clinic", "text", "note_id", ["specialty", "site"])
    result = embed_corpus(other, "clinic", OPTS)
    return load_embeddings(other, "clinic", OPTS, compute_missing=False), cache_keys(other), result


def cache_keys(s: Store) -> list[str]:
    with s.connect() as con:
        return [r[0] for r in con.execute("SELECT cache_key FROM embedding_sets ORDER BY id").fetchall()]


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def stored(s: Store) -> int:
    with s.connect() as con:
        return con.execute("SELECT count(*) FROM vectors_d32").fetchone()[0]


def test_ray_gives_the_local_vectors_under_the_same_cache_key(store, tmp_path, synthetic_df):
    reports = []
    result = embed_on_ray(store, "clinic", OPTS, workers=2, shard_rows=ROWS, progress=lambda f, m: reports.append(f))
    distinct = synthetic_df["text"].nunique()
    assert result | {"seconds": 0} == {"corpus": "clinic", "encoder": "tiny", "n": 120, "computed": distinct,
                                       "cached": 0, "seconds": 0, "truncated": result["truncated"],
                                       "long_notes": result["long_notes"], "longer": result["longer"],
                                       "embedding": result["embedding"], "engine": "ray", "workers": 2}
    assert reports[-1] == 1.0 and len(reports) == -(-distinct // ROWS)  # one import per shard
    vectors, keys, local = local_vectors(tmp_path, synthetic_df)
    assert cache_keys(store) == keys
    same_space = ("truncated", "long_notes", "longer", "embedding")  # the space the local path chose, remembered
    assert {k: result[k] for k in same_space} == {k: local[k] for k in same_space}
    assert remembered(store, store.corpus("clinic"), "tiny").public() == result["embedding"]
    assert min_cosine(load_embeddings(store, "clinic", OPTS, compute_missing=False), vectors) >= 0.9999
    assert not work_dir(store, store.corpus("clinic"), 1).exists()  # the private folder is gone
    again = embed_on_ray(store, "clinic", OPTS, workers=2, shard_rows=ROWS)
    assert (again["computed"], again["cached"]) == (0, 120)


def embedding_workers() -> list[int]:
    """Pids of this machine's Ray Data actors running EmbedShards (their process title says so)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"MapBatches(EmbedShards)" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def test_a_killed_worker_costs_only_a_rerun_of_what_is_missing(store, tmp_path, synthetic_df):
    killed = []

    def kill_a_worker_after_the_first_shard(fraction: float, message: str) -> None:
        if not killed and fraction < 1.0:
            killed.extend(embedding_workers()[:1])
            os.kill(killed[0], signal.SIGKILL)

    try:
        first = embed_on_ray(store, "clinic", OPTS, workers=2, shard_rows=ROWS,
                             progress=kill_a_worker_after_the_first_shard)["computed"]
    except Exception:  # noqa: BLE001 - Ray gave up on the batch: the rerun must finish the job
        first = stored(store)
    assert killed and ROWS <= first <= 120
    rerun = embed_on_ray(store, "clinic", OPTS, workers=2, shard_rows=ROWS)
    assert first + rerun["computed"] == stored(store) == synthetic_df["text"].nunique()
    vectors, _, _ = local_vectors(tmp_path, synthetic_df)
    assert min_cosine(load_embeddings(store, "clinic", OPTS, compute_missing=False), vectors) >= 0.9999


def test_a_killed_driver_leaves_shards_the_rerun_imports_once(store, tmp_path, synthetic_df):
    def driver_dies(fraction: float, message: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_on_ray(store, "clinic", OPTS, workers=2, shard_rows=ROWS, progress=driver_dies)
    folder = work_dir(store, store.corpus("clinic"), 1)
    assert folder.stat().st_mode & 0o777 == 0o700
    imported = (folder / "imported.txt").read_text().split()
    assert len(imported) == 1 and stored(store) == ROWS
    # As if the driver had died after noting the import but before deleting the shard: were the rerun
    # to import it again, reading it would fail
    (folder / "out" / imported[0]).write_bytes(b"not parquet")
    rerun = embed_on_ray(store, "clinic", OPTS, workers=2, shard_rows=ROWS)
    assert ROWS + rerun["computed"] == stored(store) == synthetic_df["text"].nunique()
    assert not folder.exists()


def test_without_ray_the_engine_flag_names_the_extra(store, db_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if the extra were not installed
    code = cli.main(["--db", str(db_path), "embed", "--corpus", "clinic", "--encoder", "tiny", "--engine", "ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "optional extra 'scale'" in err[0] and "notespace[scale]" in err[0]
    assert cache_keys(store) == []  # nothing was set up in the store


def test_ray_reads_whole_notes_in_the_space_asked_for(store, tmp_path, synthetic_df):
    whole = OPTS.replace(max_length=16, long_notes="chunk", precision="fp32")  # 16 tokens: nearly every note is long
    result = embed_on_ray(store, "clinic", whole, workers=2, shard_rows=ROWS)
    assert result["embedding"] == {"encoder": "tiny", "max_length": 16, "long_notes": "chunk", "precision": "fp32"}
    assert result["truncated"] == 0 and result["longer"] > 0
    other = Store(tmp_path / "local.duckdb")
    ingest_frame(other, synthetic_df, "clinic", "text", "note_id", ["specialty", "site"])
    local = embed_corpus(other, "clinic", whole)
    assert (result["longer"], cache_keys(store)) == (local["longer"], cache_keys(other))
    assert min_cosine(load_embeddings(store, "clinic", whole, compute_missing=False),
                      load_embeddings(other, "clinic", whole, compute_missing=False)) >= 0.9999
