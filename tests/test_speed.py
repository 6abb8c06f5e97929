"""core.speed: pretraining speed timed once per machine, model and settings, kept in the store."""

from __future__ import annotations

import pytest

from core import speed
from core.corpus import ingest_frame
from core.options import PretrainOptions
from core.store import Store
from core.training import loop


@pytest.fixture()
def store(db_path, models_dir, synthetic_df):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the cores are shared
    s = Store(db_path)
    ingest_frame(s, synthetic_df, "clinic", "text", "note_id", ["specialty", "site"])
    yield s
    torch.set_num_threads(before)


def tiny(**kw) -> PretrainOptions:
    return PretrainOptions(**{"objective": "mlm", "name": "new", "base": "tiny", "steps": 100, "batch_size": 8,
                              "max_length": 64, **kw})


@pytest.fixture()
def timings(monkeypatch) -> list:
    """Every call of the real step timer, recorded."""
    calls, real = [], loop.measure_speed
    monkeypatch.setattr(loop, "measure_speed", lambda *a, **kw: calls.append(a[3]) or real(*a, **kw))
    return calls


def test_timed_once_kept_in_the_store_and_found_by_a_new_process(store, db_path, timings):
    assert speed.stored(store, tiny()) is None
    estimate = speed.measure(store, "clinic", tiny())
    assert estimate["device"] == "cpu" and estimate["corpus"] == "clinic" and not estimate["stale"]
    assert estimate["seconds"] == pytest.approx(estimate["setup_s"] + 100 * estimate["step_s"])
    again = speed.stored(Store(db_path), tiny(steps=1000))  # a fresh Store, as another process would open
    assert again["step_s"] == estimate["step_s"] and again["seconds"] > estimate["seconds"]
    assert len(timings) == 1


def test_other_settings_have_no_figure_until_timed(store, timings):
    speed.measure(store, "clinic", tiny())
    assert speed.stored(store, tiny(batch_size=4)) is None
    assert speed.stored(store, tiny(objective="declutr")) is None
    assert speed.stored(store, tiny(steps=5, name="other", lr=1e-3)) is not None  # not part of a step's time
    job = speed.measure_in_background(store, "clinic", tiny(batch_size=4))
    job.thread.join(120)
    assert job.error is None and speed.stored(store, tiny(batch_size=4)) is not None
    assert [o.batch_size for o in timings] == [8, 4]


def test_unusable_settings_are_refused_before_timing(store, timings):
    with pytest.raises(ValueError, match="max length"):
        speed.stored(store, tiny(max_length=4))
    assert timings == []
