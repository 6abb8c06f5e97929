"""The `notespace` command line: one JSON document on stdout, progress on stderr, one-line errors.

Flags come from the shared option classes in `core.options`, so the app and the CLI agree.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from core.caches import route_library_caches
from core.errors import Cancelled, UserError, one_line
from core.options import ClusterOptions, EmbedOptions, EvaluateOptions, PretrainOptions, ProjectOptions
from core.store import Store
from core.training.registry import ObjectiveNames

ROOT = Path(__file__).resolve().parent.parent


class StderrProgress:
    """Progress lines on stderr: rewritten in place on a terminal, at most twice a second otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self.last < (0.1 if self.tty else 0.5):
            return
        self.last = now
        line = f"[{fraction:6.1%}] {message}"
        sys.stderr.write(("\r" + line.ljust(79)) if self.tty else line + "\n")
        if self.tty and fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _emit(result) -> None:
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")


# ---- verbs -------------------------------------------------------------------------------------


def cmd_ingest(store: Store, args) -> dict:
    from core.corpus import ingest_file

    result = ingest_file(store, args.path, args.name, args.text, args.id, args.meta, progress=StderrProgress(),
                         header=not args.no_header, force=args.force, replace=args.replace)
    for warning in result["warnings"]:
        print(f"notespace ingest: warning: {warning}", file=sys.stderr)
    return result


def cmd_delete(store: Store, args) -> dict:
    from core.corpus import delete_corpus

    return delete_corpus(store, args.name)


def cmd_demo(store: Store, args) -> dict:
    from core.corpus import corpus_info, ingest_frame
    from core.store import StoreError
    from sample_data.demo import DEMOS

    try:
        return corpus_info(store, args.demo)  # already loaded: nothing to do
    except StoreError:
        pass
    loader, text, id_col, meta = DEMOS[args.demo]
    print(f"building the '{args.demo}' demo corpus from its installed package", file=sys.stderr)
    ingest_frame(store, loader(), args.demo, text, id_col, meta, source=f"demo:{args.demo}", progress=StderrProgress())
    return corpus_info(store, args.demo)  # the same keys whether built now or before


def cmd_corpora(store: Store, args) -> list:
    return [{"corpus": c.name, "rows": c.n_docs, "skipped": c.skipped, "meta": c.meta, "source": c.source}
            for c in store.corpora()]


def cmd_encoders(store: Store, args) -> list | dict:
    from core.encoders import list_encoders, register_local

    if args.add:
        return register_local(store, args.add, args.name).public()
    if args.name:
        raise UserError("--name goes with --add PATH (the folder to register)")
    return [e.public() for e in list_encoders(store)]


def cmd_embed(store: Store, args) -> dict:
    if args.engine == "ray":
        from core.scale import embed_on_ray

        return embed_on_ray(store, args.corpus, EmbedOptions.from_args(args), args.ray_address, args.workers,
                            progress=StderrProgress())
    from core.embed import embed_corpus

    return embed_corpus(store, args.corpus, EmbedOptions.from_args(args), progress=StderrProgress())


def cmd_project(store: Store, args) -> dict:
    from core.maps import export_projection, project_corpus

    result = project_corpus(store, args.corpus, ProjectOptions.from_args(args), progress=StderrProgress())
    if args.out:
        export_projection(store, result["projection"], args.out)
    return result


def cmd_cluster(store: Store, args) -> dict:
    from core.clusters import cluster_corpus

    return cluster_corpus(store, args.corpus, ClusterOptions.from_args(args), progress=StderrProgress())


def cmd_pretrain(store: Store, args) -> dict:
    from core.jobs import run_pretrain_now

    return run_pretrain_now(store, args.corpus, PretrainOptions.from_args(args), progress=StderrProgress())


def cmd_jobs(store: Store, args) -> list:
    from core.jobs import list_jobs

    return list_jobs(store)


def cmd_evaluate(store: Store, args) -> dict:
    from core.evaluation.corpus import evaluate_corpus
    from core.export import render_report_md

    result = evaluate_corpus(store, args.corpus, args.encoders, EvaluateOptions.from_args(args),
                             progress=StderrProgress())
    if args.out:
        Path(args.out).write_text(render_report_md(result), encoding="utf-8")
    return result


STREAMLIT_WITHOUT_PAGES_FOLDER = (
    "from streamlit.runtime.pages_manager import PagesManager; PagesManager.uses_pages_directory = False; "
    "from streamlit.web.cli import main; main(prog_name='streamlit')")


def serve_command(host: str, port: int, root: Path = ROOT) -> list[str]:
    """The Streamlit command that serves the app: no file watcher and no run-on-save (an idle server
    must not burn a core watching the repository), no full garbage collection after every page run
    (0.2-0.3 s on every click with torch loaded), no telemetry. Given as flags, not only in
    .streamlit/config.toml, because an installed app runs from site-packages, where no config lies.
    `root`: the folder of the app.py to serve (a benchmark may serve an older checkout).

    Streamlit is started with its old multipage mode off: until app.py has called st.navigation once in
    the process, that mode serves every file in pages/ as a page of its own, without app.py (so without
    its login door, its pages and its store session) to a first visitor who opens, say, /explore."""
    return [sys.executable, "-c", STREAMLIT_WITHOUT_PAGES_FOLDER, "run", str(root / "app.py"), "--server.address", host,
            "--server.port", str(port), "--server.headless", "true", "--server.fileWatcherType", "none",
            "--server.runOnSave", "false", "--runner.postScriptGC", "false", "--browser.gatherUsageStats", "false",
            "--server.enableXsrfProtection", "true", "--server.maxUploadSize", "1024"]


