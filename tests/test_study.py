"""bench/study.py at tiny size: adaptation sees only the adaptation part, evaluation only the held-out part."""

from __future__ import annotations

import json
import shutil

from bench import study
from core.encoders import get_encoder
from core.store import Store

LIMIT = 100


def _args(tmp_path) -> list[str]:
    return ["--base", "tiny", "--limit", str(LIMIT), "--steps", "1", "--seeds", "1", "--shots", "1,2",
            "--db", str(tmp_path / "study.duckdb"), "--out", str(tmp_path / "results.md"),
            "--runs", str(tmp_path / "runs.json")]


def test_study_adapts_on_one_part_evaluates_the_other_and_reruns_from_the_store(tmp_path, models_dir):
    assert study.main(_args(tmp_path)) == 0
    store, runs = Store(tmp_path / "study.duckdb"), json.loads((tmp_path / "runs.json").read_text())
    for s in study.STUDIES:
        name = study.prefix(s, LIMIT)
        adapt, heldout = store.corpus(f"{name}-adapt"), store.corpus(f"{name}-heldout")
        assert adapt.n_docs + heldout.n_docs == LIMIT and "held-out part, split by" in heldout.source
        ids = [set(store.documents(c, with_text=False)["doc_id"]) for c in (adapt, heldout)]
        assert not ids[0] & ids[1]
        for objective in study.OBJECTIVES:
            card = get_encoder(store, f"{name}-{objective}").provenance
            assert card["corpus"] == adapt.name and card["data_hash"] == adapt.data_hash
            assert runs[f"{name}-{objective}"]["wall_s"] > 0
    text = (tmp_path / "results.md").read_text()
    assert "## Adaptation runs" in text and "## Agreement with the paper" in text
    assert sum(line.startswith("| Every adapted encoder better than base") for line in text.splitlines()) == 6
    placeholder = next(line for line in text.splitlines() if line.startswith("_The lead's reading"))
    (tmp_path / "results.md").write_text(text.replace(placeholder, "The lead's note."))

    assert study.main(_args(tmp_path)) == 0  # everything reused: same encoders, cached evaluation
    again = (tmp_path / "results.md").read_text()
    assert "The lead's note." in again and placeholder not in again
    assert json.loads((tmp_path / "runs.json").read_text()) == runs


def test_an_encoder_of_the_same_name_made_from_other_notes_is_refused(tmp_path, models_dir, capsys):
    # e.g. hpo-metadata adapted on the whole corpus: it has seen the held-out notes' labels
    leaked = models_dir / f"{study.prefix(study.STUDIES[0], LIMIT)}-mlm"
    shutil.copytree(models_dir / "tiny", leaked)
    (leaked / "notespace_card.json").write_text(json.dumps({"corpus": "hpo", "params": {}}))
    assert study.main(_args(tmp_path)) == 1
    assert "was not made by this study" in capsys.readouterr().err
    assert not (tmp_path / "results.md").exists()
