"""The command line as a user runs it: a real process, JSON on stdout, one-line errors on stderr."""

import json
import os
import subprocess
import sys

import pytest


def notespace(*args, db, env_extra=None):
    env = os.environ | {"NOTESPACE_DB": str(db)} | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "core.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture()
def notes_csv(tmp_path, synthetic_df):
    path = tmp_path / "notes.csv"
    synthetic_df.head(40).to_csv(path, index=False)
    return path


def test_ingest_embed_and_list(db_path, models_dir, notes_csv):
    env = {"NOTESPACE_MODELS": str(models_dir)}
    out = notespace("ingest", notes_csv, "--name", "clinic", "--text", "text", "--id", "note_id",
                    "--meta", "specialty", "age", db=db_path, env_extra=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"corpus": "clinic", "rows": 40, "skipped": 0,
                                      "meta": {"specialty": "categorical", "age": "numeric"},
                                      "duplicates": 0, "conflicts": 0, "warnings": []}
    corpora = json.loads(notespace("corpora", db=db_path).stdout)
    assert [c["corpus"] for c in corpora] == ["clinic"]
    encoders = json.loads(notespace("encoders", db=db_path, env_extra=env).stdout)
    assert {"id": "tiny", "name": "tiny", "kind": "adapted", "dim": 32} in encoders
    assert all(set(e) == {"id", "name", "kind", "dim"} for e in encoders)

    first = notespace("embed", "--corpus", "clinic", "--encoder", "tiny", db=db_path, env_extra=env)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert set(result) == {"corpus", "encoder", "n", "computed", "cached", "seconds", "truncated", "long_notes",
                           "longer", "embedding"}
    assert (result["computed"], result["cached"]) == (40, 0)
    assert result["embedding"]["encoder"] == "tiny" and result["embedding"]["long_notes"] == result["long_notes"]
    assert "embedded" in first.stderr  # progress goes to stderr, never into the JSON
    again = json.loads(notespace("embed", "--corpus", "clinic", "--encoder", "tiny", db=db_path, env_extra=env).stdout)
    assert (again["computed"], again["cached"]) == (0, 40)


def test_project_and_cluster_say_which_embedding_space_they_read(db_path, models_dir, notes_csv):
    env = {"NOTESPACE_MODELS": str(models_dir)}
    notespace("ingest", notes_csv, "--name", "clinic", "--text", "text", db=db_path, env_extra=env)
    embedded = json.loads(notespace("embed", "--corpus", "clinic", "--encoder", "tiny", "--max-length", "16",
                                    "--long-notes", "chunk", db=db_path, env_extra=env).stdout)
    space = {"encoder": "tiny", "max_length": 16, "long_notes": "chunk", "precision": embedded["embedding"]["precision"]}
    assert embedded["embedding"] == space and embedded["truncated"] == 0 and embedded["longer"] > 0
    projected = notespace("project", "--corpus", "clinic", "--encoder", "tiny", "--method", "pca", db=db_path,
                          env_extra=env)
    assert projected.returncode == 0, projected.stderr
    assert json.loads(projected.stdout)["embedding"] == space
    clustered = notespace("cluster", "--corpus", "clinic", "--encoder", "tiny", "--method", "kmeans", "--k", "3",
                          db=db_path, env_extra=env)
    assert clustered.returncode == 0, clustered.stderr
    assert json.loads(clustered.stdout)["embedding"] == space
    assert "embedded" not in projected.stderr + clustered.stderr  # nothing embedded again


@pytest.mark.parametrize("args, message", [
    (["ingest", "missing.csv", "--name", "x", "--text", "text"], "no such file"),
    (["embed", "--corpus", "nope"], "no corpus named 'nope'"),
    (["ingest", "{csv}", "--name", "bad name", "--text", "text"], "invalid name"),
    (["ingest", "{csv}", "--name", "x", "--text", "body"], "no column 'body'"),
])
def test_bad_input_exits_non_zero_with_one_line(db_path, notes_csv, args, message):
    out = notespace(*[a.replace("{csv}", str(notes_csv)) for a in args], db=db_path)
    assert out.returncode != 0
    assert out.stdout == ""
    errors = [line for line in out.stderr.strip().splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]
    assert out.stderr.strip().splitlines()[-1] == errors[0]


def test_demo_is_idempotent(db_path):
    first = json.loads(notespace("demo", "drug-reviews", db=db_path).stdout)
    again = json.loads(notespace("demo", "drug-reviews", db=db_path).stdout)
    assert first == again and first["rows"] == 979
    assert set(first["meta"]) == {"condition", "drug", "rating", "date", "useful_count", "split"}