def cmd_app(store: Store, args) -> None:
    from core.access import exposure_refusal, login_configured, read_secrets

    refusal = exposure_refusal(args.host, login_configured(read_secrets(ROOT)))
    if refusal:
        raise UserError(refusal)
    env = os.environ | {"NOTESPACE_DB": str(store.path.resolve())}
    print(f"NoteSpace on http://{args.host}:{args.port} (store: {store.path})", file=sys.stderr)
    raise SystemExit(subprocess.call(serve_command(args.host, args.port), cwd=ROOT, env=env))


# ---- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notespace", description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="store file (default: $NOTESPACE_DB or ~/.notespace/notespace.duckdb)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    p = verb("ingest", cmd_ingest, "ingest a CSV, TSV, Parquet or JSONL file of notes")
    p.add_argument("path")
    p.add_argument("--name", required=True, help="name of the new corpus")
    p.add_argument("--text", required=True, help="column holding the note text")
    p.add_argument("--id", help="column holding a unique id per note (default: row number)")
    p.add_argument("--meta", nargs="+", action="extend",
                   help="metadata columns, repeatable: --meta A B or --meta A --meta B (default: every other column)")
    p.add_argument("--replace", action="store_true",
                   help="replace the corpus of this name, all or nothing (a rejected file leaves it untouched)")
    p.add_argument("--no-header", action="store_true",
                   help="the first line is a note, not column names: columns are named column_1, column_2, ...")
    p.add_argument("--force", action="store_true",
                   help="store despite refusals (a numeric or identifier-like text column, a header that reads "
                        "like a note)")

    p = verb("delete", cmd_delete, "delete a corpus with its notes, metadata, maps, clusters, labels, runs and the "
                                   "vectors no other corpus uses (adapted encoders stay)")
    p.add_argument("name")

    p = verb("demo", cmd_demo, "load a demo corpus built from an installed package")
    p.add_argument("demo", choices=["drug-reviews", "hpo", "icd10"])

    verb("corpora", cmd_corpora, "list corpora")
    p = verb("encoders", cmd_encoders, "list encoders, or register a local sentence-transformers folder")
    p.add_argument("--add", metavar="PATH", help="register this local folder (safetensors weights, no custom code)")
    p.add_argument("--name", help="id of the registered encoder (default: the folder's name)")

    p = verb("embed", cmd_embed, "embed a corpus (cached: only new texts are computed)")
    p.add_argument("--corpus", required=True)
    EmbedOptions.add_arguments(p)
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="ray: on a Ray cluster (the optional extra 'scale'; docs/scale.md)")
    p.add_argument("--ray-address", help="a running Ray cluster (default: start a local Ray for this machine)")
    p.add_argument("--workers", type=int, help="Ray actors embedding at once (default: half the local cores; 1 on a cluster)")

    p = verb("project", cmd_project, "compute a 2-D map (UMAP or PCA) of a corpus")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", help="write document id, x, y and metadata to this Parquet file")
    ProjectOptions.add_arguments(p)

    p = verb("cluster", cmd_cluster, "find and label clusters")
    p.add_argument("--corpus", required=True)
    ClusterOptions.add_arguments(p)

    p = verb("pretrain", cmd_pretrain, "adapt an encoder to a corpus (the objectives: --objective)")
    p.add_argument("--corpus", required=True)
    PretrainOptions.add_arguments(p, choices={"objective": ObjectiveNames()})  # the registry's, read when used

    verb("jobs", cmd_jobs, "list background jobs with state and progress")

    p = verb("evaluate", cmd_evaluate, "separability and few-shot learning curves of encoders")
    p.add_argument("--corpus", required=True)
    p.add_argument("--encoders", nargs="+", required=True, metavar="ID")
    p.add_argument("--out", help="also write a Markdown report here")
    EvaluateOptions.add_arguments(p)

    p = verb("app", cmd_app, "serve the app on 127.0.0.1")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; beyond this machine only with login configured (docs/privacy.md)")
    p.add_argument("--port", type=int, default=8501)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")  # core's diagnostics: stderr
    args = build_parser().parse_args(argv)
    route_library_caches()
    try:
        store = Store(args.db) if args.db else Store()
        result = args.handler(store, args)
    except KeyboardInterrupt:
        print("notespace: cancelled", file=sys.stderr)
        return 130
    except Cancelled as exc:  # cancelled from elsewhere (the page, another command)
        print(f"notespace {args.verb}: {str(exc) or 'cancelled'}", file=sys.stderr)
        return 130
    # What the user can fix ends in one clear line; a missing or unreadable file (OSError) is the user's to fix too.
    except (UserError, OSError) as exc:
        if os.environ.get("NOTESPACE_DEBUG"):
            raise
        print(f"notespace {args.verb}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: its traceback, then one line; NOTESPACE_DEBUG=1 raises it
        if os.environ.get("NOTESPACE_DEBUG"):
            raise
        traceback.print_exc()
        print(f"notespace {args.verb}: internal error: {one_line(exc)}", file=sys.stderr)
        return 1
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
