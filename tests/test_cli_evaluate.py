"""`notespace evaluate` as a user runs it: a real process, the documented JSON, a Markdown report, one-line errors."""

import json

import pytest

from tests.test_cli import notespace

REQUIRED = {"silhouette", "davies_bouldin", "calinski_harabasz", "knn_accuracy", "alignment", "uniformity",
            "linear_probe_accuracy", "fewshot"}


@pytest.fixture()
def clinic(db_path, models_dir, synthetic_df):
    from core.corpus import ingest_frame
    from core.store import Store

    from core.embed import embed_corpus
    from core.options import EmbedOptions

    store = Store(db_path)
    ingest_frame(store, synthetic_df.head(60), "clinic", "text", "note_id", ["specialty", "site"])
    # in this process, whole notes in 16-token windows: the CLI only evaluates, in that space
    embed_corpus(store, "clinic", EmbedOptions(encoder="tiny", max_length=16, long_notes="chunk", precision="fp32"))
    return {"NOTESPACE_MODELS": str(models_dir)}


def test_evaluate_prints_the_documented_json_and_writes_a_report(db_path, clinic, tmp_path):
    report = tmp_path / "report.md"
    out = notespace("evaluate", "--corpus", "clinic", "--label", "specialty", "--encoders", "tiny",
                    "--shots", "1,2,4", "--seeds", "2", "--out", report, db=db_path, env_extra=clinic)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"corpus", "label", "encoders", "embedding"}
    assert result["embedding"] == {"tiny": {"encoder": "tiny", "max_length": 16, "long_notes": "chunk",
                                            "precision": "fp32"}}
    assert (result["corpus"], result["label"], list(result["encoders"])) == ("clinic", "specialty", ["tiny"])
    entry = result["encoders"]["tiny"]
    assert REQUIRED <= set(entry)
    assert set(entry["fewshot"]) == {"1", "2", "4"}
    for shot in entry["fewshot"].values():
        assert {"macro_f1", "macro_f1_ci", "accuracy"} <= set(shot) and len(shot["macro_f1_ci"]) == 2
    assert "done" in out.stderr  # progress lines go to stderr, never into the JSON
    md = report.read_text(encoding="utf-8")
    assert md.startswith("# NoteSpace evaluation") and "Corpus **clinic**, label **specialty**" in md
    assert "| Metric | Better | tiny |" in md and "## Few-shot learning curve" in md


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
