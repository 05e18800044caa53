"""Classroom: the notebooks' graded exercises and their format.

Every notebook holds 3-5 exercises in nbgrader's format. Exercise NN.k is three cells:

* a markdown cell headed ``### Exercise NN.k · title (P points)``;
* a solution cell (nbgrader ``solution``, grade id ``exNN_k``) that only defines things; the learner's
  part lies between ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
* a graded test cell (nbgrader ``grade``, grade id ``exNN_k_test``, ``points`` P) with visible asserts
  and, between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, ``FORBIDDEN``, ``probe()`` and
  ``check(got)`` (:mod:`gpt.teaching.grading`).

:func:`check_notebook` enforces that format on the solved notebooks (``notebooks/solutions/``, the
default of :func:`source_notebooks`); :func:`parse_cell`, :func:`binds` and :func:`uses` are the name
analysis it uses (which cell defines and reads which names), shared with the grader. The handouts a
learner opens, and ``classroom release``, are made from the solved notebooks by
:mod:`gpt.teaching.handouts`; :mod:`gpt.teaching.grading` grades submissions (probe in a sandbox,
check in a clean process). Neither needs nbgrader; its cell metadata is kept so that nbgrader and
JupyterHub workflows still work.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import GPTError
from .course import course_root


# The region markers nbgrader's format uses (the handouts, the format check and the grader all read these).
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
HEADING = re.compile(r"^###\s+Exercise\s+(\d\d)\.(\d+)\s+·\s+(.+?)\s+\((\d+)\s+points?\)\s*$", re.MULTILINE)
SOLUTION_ID = re.compile(r"^ex(\d\d)_(\d+)$")
TEST_ID = re.compile(r"^ex(\d\d)_(\d+)_test$")
NOTEBOOK_NAME = re.compile(r"^\d\d_\w+\.ipynb$")


class ClassroomError(GPTError, ValueError):
    """A notebook whose exercises break the format, a bad --repo/--ref, a missing nbgrader, or a submissions folder that cannot be graded."""


@dataclass(frozen=True)
class Exercise:
    notebook: str  # the notebook's stem, which is also its nbgrader assignment and notebook id
    id: str  # "02.1"
    title: str
    points: int
    solution_id: str  # "ex02_1"
    test_id: str  # "ex02_1_test"


# ---------------------------------------------------------------- the exercises' format


def source_notebooks(source: str | os.PathLike | None = None) -> list[Path]:
    """The chapter notebooks (``NN_name.ipynb``) of ``source`` (default: the course's solved notebooks,
    ``notebooks/solutions/``)."""
    folder = Path(source) if source else course_root() / "notebooks" / "solutions"
    if folder.is_file():
        return [folder]
    paths = sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))
    if not paths:
        raise ClassroomError(f"{folder} holds no chapter notebooks (NN_name.ipynb); give the course's notebooks/solutions/ folder")
    return paths


def read_notebook(path: Path) -> dict:
    """A notebook's JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClassroomError(f"{path} is not a readable notebook ({e})") from e


def cell_source(cell: dict) -> str:
    """A cell's text (nbformat stores it as one string or a list of lines)."""
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def runnable_code(text: str) -> str:
    """A cell's code with its ``%`` magics and ``!`` shell lines made ``pass`` (same indentation): plain Python."""
    lines = [line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
             for line in text.splitlines()]
    return "\n".join(lines)


def parse_cell(text: str) -> ast.Module | None:
    """A code cell's syntax tree (:func:`runnable_code` of it); None if it is not Python."""
    try:
        return ast.parse(runnable_code(text))
    except SyntaxError:
        return None


