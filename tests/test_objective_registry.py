"""The objective registry is the one extension point: an objective registered in one module shows in the
CLI's `--objective` choices and on the Pretrain page (its help, label column, suggested settings and
smallest batch), and its corpus check refuses a job before any model loads."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core.cli import build_parser
from core.corpus import ingest_frame
from core.errors import UserError
from core.options import PretrainOptions
from core.store import Store
from core.training.objective import Objective, Suggested
from core.training.registry import get_objective, objectives, register, unregister

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture()
def echo():
    """A throwaway objective, as a new module of core/training/objectives/ would declare it."""

    @register("echo")
    class EchoObjective(Objective):
        help = "Echo: a throwaway objective that only a test knows."
        needs_label = True
        suggested = {"cpu": Suggested(7, 6, 32), "cuda": Suggested(70, 60, 64)}
        min_batch = 6

    yield EchoObjective
    unregister("echo")


def test_the_packaged_objectives_declare_what_the_pages_need():
    assert list(objectives()) == ["mlm", "declutr", "metadata"]
    for objective in objectives().values():
        assert objective.help and objective.suggested_for("cpu").batch_size >= objective.min_batch
    assert [o.needs_label for o in objectives().values()] == [False, False, True]
    with pytest.raises(UserError, match="unknown objective 'nope'; choose one of mlm, declutr, metadata"):
        get_objective("nope")


def test_a_registered_objective_is_a_cli_choice(echo, capsys):
    parser = build_parser()
    args = parser.parse_args(["pretrain", "--corpus", "c", "--objective", "echo", "--name", "n"])
    assert PretrainOptions.from_args(args).objective == "echo"
    with pytest.raises(SystemExit):
        parser.parse_args(["pretrain", "--corpus", "c", "--objective", "nope"])
    assert "[--objective {mlm,declutr,metadata,echo}]" in capsys.readouterr().err
    unregister("echo")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pretrain", "--corpus", "c", "--objective", "echo"])


def test_a_registered_objective_is_on_the_pretrain_page_and_checks_the_corpus(echo, db_path, models_dir,
                                                                              synthetic_df):
    store = Store(db_path)
    ingest_frame(store, synthetic_df, "clinic", "text", "note_id", ["specialty", "site", "age"])
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.session_state["pt_base"] = "tiny"
    at.switch_page("pages/pretrain.py").run()
    assert at.selectbox(key="pt_objective").options == ["mlm", "declutr", "metadata", "echo"]
    assert at.selectbox(key="pt_label").disabled  # mlm needs no label
    at.selectbox(key="pt_objective").set_value("echo").run()
    assert not at.exception
    assert not at.selectbox(key="pt_label").disabled
    assert any(c.value == echo.help for c in at.caption)
    assert at.number_input(key="pt_steps_cpu_echo").value == 7
    batch = at.number_input(key="pt_batch_cpu_echo")
    assert batch.value == 6 and batch.min == 6
    assert at.text_input(key="pt_name_clinic_echo").value == "clinic-echo"

    with pytest.raises(UserError, match="the echo objective needs a label column .* one of specialty, site, age"):
        jobs.queue_pretrain(store, "clinic", PretrainOptions(objective="echo", name="e", base="tiny", batch_size=6),
                            pid=None)
    with pytest.raises(UserError, match="the echo objective needs a batch size of 6 or more"):
        jobs.queue_pretrain(store, "clinic", PretrainOptions(objective="echo", name="e", base="tiny", label="site",
                                                             batch_size=4), pid=None)
    assert jobs.list_jobs(store) == []
