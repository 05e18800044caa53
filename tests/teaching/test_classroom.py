"""gpt.teaching.classroom: the exercises' format (handouts and release: test_handouts.py; grading: test_grading.py).

The tests use a tiny two-exercise notebook built here, so they run in seconds; the course's own
notebooks are graded in tests/teaching/test_classroom_course.py. They need only nbformat.
"""

import copy
import json

import pytest

nbformat = pytest.importorskip("nbformat", reason='the tests build notebooks with nbformat: pip install -e ".[dev]"')

from gpt.teaching import classroom  # noqa: E402
from gpt.teaching.classroom import ClassroomError, check_notebook  # noqa: E402

SETUP = 'COURSE_REPO = "https://example.org/course"\nCOURSE_REF = "abc123"\nx = 1'


def exercise_cells(k, title, points, solution, visible, hidden, number="01"):
    heading = nbformat.v4.new_markdown_cell(
        f"### Exercise {number}.{k} · {title} ({points} point{'s' if points > 1 else ''})\nWrite it.")
    sol = nbformat.v4.new_code_cell(solution)
    sol.metadata["nbgrader"] = {"grade": False, "grade_id": f"ex{number}_{k}", "locked": False,
                                "schema_version": 3, "solution": True, "task": False}
    test = nbformat.v4.new_code_cell(f"{visible}\n### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS")
    test.metadata["nbgrader"] = {"grade": True, "grade_id": f"ex{number}_{k}_test", "locked": True, "points": points,
                                 "schema_version": 3, "solution": False, "task": False}
    return [heading, sol, test]


def toy_notebook():
    cells = [nbformat.v4.new_markdown_cell("# Toy"), nbformat.v4.new_code_cell(SETUP)]
    cells += exercise_cells(1, "add", 1, "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
                            "assert add(1, 2) == 3", "assert add(-1, 1) == 0")
    cells += exercise_cells(2, "double", 2, "def double(a):\n    ### BEGIN SOLUTION\n    return 2 * a\n    ### END SOLUTION",
                            "assert double(2) == 4", "assert double(-3) == -6")
    cells.append(nbformat.v4.new_code_cell("print('the end', x)"))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def write(nb, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


def set_cell(nb, grade_id, text):
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)
    cell["source"] = text
    return nb


# ---------------------------------------------------------------- the format


def test_check_notebook_lists_the_exercises(tmp_path):
    exercises = check_notebook(write(toy_notebook(), tmp_path / "01_toy.ipynb"))
    assert [(e.id, e.title, e.points, e.solution_id, e.test_id) for e in exercises] == [
        ("01.1", "add", 1, "ex01_1", "ex01_1_test"), ("01.2", "double", 2, "ex01_2", "ex01_2_test")]


@pytest.mark.parametrize("change, message", [
    (lambda nb: nb.cells[3].update(source="def add(a, b):\n    return a + b"), "BEGIN SOLUTION"),
    (lambda nb: nb.cells[4].update(source="assert add(1, 2) == 3"), "HIDDEN TESTS"),
    (lambda nb: nb.cells[4].metadata["nbgrader"].update(points=2), "heading says 1 points"),
    (lambda nb: nb.cells[4].metadata["nbgrader"].update(points=0), "points > 0"),
    (lambda nb: nb.cells[4].metadata["nbgrader"].update(locked=False), "must be locked"),
    (lambda nb: nb.cells[3].metadata["nbgrader"].update(grade_id="add"), "exNN_k"),
    (lambda nb: nb.cells[4].metadata["nbgrader"].update(grade_id="ex02_1_test"), "belongs in notebook 02"),
    (lambda nb: nb.cells.pop(3), "no solution cell ex01_1"),
    (lambda nb: nb.cells[4].update(source=nb.cells[4].source + "\n0.5"), "partial score"),
    (lambda nb: nb.cells.pop(2), "no markdown heading"),
])
def test_check_notebook_names_each_problem(tmp_path, change, message):
    nb = toy_notebook()
    change(nb)
    with pytest.raises(ClassroomError, match=message):
        check_notebook(write(nb, tmp_path / "01_toy.ipynb"))


def test_check_notebook_refuses_cells_that_use_a_solution(tmp_path):
    """Only an exercise's own test cell may use its solution: elsewhere the stub would raise."""
    nb = toy_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("print(add(2, 2))"))
    with pytest.raises(ClassroomError, match=r"cell 9 \(not an exercise\) uses 'add'.*only ex01_1_test"):
        check_notebook(write(nb, tmp_path / "01_toy.ipynb"))
    nb = toy_notebook()
    nb.cells[7].source = "assert double(2) == add(2, 2)\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS"
    with pytest.raises(ClassroomError, match=r"\(ex01_2_test\) uses 'add'"):
        check_notebook(write(nb, tmp_path / "01_toy.ipynb"))


def test_check_notebook_allows_locals_and_names_rebound_by_the_notebook(tmp_path):
    nb = toy_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(
        "def f(add):\n    return add + 1\n"
        "squares = [double * double for double in range(3)]\n"
        "from operator import add\nprint(add(1, 2), f(1), squares)"))
    assert len(check_notebook(write(nb, tmp_path / "01_toy.ipynb"))) == 2


def test_source_notebooks_refuses_a_folder_without_chapters(tmp_path):
    with pytest.raises(ClassroomError, match="no chapter notebooks"):
        classroom.source_notebooks(tmp_path)


def test_the_course_notebooks_each_have_three_to_five_exercises():
    paths = classroom.source_notebooks()
    assert [p.name[:2] for p in paths] == ["01", "02", "03", "04", "05", "06", "07", "08"]
    for path in paths:
        exercises = check_notebook(path)
        assert 3 <= len(exercises) <= 5, f"{path.name} has {len(exercises)} exercises"
        assert [e.id for e in exercises] == [f"{path.name[:2]}.{k}" for k in range(1, len(exercises) + 1)]
