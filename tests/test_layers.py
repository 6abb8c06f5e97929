"""The layering contract (pyproject.toml [tool.importlinter], docs/architecture.md "Layers"): the
layers, pure training and thin pages hold, and no module of core/ or pages/ imports itself back
through any chain, counting imports inside functions."""

from pathlib import Path

import grimp
import networkx as nx
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    edges = nx.DiGraph()
    for module in graph.modules:
        edges.add_edges_from((module, imported) for imported in graph.find_modules_directly_imported_by(module))
    return list(nx.simple_cycles(edges))


def test_the_import_contracts_hold(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_no_module_imports_itself_back_not_even_inside_a_function():
    graph = grimp.build_graph("core", "pages", cache_dir=None)
    assert import_cycles(graph) == []
    # the check sees an import made inside a function (the kind that hid core.jobs <-> training.worker)
    source = (ROOT / "core" / "jobs" / "runners.py").read_text()
    assert "    from core.jobs.launch import run_ranks" in source
    assert "core.jobs.launch" in graph.find_modules_directly_imported_by("core.jobs.runners")
    graph.add_import(importer="core.jobs.launch", imported="core.jobs.runners")
    assert ["core.jobs.launch", "core.jobs.runners"] in [sorted(c) for c in import_cycles(graph)]
