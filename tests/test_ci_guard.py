"""Without chromium the browser tests are skipped on a workstation, and fail the run in CI."""

import os
import subprocess
import sys

from tests.conftest import ROOT

# Runs one browser test with the chromium path pointing nowhere (set once tests/e2e/conftest.py is loaded).
RUN_WITHOUT_CHROMIUM = """
import sys, pytest

class NoChromium:
    def pytest_collection_finish(self, session):
        sys.modules["tests.e2e.conftest"].CHROMIUM = "/nonexistent/chromium"

sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-rs", sys.argv[1]], plugins=[NoChromium()]))
"""
BROWSER_TEST = "tests/e2e/test_data_flow.py"


def run(ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    return subprocess.run([sys.executable, "-c", RUN_WITHOUT_CHROMIUM, BROWSER_TEST], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_missing_chromium_fails_the_run_in_ci_and_is_skipped_elsewhere():
    in_ci = run(ci=True)
    assert in_ci.returncode == 1, in_ci.stdout[-2000:]
    assert "chromium is not installed at /nonexistent/chromium" in in_ci.stdout
    assert "CI is set, so the browser tests must run" in in_ci.stdout and " skipped" not in in_ci.stdout
    locally = run(ci=False)
    assert locally.returncode == 0 and " skipped" in locally.stdout and " failed" not in locally.stdout, locally.stdout[-2000:]
