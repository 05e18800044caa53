"""gpt.teaching.handouts: the handouts made from the solved notebooks, kept in step, released, pinned.

The generator's rules are tested on a tiny notebook built here; the course's own handouts are checked
statically (no kernel): they equal the generator's output (CI fails when they drift), and in each one
no cell outside an exercise uses what an exercise defines, so a handout runs top to bottom and a
blank exercise fails only its own test cell. (tests/teaching/test_classroom_course.py executes the
released handouts, which are these, under nbgrader.)
"""

import copy
import json

import pandas as pd
import pytest

from gpt.cli import main
from gpt.teaching import handouts
from gpt.teaching.classroom import ClassroomError, check_notebook, source_notebooks
from gpt.teaching.handouts import (BANNER, check_ref, check_repo, make_handout, notebook_text, release,
                                   set_setup_constants, write_handouts)

PIN = "0123456789abcdef0123456789abcdef01234567"
BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         f"(https://colab.research.google.com/github/gpt-course/gpt-from-scratch/blob/{PIN}/notebooks/solutions/01_toy.ipynb)")
SETUP = f'COURSE_REPO = "https://github.com/gpt-course/gpt-from-scratch"\nCOURSE_REF = "{PIN}"  # pinned\nx = 1'


def code(source, outputs=(), count=1, nbgrader=None):
    return {"cell_type": "code", "execution_count": count, "id": "", "metadata": {"nbgrader": nbgrader} if nbgrader else {},
            "outputs": list(outputs), "source": source}


def markdown(source):
    return {"cell_type": "markdown", "id": "", "metadata": {}, "source": source}


def printed(text):
    return {"name": "stdout", "output_type": "stream", "text": [text]}


def solution_meta(k):
    return {"grade": False, "grade_id": f"ex01_{k}", "locked": False, "schema_version": 3, "solution": True, "task": False}


def grade_meta(k, points):
    return {"grade": True, "grade_id": f"ex01_{k}_test", "locked": True, "points": points, "schema_version": 3,
            "solution": False, "task": False}


def toy():
    """Two exercises: one region inside a def, one at the top level of its cell; outputs everywhere."""
    cells = [
        markdown(f"# 01 · Toy\n\n{BADGE}\n\nSome text."),
        code(SETUP, [printed("set up\n")]),
        markdown("### Exercise 01.1 · add (1 point)"),
        code("def add(a, b):\n    \"\"\"a + b\"\"\"\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
             nbgrader=solution_meta(1)),
        code("assert add(1, 2) == 3\nprint('ok')\n### BEGIN HIDDEN TESTS\ndef probe():\n    return add(-1, 1)\n"
             "def check(got):\n    assert got == 0, 'add(-1, 1) is 0'\nFORBIDDEN = ['sum']\ncheck(probe())\n### END HIDDEN TESTS",
             [printed("ok\n")], nbgrader=grade_meta(1, 1)),
        markdown("### Exercise 01.2 · table (2 points)"),
        code("### BEGIN SOLUTION\nTABLE = {1: 2}\n### END SOLUTION", nbgrader=solution_meta(2)),
        code("assert TABLE[1] == 2\n### BEGIN HIDDEN TESTS\nassert len(TABLE) == 1\n### END HIDDEN TESTS",
             nbgrader=grade_meta(2, 2)),
        code("print('the end', x)", [printed("the end 1\n")], count=7),
    ]
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i}"
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def source(cell):
    return "".join(cell["source"])


