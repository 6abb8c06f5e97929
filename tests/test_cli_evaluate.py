"""`notespace evaluate` as a user runs it: a real process, the documented JSON, a Markdown report, one-line errors."""

import json
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from core.evaluation.corpus import RESULTS_VERSION

from tests.test_cli import notespace

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {"silhouette", "davies_bouldin", "calinski_harabasz", "knn_accuracy", "alignment", "uniformity",
            "linear_probe_accuracy", "fewshot"}


@pytest.fixture()
def clinic(db_path, models_dir, synthetic_df):
    from core.corpus import ingest_frame
    from core.store import Store

    from core.embed import embed_corpus
    from core.options import EmbedOptions

    shutil.copytree(models_dir / "tiny", models_dir / "tiny-b")  # a second encoder to compare with
    store = Store(db_path)
    ingest_frame(store, synthetic_df.head(60), "clinic", "text", "note_id", ["specialty", "site"])
    # in this process, whole notes in 16-token windows: the CLI only evaluates, in that space
    for encoder in ("tiny", "tiny-b"):
        embed_corpus(store, "clinic", EmbedOptions(encoder=encoder, max_length=16, long_notes="chunk", precision="fp32"))
    return {"NOTESPACE_MODELS": str(models_dir)}


def test_evaluate_prints_the_documented_json_and_writes_a_report(db_path, clinic, tmp_path):
    report = tmp_path / "report.md"
    out = notespace("evaluate", "--corpus", "clinic", "--label", "specialty", "--encoders", "tiny-b", "tiny",
                    "--shots", "1,2,4", "--seeds", "2", "--out", report, db=db_path, env_extra=clinic)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert {"corpus", "label", "encoders", "comparisons", "embedding"} <= set(result)
    assert result["embedding"] == {e: {"encoder": e, "max_length": 16, "long_notes": "chunk", "precision": "fp32"}
                                   for e in ("tiny-b", "tiny")}
    assert (result["corpus"], result["label"], list(result["encoders"])) == ("clinic", "specialty", ["tiny-b", "tiny"])
    for entry in result["encoders"].values():
        assert REQUIRED <= set(entry) and "bootstrap" not in entry
        for metric in REQUIRED - {"fewshot"}:
            assert len(entry[f"{metric}_ci"]) == 2, metric
        assert set(entry["fewshot"]) == {"1", "2", "4"}
        for shot in entry["fewshot"].values():
            assert {"macro_f1", "macro_f1_ci", "accuracy", "exhausted_classes"} <= set(shot)
            assert len(shot["macro_f1_ci"]) == 2 and isinstance(shot["exhausted_classes"], list)
    comparisons = result["comparisons"]
    assert {(c["a"], c["b"]) for c in comparisons} == {("tiny-b", "tiny")}  # each encoder against the first named
    assert {c["shots"] for c in comparisons} == {None, 1, 2, 4}
    for c in comparisons:
        assert set(c) == {"a", "b", "metric", "shots", "diff", "ci", "excludes_zero"}
        assert c["diff"] == 0 and not c["excludes_zero"]  # the same weights twice: no difference
    assert "done" in out.stderr  # progress lines go to stderr, never into the JSON
    code = result["code"]  # the code that made the numbers, as git and the installed package say
    assert code["notespace"] == version("notespace") and code["results_version"] == RESULTS_VERSION
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        assert code["commit"] == head and isinstance(code["dirty"], bool)
    md = report.read_text(encoding="utf-8")
    assert md.startswith("# NoteSpace evaluation") and "Corpus **clinic**, label **specialty**" in md
    assert f"Computed by NoteSpace {version('notespace')}" in md and f"results version {RESULTS_VERSION}" in md
    assert "| Metric | Better | tiny-b | tiny |" in md and "## Few-shot learning curve" in md
    assert "## Each encoder against the first" in md and "no clear difference" in md
    assert "## Few-shot per class: tiny, 4 notes per class" in md and "| Class | Test notes | F1 |" in md


@pytest.mark.parametrize("args, message", [
    (["--label", "ward", "--encoders", "tiny"], "has no metadata column 'ward' to use as the label "
                                                "(its metadata columns: specialty, site)"),
    (["--label", "specialty", "--encoders", "nope"], "unknown encoder 'nope'"),
])
def test_bad_label_or_encoder_exits_non_zero_with_one_line(db_path, clinic, args, message):
    out = notespace("evaluate", "--corpus", "clinic", *args, db=db_path, env_extra=clinic)
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("notespace evaluate: error:") and message in lines[0]
