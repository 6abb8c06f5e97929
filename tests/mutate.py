"""Mutation testing (`make mutate`): each core module against its own tests, with mutmut.

mutmut reads one [tool.mutmut] table from the pyproject.toml of the folder it runs in, and keeps its
mutants and results in ./mutants. So each module gets a scratch copy of the working tree under
test-artifacts/mutate/<module>/ whose pyproject.toml says which files to mutate (core/corpus.py with
core/ingest/, the others one file each) and which tests (its own test module and tests/test_claims.py,
fast tests only) must catch the mutants; results stay there, so a rerun only tests what changed.

    python tests/mutate.py                      # every module below
    python tests/mutate.py clusters fewshot     # some of them
    MUTATE_JOBS=1 python tests/mutate.py ...    # parallel mutants (default: number of CPUs)
    MUTATE_FUNCTIONS=confound_audit,knn_vote python tests/mutate.py separability   # some functions only
    MUTATE_FUNCTIONS=update python tests/mutate.py corpus   # a method: every class's `update`

Prints each module's kill rate and every surviving mutant (`mutmut show NAME` in its folder explains
one); writes test-artifacts/mutate/summary.json. Not part of `make test`: a run takes minutes to hours.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "test-artifacts" / "mutate"  # ignored by git, like other test output
MODULES = {  # name -> (the files mutated, the tests that must catch their mutants besides CLAIMS)
    "separability": (["core/separability.py"], ["tests/test_separability.py"]),
    "fewshot": (["core/fewshot.py"], ["tests/test_fewshot.py"]),
    # how long notes are cut and pooled is tested with the space they define (tests/test_space.py)
    "embed": (["core/embed.py"], ["tests/test_embed.py", "tests/test_space.py"]),
    # bad files (encodings, headers, duplicates, stray spaces) are tested where the app and CLI read them
    "corpus": (["core/corpus.py", "core/ingest/*.py"],
               ["tests/test_corpus.py", "tests/test_ingest.py", "tests/test_bad_inputs.py"]),
    "clusters": (["core/clusters.py"], ["tests/test_clusters.py"]),
}
CLAIMS = "tests/test_claims.py"  # the headline claims, checked against independent oracles
FAST_TESTS = ["-m", "not e2e and not real_model", "-p", "no:cacheprovider", "-x", "-q"]
# Folders the tests read besides core/ and tests/ (mutmut copies those two itself).
ALSO_COPY = ["sample_data", "pages", "app.py", "bench", ".streamlit", "models"]
MUTMUT = Path(sys.executable).with_name("mutmut")
# A mutant that made its tests fail or hang is caught; a crash (segfault) is listed, not counted.
CAUGHT = ("killed", "timeout")


def scratch_copy(module: str) -> Path:
    """The working tree (tracked and new files, not ignored ones) with a pyproject for this module."""
    folder = WORK / module
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        source, target = ROOT / name, folder / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_bytes() != source.read_bytes():
                shutil.copy2(source, target)
    config = {
        "source_paths": ["core"],
        "only_mutate": MODULES[module][0],
        "pytest_add_cli_args_test_selection": [*MODULES[module][1], CLAIMS],
        "pytest_add_cli_args": FAST_TESTS,
        "also_copy": ALSO_COPY,
        "use_git_change_detection": False,
        # Forking straight from a process that has run torch code crashes the mutants (SIGSEGV, which
        # mutmut would count as caught): fork them from a server that has only imported the tests.
        "process_isolation": "forkserver",
    }
    toml = "\n".join(f"{key} = {json.dumps(value)}" for key, value in config.items())
    pyproject = (ROOT / "pyproject.toml").read_text() + f"\n[tool.mutmut]\n{toml}\n"
    (folder / "pyproject.toml").write_text(pyproject)
    return folder


def results(folder: Path, patterns: list[str]) -> dict[str, str]:
    """mutant name -> status (killed, survived, no tests, timeout, ...) of the mutants tested so far."""
    out = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=folder, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m and m.group(2).strip() != "not checked" and any(fnmatch.fnmatch(m.group(1), p) for p in patterns):
            found[m.group(1)] = m.group(2).strip()
    return found


def mutant_prefixes(module: str) -> list[str]:
    """The dotted names mutmut gives the module's files: core/ingest/*.py -> core.ingest.*"""
    return [path.removesuffix(".py").replace("/", ".") for path in MODULES[module][0]]


def mutate(module: str, jobs: int, functions: list[str]) -> dict:
    folder = scratch_copy(module)
    # mutmut names a function's mutants x_NAME__mutmut_N and a method's xǁCLASSǁNAME__mutmut_N
    selected = [f"{prefix}.{name}__mutmut_*" for prefix in mutant_prefixes(module) for f in functions
                for name in (f"x_{f}", f"xǁ*ǁ{f}")]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.monotonic()
    run = subprocess.run([str(MUTMUT), "run", "--max-children", str(jobs), *selected], cwd=folder, env=env,
                         capture_output=True, text=True)
    seconds = round(time.monotonic() - started)
    (folder / "mutmut-run.log").write_text(run.stdout + run.stderr)
    if run.returncode:
        raise SystemExit(f"mutmut failed on {' '.join(MODULES[module][0])} (exit {run.returncode}); "
                         f"see {folder}/mutmut-run.log")
    status = results(folder, selected or [f"{prefix}.*" for prefix in mutant_prefixes(module)])
    killed = sum(s in CAUGHT for s in status.values())
    return {"module": " ".join(MODULES[module][0]), "functions": functions or "all",
            "tests": " ".join(MODULES[module][1]), "mutants": len(status), "killed": killed,
            "kill_rate": round(100 * killed / max(len(status), 1), 1), "seconds": seconds,
            "not_killed": {name: s for name, s in sorted(status.items()) if s not in CAUGHT}}


def main(names: list[str]) -> None:
    unknown = set(names) - set(MODULES)
    if unknown:
        raise SystemExit(f"unknown module(s) {sorted(unknown)}; choose from {sorted(MODULES)}")
    jobs = int(os.environ.get("MUTATE_JOBS", os.cpu_count() or 1))
    functions = [f for f in os.environ.get("MUTATE_FUNCTIONS", "").split(",") if f]
    WORK.mkdir(parents=True, exist_ok=True)
    summary_path = WORK / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in names or list(MODULES):
        print(f"==> mutating {' '.join(MODULES[name][0])} against {' '.join(MODULES[name][1])}", flush=True)
        report = summary[name] = mutate(name, jobs, functions)
        summary_path.write_text(json.dumps(summary, indent=2))
        print(f"    {report['killed']}/{report['mutants']} killed ({report['kill_rate']} %) in {report['seconds']} s")
        for mutant, state in report["not_killed"].items():
            print(f"    {state:>10}  {mutant}")


if __name__ == "__main__":
    main(sys.argv[1:])
