"""bench/study.py --smoke: the whole study at tiny size (tiny random BERT, 60 notes a corpus, 2 steps), so
the script cannot rot; plus the pieces a verdict rests on (pooling seeds, paired verdicts)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bench import study
from core.encoders import get_encoder
from core.store import Store

PARTS = "drug-reviews:main,drug-reviews:fixes,drug-reviews:setfit"


def _args(tmp_path, parts: str = PARTS) -> list[str]:
    return ["--smoke", "--parts", parts, "--db", str(tmp_path / "study.duckdb"), "--results",
            str(tmp_path / "results"), "--out", str(tmp_path / "results.md")]


def test_smoke_study_saves_each_part_with_its_commit_and_a_rerun_skips_it(tmp_path, models_dir, capsys):
    assert study.main(_args(tmp_path)) == 0
    store = Store(tmp_path / "study.duckdb")
    name = study.prefix(study.STUDIES[0], study.SMOKE)
    adapt, heldout = store.corpus(f"{name}-adapt"), store.corpus(f"{name}-heldout")
    ids = [set(store.documents(c, with_text=False)["doc_id"]) for c in (adapt, heldout)]
    assert ids[0] and ids[1] and not ids[0] & ids[1]

    main, reps = study.load_part(tmp_path / "results", "drug-reviews:main")
    assert len(main["code"]["commit"]) == 40 and main["code"]["dirty"] in (True, False)
    assert set(main["runs"]) == {f"{name}-{v}-s{s}" for v in ("mlm", "declutr", "metadata") for s in study.SMOKE.seeds}
    for enc, run in main["runs"].items():  # compute-matched, made from the adaptation part only
        card = get_encoder(store, enc).provenance
        assert card["corpus"] == adapt.name and card["data_hash"] == adapt.data_hash
        assert run["notes_seen"] == study.SMOKE.steps * study.SMOKE.batch_size
        assert card["params"]["head_warmup"] == study.SMOKE.head_warmup  # every objective here has an MLM term
    assert main["runs"][f"{name}-mlm-s1"]["wall_s"] > 0
    mlm = get_encoder(store, f"{name}-mlm-s1").provenance["params"]
    assert (mlm["lr"], mlm["warmup_steps"]) == (study.SMOKE.mlm_lr, study.SMOKE.mlm_warmup)
    metadata = main["encoders"][f"{name}-metadata-s1"]
    assert set(metadata) == {"condition", "rating", "control"}  # its own label, an unseen one, the control
    assert "rating" not in main["encoders"][f"{name}-mlm-s1"]
    assert f"{name}-metadata-s2/control/accuracy" in reps and "tiny/control/accuracy" in reps

    fixes, _ = study.load_part(tmp_path / "results", "drug-reviews:fixes")
    assert {r["variant"] for r in fixes["runs"].values()} == {"declutr-original-spans", "metadata-random-batches"}
    setfit, _ = study.load_part(tmp_path / "results", "drug-reviews:setfit")
    assert setfit["setfit"]["comparisons"] and set(setfit["setfit"]["setfit"]) == set(setfit["setfit"]["frozen"])

    text = (tmp_path / "results.md").read_text()
    assert "a pipeline check, not a result" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and " | " in line]
    drug = [r for r in rows if "Drug reviews" in r]
    assert drug and all(r.rstrip(" |").rsplit("| ", 1)[-1] in ("supported", "not supported", "not shown", "not run yet")
                        for r in drug)
    mlm0 = next(r for r in drug if "MLM term helps" in r)
    assert mlm0.endswith("| not run yet |")  # its part was not run: no number stands in for it
    assert all(r.endswith("| not run yet |") for r in rows if "HPO definitions" in r and "Claim" not in r)
    assert "not run yet |" in next(line for line in text.splitlines() if line.startswith("| hpo:main |"))

    capsys.readouterr()
    assert study.main(_args(tmp_path)) == 0  # finished parts are skipped, their results untouched
    assert capsys.readouterr().err.count("finished earlier, skipped") == 3
    assert study.load_part(tmp_path / "results", "drug-reviews:main")[0] == main

    # a hand-written commentary survives a rewrite, flagged while it does not name the parts' commit
    md, commit = tmp_path / "results.md", main["code"]["commit"][:7]
    md.write_text(md.read_text() + "\n## Commentary\n\nWritten for other runs.\n")
    assert study.main(_args(tmp_path) + ["--report-only"]) == 0
    text = md.read_text()
    assert text.count("## Commentary") == 1 and text.endswith("Written for other runs.\n")
    assert f"does not name commit(s) {commit}" in text
    md.write_text(text.replace("Written for other runs.", f"Written for the parts of {commit}."))
    assert study.main(_args(tmp_path) + ["--report-only"]) == 0
    assert "does not name commit" not in md.read_text() and f"Written for the parts of {commit}." in md.read_text()


def test_an_encoder_of_the_same_name_made_from_other_notes_is_refused(tmp_path, models_dir, capsys):
    # e.g. a metadata encoder adapted on the whole corpus: it has seen the held-out notes' labels
    leaked = models_dir / f"{study.prefix(study.STUDIES[0], study.SMOKE)}-mlm-s1"
    shutil.copytree(models_dir / "tiny", leaked)
    (leaked / "notespace_card.json").write_text(json.dumps({"corpus": "drug-reviews", "params": {}}))
    assert study.main(_args(tmp_path, "drug-reviews:main")) == 1
    assert "was not made by this study" in capsys.readouterr().err
    assert study.load_part(tmp_path / "results", "drug-reviews:main") is None


def test_an_unknown_part_is_named():
    assert study.main(["--parts", "hpo:everything", "--report-only"]) == 2


def test_pooling_puts_the_seed_variance_inside_the_interval():
    rng = np.random.default_rng(0)
    notes = rng.normal(0, 0.01, (3, 1000))  # the same resampling noise for every seed
    same = study.pooled({f"s{i}": notes[0] + 0.5 for i in range(3)}, ["s0", "s1", "s2"], 1)
    spread = study.pooled({f"s{i}": notes[i] + 0.4 + 0.1 * i for i in range(3)}, ["s0", "s1", "s2"], 1)
    assert same[0] == pytest.approx(0.5, abs=0.01) and spread[0] == pytest.approx(0.5, abs=0.01)
    width = [np.quantile(r, 0.975) - np.quantile(r, 0.025) for _, r in (same, spread)]
    assert width[1] > 3 * width[0]  # seeds 0.1 apart: their spread, not only the notes', is in the interval
    assert study.pooled({"s0": notes[0]}, ["s0", "s1"], 1) is None  # a missing seed: no number


def _c(diff: float, lo: float, hi: float) -> dict:
    return {"diff": diff, "ci": [lo, hi], "excludes_zero": lo > 0 or hi < 0}


def test_verdicts_come_from_paired_intervals_never_from_point_estimates():
    assert study._all_better([_c(0.2, 0.1, 0.3), _c(0.05, 0.01, 0.09)]) == "supported"
    assert study._all_better([_c(0.2, 0.1, 0.3), _c(0.016, -0.02, 0.05)]) == "not shown"  # ahead, inside the interval
    assert study._all_better([_c(0.2, 0.1, 0.3), _c(-0.05, -0.09, -0.01)]) == "not supported"
    assert study._all_better([_c(-0.05, -0.09, -0.01)], higher=False) == "supported"
    assert study._all_better([_c(0.2, 0.1, 0.3), None]) == "not run yet"
