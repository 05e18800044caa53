"""The notebooks' setup cell and badges: one cell everywhere, pinned to one commit, every badge opening the
handout at that commit, and (slow) a real fresh install.

In Colab each notebook gets its own runtime. The setup cell clones the course at COURSE_REF, installs
it with pip and reports the package, the reference model, the committed results and the GPU. Where the
course is installed already, it pip-installs the notebook's EXTRAS that are missing. The slow test
runs that cell in a fresh virtual environment against a file:// clone of this repository. Every
notebook is here twice, solved (notebooks/solutions/) and as the handout (notebooks/); both carry
the same setup cell and the same badge.
"""

import ast

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from gpt.teaching.course import course_root, report

ROOT = course_root()
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
HANDOUTS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = SOLUTIONS + HANDOUTS
PAGES = ["README.md", "notebooks/README.md"]  # the pages whose notebook tables have Colab badges
COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^\s)\]]*")
EXTRAS = {"07_improving_lora": "[peft]", "08_lora_gpt2": "[hf]"}


def setup_cell(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def constant(source: str, name: str) -> str:
    m = re.search(rf'^{name} = "([^"]*)"', source, re.MULTILINE)
    assert m, f"the setup cell has no {name} constant"
    return m[1]


def test_every_notebook_has_the_same_setup_cell():
    assert [p.name for p in SOLUTIONS] == [p.name for p in HANDOUTS] and len(SOLUTIONS) == 8
    cells = {p: setup_cell(p) for p in NOTEBOOKS}
    for path, source in cells.items():
        assert constant(source, "EXTRAS") == EXTRAS.get(path.stem, ""), path
    normalized = {re.sub(r'^EXTRAS = "[^"]*"', 'EXTRAS = ""', s, flags=re.MULTILINE) for s in cells.values()}
    assert len(normalized) == 1, "the setup cells differ beyond their EXTRAS line"
    source = normalized.pop()
    assert constant(source, "COURSE_REPO").startswith("https://")
    assert "report()" in source and "git\", \"-C\", clone, \"checkout\"" in source


def test_every_badge_opens_the_handout_at_the_pinned_commit():
    """Each notebook's first markdown cell and every row of the README tables: Colab opens the handout
    notebooks/NN_name.ipynb (never the solved one) of COURSE_REPO at COURSE_REF."""
    source = setup_cell(SOLUTIONS[0])
    repo = constant(source, "COURSE_REPO").removeprefix("https://github.com/")
    base = f"https://colab.research.google.com/github/{repo}/blob/{constant(source, 'COURSE_REF')}/notebooks/"
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        first = "".join(next(c for c in cells if c["cell_type"] == "markdown")["source"])
        assert COLAB.findall(first) == [base + path.name], path
        others = [COLAB.findall("".join(c["source"])) for c in cells if c["cell_type"] == "markdown"]
        assert sum(map(len, others)) == 1, f"{path}: one badge, in the first markdown cell"
    for page in PAGES:
        links = COLAB.findall((ROOT / page).read_text())
        assert sorted(links) == sorted(base + p.name for p in HANDOUTS), (
            f"{page}: one badge per notebook, opening its handout at the pinned commit (python scripts/pin_notebooks.py)")


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_setup_cell_installs_each_extra_as_pyproject_declares_it():
    """NEEDS (extra -> {module: requirement}) in the setup cell is pyproject.toml's optional-dependencies."""
    source = setup_cell(SOLUTIONS[0])
    needs = next(ast.literal_eval(node.value) for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NEEDS")
    extras = {k: v for k, v in pyproject()["optional-dependencies"].items() if k != "dev"}
    assert {extra: sorted(modules.values()) for extra, modules in needs.items()} == {k: sorted(v) for k, v in extras.items()}
    for modules in needs.values():
        for module, requirement in modules.items():
            assert re.match(r"[\w.-]+", requirement)[0].replace("-", "_") == module


def test_requirements_txt_holds_everything_pyproject_declares():
    """scripts/setup.sh installs requirements.txt: the runtime, the dev tools and every optional extra."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    project = pyproject()
    declared = project["dependencies"] + [r for reqs in project["optional-dependencies"].values() for r in reqs]
    assert set(declared) <= set(filter(None, lines))


def _run_setup_cell(source: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", source], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


def test_setup_cell_installs_nothing_when_the_extras_are_there():
    pytest.importorskip("peft", reason='the [peft] extra is not installed: pip install -e ".[peft]"')
    done = _run_setup_cell(setup_cell(ROOT / "notebooks" / "solutions" / "07_improving_lora.ipynb"), dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert not any(line.startswith(("installed", "could not install")) for line in done.stdout.splitlines()), done.stdout
    assert "reference model: found" in done.stdout


def test_setup_cell_says_what_it_could_not_install(tmp_path):
    """An extra whose module is missing and that pip cannot install (no index here): one line names the fix."""
    source = setup_cell(ROOT / "notebooks" / "solutions" / "07_improving_lora.ipynb")
    source = source.replace('"peft": {"peft": "peft>=0.13"}', '"peft": {"no_such_module_xyz": "no-such-package-xyz"}')
    assert "no_such_module_xyz" in source
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path), "PIP_CONFIG_FILE": os.devnull}
    done = _run_setup_cell(source, env)
    assert done.returncode == 0, done.stderr
    assert ('could not install no-such-package-xyz: run pip install -e ".[peft]" in the course folder, '
            "or bash scripts/setup.sh") in done.stdout.splitlines(), done.stdout
    assert "reference model: found" in done.stdout


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_the_pinned_commit_has_this_package_and_these_results():
    ref = constant(setup_cell(SOLUTIONS[0]), "COURSE_REF")
    assert re.fullmatch(r"[0-9a-f]{40}", ref), f"COURSE_REF {ref!r} is not a full commit hash"
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    if _git("cat-file", "-e", f"{ref}^{{commit}}").returncode != 0:
        pytest.fail(f"COURSE_REF {ref} is not a commit of this repository; run python scripts/pin_notebooks.py")
    diff = _git("diff", "--stat", ref, "HEAD", "--", "gpt", "pyproject.toml", "requirements.txt", "results", "bench/results")
    assert diff.stdout == "", (
        f"the notebooks install commit {ref[:10]}, but the package or results changed since:\n{diff.stdout}"
        "commit, then run python scripts/pin_notebooks.py and commit the notebooks (solved and handouts)")


def test_report_finds_the_reference_model_and_results():
    lines = []
    found = report(print_fn=lines.append)
    assert found["reference model"] and found["results"]
    assert lines[1].startswith("reference model: found") and lines[2].startswith("committed results: found")
    assert lines[3].startswith("GPU found") or lines[3].startswith("no GPU found")


@pytest.mark.slow
def test_setup_cell_installs_the_course_in_a_fresh_environment(tmp_path):
    """A fresh venv (torch preinstalled from the local wheel, as Colab has it) runs the setup cell."""
    wheels = sorted(Path("/opt/wheels").glob("torch-*.whl"))
    if not wheels:
        pytest.skip("no local torch wheel in /opt/wheels (installing torch from PyPI would pull the CUDA build)")
    head = _git("rev-parse", "HEAD").stdout.strip()
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheels[-1])], check=True)
    source = setup_cell(SOLUTIONS[4])  # 05: reads the committed results
    source = re.sub(r'^COURSE_REPO = "[^"]*"', f'COURSE_REPO = "file://{ROOT}"', source, flags=re.MULTILINE)
    source = re.sub(r'^COURSE_REF = "[^"]*"', f'COURSE_REF = "{head}"', source, flags=re.MULTILINE)
    check = source + (
        "\nfrom gpt.teaching.reference import load_reference\nfrom gpt.teaching.course import results_dir\nimport pandas as pd\n"
        "model = load_reference()\nprint('reference parameters', sum(p.numel() for p in model.parameters()))\n"
        "print('results rows', len(pd.read_csv(results_dir('finetune', 'results.csv', must_exist=True))))\n")
    work = tmp_path / "content"
    work.mkdir()
    result = subprocess.run([python, "-c", check], cwd=work, capture_output=True, text=True, timeout=3600)  # hang guards
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"at {work / 'gpt-course'}" in out, out
    assert "reference model: found" in out and "committed results: found" in out and "GPU" in out, out
    assert "results rows" in out and "reference parameters" in out, out
    # run again (a restarted runtime): the clone is reused, nothing is reinstalled from scratch
    again = subprocess.run([python, "-c", source], cwd=work, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0 and "reference model: found" in again.stdout, again.stdout + again.stderr
    shutil.rmtree(env_dir)
