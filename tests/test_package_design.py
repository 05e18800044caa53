"""The package's design targets (issue 21), measured on the code as it is: no import cycle, no import of
another module's private name, no function over 80 lines or 10 parameters, no unexplained import inside a
function, the learner's core (core modules + gpt/lora/) at most 3,000 lines, a README of at most 15,000
characters, and docs/package.md drawn from the current code (scripts/package_graph.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
    spec = importlib.util.spec_from_file_location("package_graph", ROOT / "scripts" / "package_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def numbers(graph):
    return graph.numbers(graph.package_files())


def test_no_import_cycle_and_no_private_cross_import(numbers):
    assert numbers["import cycles"] == []
    assert numbers["private cross-imports"] == []
    assert numbers["imports inside functions without a comment"] == []


def test_functions_stay_short(numbers, graph):
    lines, where = numbers["longest function"]
    assert lines <= graph.MAX_FUNCTION_LINES, f"{where} is {lines} lines: split it"
    params, where = numbers["most parameters"]
    assert params <= graph.MAX_PARAMETERS, f"{where} takes {params} parameters: pass a config"


def test_the_learners_core_reads_in_an_afternoon(numbers, graph):
    lines = numbers["core lines (core modules + gpt/lora)"]
    assert lines <= graph.MAX_CORE_LINES, (f"the core is {lines} lines (target {graph.MAX_CORE_LINES}): move what a learner "
                                           "need not read (file formats, checks of files, experiment helpers) to gpt/io, gpt/runtime or gpt/experiments")


def test_readme_is_a_front_page():
    chars = len((ROOT / "README.md").read_text(encoding="utf-8"))
    assert chars <= 15_000, f"README.md has {chars:,} characters; move details into docs/"


def test_docs_package_md_is_drawn_from_the_current_code(graph, tmp_path):
    out = tmp_path / "package.md"
    assert graph.main(["--out", str(out)]) == 0
    assert out.read_text() == (ROOT / "docs" / "package.md").read_text(), "docs/package.md is stale: run python scripts/package_graph.py"


def test_the_core_and_the_lower_layers_import_nothing_from_the_upper_ones(graph):
    """The learner's core, gpt/io and gpt/runtime never import gpt/experiments, gpt/teaching or gpt/cli (those are built on them)."""
    upper = ("experiments", "teaching", "cli")
    edges = graph.graph(graph.package_files())
    found = [f"{module} imports {target}" for module, targets in edges.items() for target in sorted(targets)
             if graph.layer_of(module) in ("core", "lora", "io", "runtime") and module not in ("gpt", "gpt.__main__")
             and graph.layer_of(target) in upper]
    assert not found, found
