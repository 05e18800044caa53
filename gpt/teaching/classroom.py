"""Classroom: the notebooks' graded exercises, their format, and autograding with nbgrader.

Every notebook holds 3-5 exercises in nbgrader's format. Exercise NN.k is three cells:

* a markdown cell headed ``### Exercise NN.k · title (P points)``;
* a solution cell (nbgrader ``solution``, grade id ``exNN_k``) that only defines things; the learner's
  part lies between ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
* a graded test cell (nbgrader ``grade``, grade id ``exNN_k_test``, ``points`` P) with visible asserts
  and, between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, the asserts that grade.

:func:`check_notebook` enforces that format on the solved notebooks (``notebooks/solutions/``, the
default of :func:`source_notebooks`). The handouts a learner opens, and ``classroom release``, are
made from them by :mod:`gpt.teaching.handouts` (no nbgrader needed). :func:`grade` autogrades a folder
of submissions (one subfolder per student) with nbgrader's ``autograde``: each notebook runs in its
own process with a time limit, so a submission that crashes, loops or is not a notebook gets zero
points with the reason, and the other students are still graded. The table (students x exercises)
is printed and written as CSV.

nbgrader is the optional extra ``[classroom]``: ``pip install -e ".[classroom]"``. It runs in a child
process of this Python (``sys.executable -m nbgrader``) with this environment's programs first on PATH
(:mod:`gpt.runtime.tools`), so ``/path/to/venv/bin/python -m gpt classroom ...`` works without activating the
venv; when nbgrader fails, the error ends with the last lines of its output (its traceback).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import GPTError
from ..io.files import atomic_dir, atomic_write_text, check_output
from ..runtime.tools import ToolError, find_tool, output_tail, run_tool
from .course import course_root


HEADING = re.compile(r"^###\s+Exercise\s+(\d\d)\.(\d+)\s+·\s+(.+?)\s+\((\d+)\s+points?\)\s*$", re.MULTILINE)
SOLUTION_ID = re.compile(r"^ex(\d\d)_(\d+)$")
TEST_ID = re.compile(r"^ex(\d\d)_(\d+)_test$")
NOTEBOOK_NAME = re.compile(r"^\d\d_\w+\.ipynb$")
DEFAULT_CELL_TIMEOUT = 300
DEFAULT_NOTEBOOK_TIMEOUT = 1800
KERNEL_STARTUP_TIMEOUT = 600  # seconds a notebook's kernel may take to start (nbclient's default, 60, is short on a busy machine)
INSTALL = 'pip install -e ".[classroom]"'


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


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClassroomError(f"{path} is not a readable notebook ({e})") from e


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _parse(text: str) -> ast.Module | None:
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in text.splitlines())
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def _binds(tree: ast.Module) -> set[str]:
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


def _uses(node: ast.AST) -> set[str]:
    """The free names a cell reads: a function's arguments and locals, a comprehension's targets are not."""
    inner = set().union(*(_uses(child) for child in ast.iter_child_nodes(node)))
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
        tree = _parse(_source(cell)) if cell["cell_type"] == "code" else None
        if tree is None:
            continue
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        exercise = gid.removesuffix("_test") if (SOLUTION_ID.match(gid) or TEST_ID.match(gid)) else ""
        bound = _binds(tree)
        for name in sorted(_uses(tree) - bound):
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
    cells = _read(path).get("cells", [])
    problems, exercises, solutions, headings = [], [], {}, {}
    number = path.name[:2]
    for i, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        text = _source(cell)
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
            if "### BEGIN SOLUTION" not in text or "### END SOLUTION" not in text:
                problems.append(f"{where}: the solution cell has no ### BEGIN SOLUTION / ### END SOLUTION region")
            solutions[gid] = i
        elif meta.get("grade") and not meta.get("solution"):
            m = TEST_ID.match(gid)
            if not m:
                problems.append(f"{where}: a graded test cell's grade_id must be exNN_k_test")
                continue
            if "### BEGIN HIDDEN TESTS" not in text or "### END HIDDEN TESTS" not in text:
                problems.append(f"{where}: the test cell has no ### BEGIN HIDDEN TESTS / ### END HIDDEN TESTS region")
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
            tree = _parse(text)
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


# ---------------------------------------------------------------- nbgrader underneath


def _config_file(source_dir: Path) -> Path:
    config = source_dir / "nbgrader_config.py"
    return config if config.is_file() else course_root() / "notebooks" / "nbgrader_config.py"


def _nbgrader(course: Path, *args: str, timeout: float | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one nbgrader command on the course folder with this Python, in its own process group (killed
    whole on timeout), this environment's programs first on PATH (nbgrader starts ``alembic`` by name)."""
    return run_tool([sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"], cwd=course,
                    env=env, timeout=timeout)


def _require_nbgrader() -> None:
    try:
        import nbgrader  # noqa: F401
    except ImportError as e:
        raise ClassroomError(f"grading (classroom grade) needs nbgrader: {INSTALL}") from e
    try:
        find_tool("alembic", INSTALL)  # nbgrader runs it by name to create its gradebook
    except ToolError as e:
        raise ClassroomError(f"nbgrader needs the alembic command: {e}") from e


def _course_folder(notebooks: list[Path], parent: Path) -> Path:
    """A temporary nbgrader course: source/<stem>/<stem>.ipynb per notebook, the config, a fresh gradebook."""
    course = Path(tempfile.mkdtemp(prefix="gpt-classroom-", dir=parent)).resolve()
    shutil.copy(_config_file(notebooks[0].parent), course / "nbgrader_config.py")
    for nb in notebooks:
        (course / "source" / nb.stem).mkdir(parents=True)
        shutil.copy(nb, course / "source" / nb.stem / nb.name)
    result = _nbgrader(course, "generate_assignment", "*", "--force")  # every assignment, in one process
    missing = [nb.name for nb in notebooks if not (course / "release" / nb.stem / nb.name).is_file()]
    if result.returncode != 0 or missing:
        raise ClassroomError(f"nbgrader generate_assignment failed on {', '.join(missing) or 'the notebooks'} "
                             f"(exit status {result.returncode}); the end of its output:\n{output_tail(result.stdout)}")
    return course


def exercises_table(exercises: list[Exercise]) -> pd.DataFrame:
    return pd.DataFrame([{"notebook": e.notebook, "exercise": e.id, "title": e.title, "points": e.points}
                         for e in exercises])


# ---------------------------------------------------------------- grading


def _student_folders(submissions: Path) -> list[Path]:
    if not submissions.is_dir():
        raise ClassroomError(f"{submissions} is not a folder; give a folder with one subfolder per student")
    students = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise ClassroomError(f"{submissions} has no student subfolders (expected {submissions}/<student>/<NN_name>.ipynb)")
    return students


def _find_submission(student: Path, name: str) -> tuple[Path | None, str]:
    found = sorted(p for p in student.rglob(name) if not any(part.startswith(".") for part in p.relative_to(student).parts))
    if not found:
        return None, "not submitted"
    if len(found) > 1:
        return None, f"{len(found)} files named {name}; keep one"
    return found[0], ""


def _not_a_notebook(path: Path) -> str:
    """Why ``path`` is not a notebook nbgrader can run ('' when it is one)."""
    import nbformat  # here, not at the top: it takes a second to import, and only grading needs it

    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # anything: binary junk, JSON that is not a notebook, an invalid schema
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"not a notebook ({first[:120]})"
    return ""


def _error_reason(cell: dict) -> str:
    """Why nbgrader gave a test cell no points: its error, or text on stderr (which nbgrader also scores 0)."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            ename, evalue = output.get("ename", "error"), str(output.get("evalue", "")).strip()
            if ename == "NotImplementedError":
                return "not answered (NotImplementedError)"
            if ename in ("CellTimeoutError", "KeyboardInterrupt"):  # nbgrader interrupts a cell past its time limit
                return "timed out (a cell ran past the time limit and was interrupted)"
            return f"{ename}: {evalue.splitlines()[0][:160]}" if evalue else ename
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = "".join(output.get("text", "")).strip()
            return f"wrote to stderr, which nbgrader scores as a failure: {text.splitlines()[0][:120] if text else ''}"
    return ""


def _cell_reasons(autograded: Path) -> dict[str, str]:
    """grade_id -> the error a cell of the autograded notebook ended with."""
    reasons = {}
    for cell in _read(autograded).get("cells", []):
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid and cell["cell_type"] == "code":
            reasons[gid] = _error_reason(cell)
    return reasons


def _scores(course: Path, notebook: str, student_id: str) -> dict[str, float]:
    from nbgrader.api import Gradebook, MissingEntry  # here, not at the top: an optional extra ([classroom])

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        try:
            submission = gb.find_submission_notebook(notebook, notebook, student_id)
        except MissingEntry:
            return {}
        return {g.name: float(g.score) for g in submission.grades}


def _failure_reason(result: subprocess.CompletedProcess | None, timeout: float) -> str:
    if result is None:
        return f"timed out (the notebook ran past {timeout:.0f} s)"
    log = result.stdout
    if "DeadKernelError" in log or "Kernel died" in log:
        return "crashed (the kernel died)"
    for line in reversed(log.strip().splitlines()):
        if "error" in line.lower():
            return f"not graded ({line.strip()[:160]})"
    return f"not graded (nbgrader exited with status {result.returncode})"


def _collect(course: Path, exercises: list[Exercise], student_id: str) -> list[tuple[float, str]] | None:
    """(points, reason) per exercise from an autograded submission, or None if nbgrader did not grade it."""
    nb = exercises[0].notebook
    autograded = course / "autograded" / student_id / nb / f"{nb}.ipynb"
    scores = _scores(course, nb, student_id) if autograded.is_file() else {}
    if not scores:
        return None
    reasons = _cell_reasons(autograded)
    rows = []
    for e in exercises:
        score = scores.get(e.test_id, 0.0)
        why = "" if score >= e.points else (reasons.get(e.test_id) or "wrong output")
        if why and reasons.get(e.solution_id):
            why = f"solution cell: {reasons[e.solution_id]}"
        rows.append((score, why))
    return rows


def _grade_notebook(course: Path, exercises: list[Exercise], submitted: dict[str, Path], env: dict,
                    cell_timeout: float, notebook_timeout: float) -> dict[str, list[tuple[float, str]]]:
    """Autograde every student's copy of one notebook: all in one nbgrader run, then each failure alone.

    nbgrader goes on to the next student when a submission fails. A submission it could not grade
    (a dead kernel, a hang past the time limit) is graded again on its own, to learn why, and then
    scores zero with that reason.
    """
    nb = exercises[0].notebook
    for student_id, path in submitted.items():
        target = course / "submitted" / student_id / nb / f"{nb}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    args = ["autograde", nb, "--force", f"--Execute.timeout={int(cell_timeout)}",
            f"--Execute.startup_timeout={KERNEL_STARTUP_TIMEOUT}"]
    try:
        _nbgrader(course, *args, timeout=notebook_timeout * len(submitted), env=env)
    except subprocess.TimeoutExpired:
        pass  # the students it did not reach are graded one by one below
    results = {}
    for student_id in submitted:
        rows = _collect(course, exercises, student_id)
        if rows is None:
            try:
                result = _nbgrader(course, *args, f"--student={student_id}", timeout=notebook_timeout, env=env)
            except subprocess.TimeoutExpired:
                result = None
            rows = _collect(course, exercises, student_id) or [(0.0, _failure_reason(result, notebook_timeout))] * len(exercises)
        results[student_id] = rows
    return results


def grade(submissions: str | os.PathLike, source=None, *, out: str | os.PathLike | None = None, overwrite: bool = False,
          profile: str = "ci", cell_timeout: float = DEFAULT_CELL_TIMEOUT,
          notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT, keep: str | os.PathLike | None = None,
          print_fn=print) -> pd.DataFrame:
    """Autograde ``submissions/<student>/<NN_name>.ipynb`` against the source notebooks; returns the table.

    Writes ``out`` (default ``submissions/grades.csv``: one row per student, one column per exercise,
    then total and max) and, beside it, ``<out stem>_details.csv`` (one row per student and exercise,
    with the reason for every lost point). ``profile`` is the GPT_PROFILE the notebooks run in
    (``ci``: every loop shrunk, so a notebook grades in seconds; the tests do not depend on it).
    ``keep``: a folder to receive the executed (autograded) notebooks, ``keep/<student>/<NN_name>.ipynb``,
    to read a student's errors or give feedback.
    """
    submissions = Path(submissions)
    students = _student_folders(submissions)
    _require_nbgrader()
    notebooks = source_notebooks(source)
    by_notebook = {nb.stem: check_notebook(nb) for nb in notebooks}
    by_notebook = {k: v for k, v in by_notebook.items() if v}
    if not by_notebook:
        raise ClassroomError(f"the source notebooks ({notebooks[0].parent}) have no exercises to grade")
    out = Path(out) if out else submissions / "grades.csv"
    details_path = out.with_name(f"{out.stem}_details.csv")
    for path in (out, details_path):
        check_output(path, overwrite=overwrite)
    if keep:
        check_output(keep, kind="dir", overwrite=overwrite)
    env = {**os.environ, "GPT_PROFILE": profile, "GPT_PROGRESS": "text"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpt-grading-") as tmp:
        course = _course_folder([nb for nb in notebooks if nb.stem in by_notebook], Path(tmp))
        ids = {student: re.sub(r"[^A-Za-z0-9_-]", "_", student.name) + f"_{n}" for n, student in enumerate(students)}
        for stem, exercises in by_notebook.items():
            submitted, results = {}, {}
            for student in students:
                path, why = _find_submission(student, f"{stem}.ipynb")
                why = why or _not_a_notebook(path)
                if why:
                    results[ids[student]] = [(0.0, why)] * len(exercises)
                else:
                    submitted[ids[student]] = path
            if submitted:
                start = time.perf_counter()
                results.update(_grade_notebook(course, exercises, submitted, env, cell_timeout, notebook_timeout))
                print_fn(f"graded {stem}: {len(submitted)} submission(s) in {time.perf_counter() - start:.0f} s")
            for student in students:
                rows += [{"student": student.name, "notebook": stem, "exercise": e.id, "title": e.title,
                          "points": score, "max_points": e.points, "reason": reason}
                         for e, (score, reason) in zip(exercises, results[ids[student]])]
        if keep:
            with atomic_dir(keep, overwrite=overwrite) as kept:
                for student in students:
                    for path in (course / "autograded" / ids[student]).glob("*/*.ipynb"):
                        (kept / student.name).mkdir(exist_ok=True)
                        shutil.copy(path, kept / student.name / path.name)
    details = pd.DataFrame(rows)
    table = grades_table(details)
    atomic_write_text(details_path, details.to_csv(index=False))
    atomic_write_text(out, table.to_csv())
    print_fn(table.to_string())
    print_fn(f"wrote {out} and {details_path}")
    return table


def grades_table(details: pd.DataFrame) -> pd.DataFrame:
    """Students x exercises (points), then total and max, from the per-exercise rows."""
    order = list(dict.fromkeys(details["exercise"]))
    table = details.pivot(index="student", columns="exercise", values="points")[order]
    table["total"] = table.sum(axis=1)
    table["max"] = details.drop_duplicates("exercise")["max_points"].sum()
    return table


# ---------------------------------------------------------------- python -m gpt classroom ...


