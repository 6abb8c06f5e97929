"""The app as the browser benchmarks serve it: `notespace app`'s own command (core.cli.serve_command) on a
free local port, handed over once it answers its health check, stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.cli import ROOT, serve_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


@contextmanager
def served_app(env: dict[str, str], log: Path | None = None, wait_s: float = 120, root: Path = ROOT,
               flags: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """(URL, server process) of the app in `root` served with `env` (NOTESPACE_DB, ...) on top of this
    process's environment and any further Streamlit `flags`; the server's output goes to `log`, else nowhere."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log or os.devnull, "w") as out:
        server = subprocess.Popen([*serve_command("127.0.0.1", port, root), *flags], cwd=root,
                                  env=os.environ | {"PYTHONPATH": str(root)} | env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + wait_s
            while not _healthy(url):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the app server did not answer within {wait_s:.0f} s"
                                     + (f" (its log: {log})" if log else ""))
                time.sleep(0.3)
            yield url, server
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:  # a loaded machine: the measurement is over, stop it hard
                server.kill()
                server.wait()