def write(nb, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(notebook_text(nb), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the generator


def test_make_handout_blanks_the_solutions_and_removes_the_hidden_tests():
    solved = toy()
    before = copy.deepcopy(solved)
    cells = make_handout(solved, "01_toy.ipynb")["cells"]
    assert solved == before  # the solved notebook is not changed
    assert source(cells[3]) == 'def add(a, b):\n    """a + b"""\n    # YOUR CODE HERE\n    raise NotImplementedError()'
    assert source(cells[6]) == "# YOUR CODE HERE\nraise NotImplementedError()"
    assert source(cells[4]) == "assert add(1, 2) == 3\nprint('ok')"  # probe, check, FORBIDDEN: all gone
    assert source(cells[7]) == "assert TABLE[1] == 2"
    for i in (3, 4, 6, 7):  # the exercises' cells: no outputs; nbgrader's metadata as it was
        assert cells[i]["outputs"] == [] and cells[i]["execution_count"] is None
        assert cells[i]["metadata"] == solved["cells"][i]["metadata"]
    for i in (1, 8):  # every other cell keeps its committed outputs
        assert cells[i]["outputs"] == solved["cells"][i]["outputs"] and cells[i]["execution_count"] is not None
        assert cells[i]["source"] == solved["cells"][i]["source"]


def test_make_handout_puts_the_note_under_the_badge():
    text = source(make_handout(toy())["cells"][0])
    assert text == f"# 01 · Toy\n\n{BADGE}\n\n{BANNER}\n\nSome text."
    assert "hidden tests" in BANNER and "must be inside its solution cell" in BANNER


def test_make_handout_is_deterministic():
    texts = {notebook_text(make_handout(toy())) for _ in range(3)}
    assert len(texts) == 1
    assert json.loads(texts.pop())["cells"][3]["metadata"]["nbgrader"]["grade_id"] == "ex01_1"


@pytest.mark.parametrize("text, message", [
    ("### BEGIN SOLUTION\nx = 1", "has no END line"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION", "inside the ### BEGIN SOLUTION"),
    ("x = 1\n### END SOLUTION", "without its BEGIN line"),
    ("### BEGIN SOLUTION\nx = 1\n### END HIDDEN TESTS", "without its BEGIN line"),
    ("### BEGIN SOLUTION  (write it here)\nx = 1\n### END SOLUTION", "alone on its line"),
])
def test_make_handout_refuses_a_region_it_could_not_remove_whole(text, message):
    nb = toy()
    nb["cells"][6]["source"] = text
    with pytest.raises(ClassroomError, match=rf"01_toy.ipynb cell 6: .*{message}"):
        make_handout(nb, "01_toy.ipynb")


def test_handouts_check_names_the_drifted_ones_and_regenerating_fixes_them(tmp_path, capsys):
    solved, out = tmp_path / "solutions", tmp_path / "handouts"
    write(toy(), solved / "01_toy.ipynb")
    args = ["classroom", "handouts", "--source", str(solved), "--out", str(out)]
    assert main([*args, "--check"]) == 1 and "01_toy.ipynb is missing" in capsys.readouterr().out
    assert not out.exists() or not any(out.iterdir())  # --check writes nothing
    out.mkdir(exist_ok=True)
    assert main(args) == 0
    assert (out / "01_toy.ipynb").read_text(encoding="utf-8") == notebook_text(make_handout(toy()))
    assert main([*args, "--check"]) == 0 and "every handout matches" in capsys.readouterr().out
    changed = toy()
    changed["cells"][8]["source"] = "print('a new ending', x)"
    write(changed, solved / "01_toy.ipynb")
    write(toy(), out / "09_gone.ipynb")
    assert main([*args, "--check"]) == 1
    printed = capsys.readouterr().out
    assert "01_toy.ipynb differs from its solved notebook" in printed and "09_gone.ipynb has no solved notebook" in printed
    write(toy(), solved / "02_other.ipynb")
    assert main(["classroom", "handouts", "--source", str(solved / "02_other.ipynb"), "--out", str(out)]) == 0
    assert (out / "09_gone.ipynb").exists()  # one solved notebook given: the other handouts are left alone
    assert main(args) == 0 and not (out / "09_gone.ipynb").exists()
    assert write_handouts(solved, out, check=True) == []
    assert sorted(p.name for p in out.iterdir()) == ["01_toy.ipynb", "02_other.ipynb"]


# ---------------------------------------------------------------- the course's handouts


def test_the_committed_handouts_are_the_generators_output():
    """CI fails when a solved notebook changed and its handout was not regenerated."""
    assert write_handouts(check=True) == [], "run python -m gpt classroom handouts, then commit notebooks/"


def _by_grade_id(nb):
    return {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader")}


@pytest.mark.parametrize("solved", source_notebooks(), ids=lambda p: p.stem)
def test_each_handout_runs_top_to_bottom(solved, tmp_path):
    """Outside the exercises no cell of the handout uses a name an exercise (as solved) defines: those names
    are missing or raise NotImplementedError in a handout. check_notebook enforces that rule; it runs here
    on the handout's own cells with each exercise cell put back as solved, so it sees what each defines."""
    handout = json.loads((handouts.handouts_dir() / solved.name).read_text(encoding="utf-8"))
    exercises = _by_grade_id(json.loads(solved.read_text(encoding="utf-8")))
    assert set(_by_grade_id(handout)) == set(exercises)
    for cell in handout["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell["cell_type"] != "code" or not gid:
            continue
        text = source(cell)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and not cell["outputs"], gid
        if not gid.endswith("_test"):
            assert "raise NotImplementedError()" in text, gid
    hybrid = copy.deepcopy(handout)
    hybrid["cells"] = [exercises.get(c.get("metadata", {}).get("nbgrader", {}).get("grade_id"), c) for c in hybrid["cells"]]
    assert check_notebook(write(hybrid, tmp_path / solved.name))  # raises ClassroomError naming any such cell


# ---------------------------------------------------------------- release, repositories and refs


def test_release_writes_the_committed_handouts_without_nbgrader(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nbgrader(name, *args, **kwargs):
        if name.split(".")[0] == "nbgrader":
            raise ImportError("no nbgrader")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nbgrader)
    paths = release(tmp_path / "out")
    assert [p.name for p in paths] == [p.name for p in source_notebooks()]
    for path in paths:
        assert path.read_bytes() == (handouts.handouts_dir() / path.name).read_bytes(), path.name
    table = pd.read_csv(tmp_path / "out" / "exercises.csv", dtype=str)
    assert list(table.columns) == ["notebook", "exercise", "title", "points"] and len(table) >= 8 * 3


def test_release_points_the_setup_cells_and_the_badges_at_repo_and_ref(tmp_path):
    solved = write(toy(), tmp_path / "solutions" / "01_toy.ipynb")
    (path,) = release(tmp_path / "out", solved, repo="https://github.com/My-Org/my.course.git", ref="v2027-spring")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert source_of_setup(cells) == ('COURSE_REPO = "https://github.com/My-Org/my.course"\n'
                                      'COURSE_REF = "v2027-spring"  # pinned\nx = 1')
    assert ("(https://colab.research.google.com/github/My-Org/my.course/blob/v2027-spring/notebooks/01_toy.ipynb)"
            in source(cells[0]))
    (path,) = release(tmp_path / "only-ref", solved, ref="release/2027")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert 'COURSE_REPO = "https://github.com/gpt-course/gpt-from-scratch"' in source_of_setup(cells)
    assert "github/gpt-course/gpt-from-scratch/blob/release/2027/notebooks/01_toy.ipynb)" in source(cells[0])


def source_of_setup(cells):
    return source(next(c for c in cells if c["cell_type"] == "code"))


@pytest.mark.parametrize("option, value", [
    ("ref", 'v1"; print("injected") #'), ("ref", "-q --upload-pack=touch"), ("ref", "a..b"), ("ref", "v1 v2"),
    ("ref", "main.lock"), ("ref", "tag\n"), ("repo", 'org/re"po'), ("repo", "org"), ("repo", "https://gitlab.com/o/r"),
    ("repo", "-org/repo"), ("repo", "org/repo/extra"), ("repo", "org/.."),
])
def test_release_refuses_a_repo_or_ref_that_is_not_one_and_writes_nothing(tmp_path, option, value):
    solved = write(toy(), tmp_path / "solutions" / "01_toy.ipynb")
    with pytest.raises(ClassroomError, match=f"--{option} .* is not a"):
        release(tmp_path / "out", solved, **{option: value})
    assert not (tmp_path / "out").exists()
    assert main(["classroom", "release", str(tmp_path / "out"), "--source", str(solved), f"--{option}={value}"]) == 2


def test_repo_and_ref_forms_that_are_accepted():
    assert check_repo("gpt-course/gpt-from-scratch") == check_repo("https://github.com/gpt-course/gpt-from-scratch.git")
    assert check_repo("a/b_c.d-e") == "a/b_c.d-e"
    for ref in ("main", "v1.2.3", "release/2027-spring", PIN, "feature+x"):
        assert check_ref(ref) == ref


def test_set_setup_constants_pins_the_setup_cell_and_the_badges_only(tmp_path):
    path = write(toy(), tmp_path / "01_toy.ipynb")
    assert set_setup_constants(path, ref="def456") is True
    assert set_setup_constants(path, ref="def456") is False  # already pinned: the file is not rewritten
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert source(nb["cells"][1]) == SETUP.replace(PIN, "def456")
    assert "/blob/def456/notebooks/01_toy.ipynb)" in source(nb["cells"][0])  # the badge opens the handout
    rest = toy()
    assert [c for i, c in enumerate(nb["cells"]) if i > 1] == rest["cells"][2:]
    bare = toy()
    bare["cells"].pop(1)
    with pytest.raises(ClassroomError, match="not the setup cell"):
        set_setup_constants(write(bare, tmp_path / "01_bare.ipynb"), ref="x")
