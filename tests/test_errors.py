"""One UserError for what a user can fix: the CLI says it in one line (exit 2), a bug says "internal
error" after its traceback (exit 1), a cancel exits 130; the pages show a UserError's message and a
short "internal error" box for anything else, with the traceback in the server log."""

import logging

import pytest
from streamlit.testing.v1 import AppTest

import core.cli
from core.cli import main as cli_main
from core.errors import Cancelled, UserError
from core.store import StoreError
from pages.common import failure_text


def run_cli(monkeypatch, capsys, db_path, raised: BaseException) -> tuple[int, list[str]]:
    def handler(store, args):
        raise raised

    monkeypatch.setattr(core.cli, "cmd_corpora", handler)
    code = cli_main(["--db", str(db_path), "corpora"])
    out, err = capsys.readouterr()
    assert out == ""  # never half a JSON document
    return code, err.strip().splitlines()


def test_the_cli_says_a_user_error_in_one_line(monkeypatch, capsys, db_path):
    code, lines = run_cli(monkeypatch, capsys, db_path, UserError("corpus 'x' has no metadata\nmore detail"))
    assert code == 2 and lines == ["notespace corpora: error: corpus 'x' has no metadata"]
    assert issubclass(StoreError, UserError)


def test_the_cli_shows_a_bug_as_an_internal_error_after_its_traceback(monkeypatch, capsys, db_path):
    code, lines = run_cli(monkeypatch, capsys, db_path, TypeError("unsupported operand"))
    assert code == 1 and lines[0] == "Traceback (most recent call last):" and "in handler" in "\n".join(lines)
    assert lines[-1] == "notespace corpora: internal error: unsupported operand"


def test_the_cli_exits_130_when_cancelled(monkeypatch, capsys, db_path):
    code, lines = run_cli(monkeypatch, capsys, db_path, Cancelled("job 3 was cancelled"))
    assert code == 130 and lines == ["notespace corpora: job 3 was cancelled"]


def test_pages_show_a_user_errors_message_and_log_a_bugs_traceback(caplog):
    def logged():  # other tests' leftover threads may log too: only the pages' logger counts here
        return [r for r in caplog.records if r.name == "notespace.pages"]

    assert failure_text(StoreError("no corpus named 'x'")) == "no corpus named 'x'"
    assert not logged()
    try:
        {}["missing"]
    except KeyError as exc:
        bug = exc
    with caplog.at_level(logging.ERROR, logger="notespace.pages"):
        assert failure_text(bug) == "Internal error (KeyError); the details are in the server log."
    assert logged()[0].exc_info[1] is bug


@pytest.mark.parametrize("raised, shown", [
    ("UserError('pick a label column first')", "pick a label column first"),
    ("ZeroDivisionError('division by zero')", "Internal error (ZeroDivisionError); the details are in the server log."),
])
def test_a_page_shows_one_error_box(raised, shown):
    def page():
        import streamlit as st

        from core.errors import UserError
        from pages.common import show_failure

        try:
            raise eval(st.session_state["raised"], {"UserError": UserError})
        except Exception as exc:
            show_failure(exc)

    at = AppTest.from_function(page)
    at.session_state["raised"] = raised
    at.run()
    assert not at.exception and [e.value for e in at.error] == [shown]