def binds(tree: ast.Module) -> set[str]:
    """The names a cell binds at its top level (definitions, imports, assignments, loop targets)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        else:
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def uses(node: ast.AST) -> set[str]:
    """The free names a cell reads: a function's arguments and locals, a comprehension's targets are not."""
    inner = set().union(*(uses(child) for child in ast.iter_child_nodes(node)))
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Load) else set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        local = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        local |= {n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n is not node}
        return inner - local
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return inner - {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
    return inner


def _dependency_problems(path: Path, cells: list[dict]) -> list[str]:
    """Cells that use what an exercise's solution or test cell binds, other than that exercise's own test cell.

    In a student's notebook those names are missing or raise NotImplementedError, so such a cell
    would fail there, and solving one exercise would not be enough to score it.
    """
    problems, owner = [], {}  # name -> the exercise ("ex02_1") whose solution or test cell binds it
    for i, cell in enumerate(cells):
        tree = parse_cell(cell_source(cell)) if cell["cell_type"] == "code" else None
        if tree is None:
            continue
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        exercise = gid.removesuffix("_test") if (SOLUTION_ID.match(gid) or TEST_ID.match(gid)) else ""
        bound = binds(tree)
        for name in sorted(uses(tree) - bound):
            if name in owner and owner[name] != exercise:
                problems.append(f"{path.name} cell {i} ({gid or 'not an exercise'}) uses {name!r}, which exercise "
                                f"{owner[name]} defines: only {owner[name]}_test may use it (use the package's version)")
        for name in bound:
            if exercise:
                owner[name] = exercise
            else:
                owner.pop(name, None)  # rebound by an ordinary cell: later uses mean the new value
    return problems


def check_notebook(path: str | os.PathLike) -> list[Exercise]:
    """The exercises of one notebook, after checking every rule of the format (one message per problem)."""
    path = Path(path)
    cells = read_notebook(path).get("cells", [])
    problems, exercises, solutions, headings = [], [], {}, {}
    number = path.name[:2]
    for i, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        text = cell_source(cell)
        if cell["cell_type"] == "markdown":
            for m in HEADING.finditer(text):
                headings[f"{m[1]}.{m[2]}"] = (m[3], int(m[4]))
            continue
        if not meta:
            continue
        gid = meta.get("grade_id", "")
        where = f"{path.name} cell {i} ({gid or 'no grade_id'})"
        if meta.get("solution") and not meta.get("grade"):
            if not SOLUTION_ID.match(gid):
                problems.append(f"{where}: a solution cell's grade_id must be exNN_k")
            if BEGIN_SOLUTION not in text or END_SOLUTION not in text:
                problems.append(f"{where}: the solution cell has no {BEGIN_SOLUTION} / {END_SOLUTION} region")
            solutions[gid] = i
        elif meta.get("grade") and not meta.get("solution"):
            m = TEST_ID.match(gid)
            if not m:
                problems.append(f"{where}: a graded test cell's grade_id must be exNN_k_test")
                continue
            if BEGIN_HIDDEN not in text or END_HIDDEN not in text:
                problems.append(f"{where}: the test cell has no {BEGIN_HIDDEN} / {END_HIDDEN} region")
            if not meta.get("locked"):
                problems.append(f"{where}: a graded test cell must be locked")
            ex_id, points = f"{m[1]}.{m[2]}", meta.get("points")
            if m[1] != number:
                problems.append(f"{where}: exercise {ex_id} belongs in notebook {m[1]}, not {number}")
            if not isinstance(points, (int, float)) or points <= 0:
                problems.append(f"{where}: a graded test cell needs points > 0")
                continue
            title, heading_points = headings.get(ex_id, (None, None))
            if title is None:
                problems.append(f"{where}: no markdown heading '### Exercise {ex_id} · title ({points} points)' before it")
            elif heading_points != points:
                problems.append(f"{where}: the heading says {heading_points} points, the cell's metadata {points}")
            tree = parse_cell(text)
            if tree and tree.body and isinstance(tree.body[-1], ast.Expr) and not isinstance(tree.body[-1].value, ast.Call):
                problems.append(f"{where}: the test cell ends with a bare expression; nbgrader reads a number shown "
                                "there as a partial score, so print it instead")
            sid = f"ex{m[1]}_{m[2]}"
            if sid not in solutions:
                problems.append(f"{where}: no solution cell {sid} before it")
            exercises.append(Exercise(path.stem, ex_id, title or "", int(points), sid, gid))
        else:
            problems.append(f"{where}: nbgrader cells here are solution cells or graded test cells, not both or neither")
    problems += _dependency_problems(path, cells)
    ids = [e.id for e in exercises]
    if len(set(ids)) != len(ids):
        problems.append(f"{path.name}: an exercise id is used twice ({ids})")
    if problems:
        raise ClassroomError("; ".join(problems))
    return exercises


def exercises_table(exercises: list[Exercise]) -> pd.DataFrame:
    return pd.DataFrame([{"notebook": e.notebook, "exercise": e.id, "title": e.title, "points": e.points}
                         for e in exercises])


