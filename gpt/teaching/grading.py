"""Grading a class: every student's notebooks scored by the hidden tests, without trusting the student's code.

The hidden region of each test cell in the teacher's source notebooks holds ``FORBIDDEN`` (optional),
``probe()`` and ``check(got)`` (the format: docs/teaching.md). For one student's copy of one notebook,

1. :func:`plan` builds a program from the teacher's notebook and the student's (read as untrusted JSON):
   per exercise, the teacher's ordinary cells it needs (the closure of the names that the solution and
   the probe use), the student's solution cell(s) (every cell with the exercise's grade_id, in order), and
   the probe. The teacher's solutions and ``check`` never enter it.
2. :mod:`gpt.teaching.sandbox` runs it with :mod:`gpt.teaching.probe_runner` in an isolated process that
   sees nothing of the teacher's files; it writes one line of plain data per exercise. A crash or a hang
   costs only the exercise it happened in: the rest run again in a fresh sandbox.
3. Every ``check(got)`` runs in a clean checker process that never shares anything with the student's
   code (one per submission notebook, each check in a fresh namespace). An exercise scores its points
   iff its check passes; otherwise the reason is the failing assert's whole sentence, or what went wrong.

:func:`grade` does this for every student and notebook, ``jobs`` at a time, with a progress bar, and
writes ``grades.csv`` (students x exercises, total, max) and ``grades_details.csv`` (every exercise's
points and whole reason) atomically, only once everything is graded. Ctrl-C or SIGTERM kills every
sandbox, removes the temporary folders and writes nothing.
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..io.downloads import data_dir, fetch
from ..io.files import atomic_dir, atomic_write_text, check_output
from ..runtime.progress import progress_bar
from ..sms import load_splits
from . import probe_runner, sandbox
from .classroom import (BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, ClassroomError, Exercise, binds, cell_source, check_notebook, parse_cell,
                        read_notebook, runnable_code, source_notebooks, uses)
from .course import course_root

DEFAULT_CELL_TIMEOUT = 300  # seconds one exercise (the student's solution cells and the probe) may run
DEFAULT_NOTEBOOK_TIMEOUT = 1800  # seconds one submission notebook may run in all
CHECK_TIMEOUT = 600  # seconds the checks of one notebook may take (the teacher's code; a hang guard only)
MAX_NOTEBOOK_BYTES = 20 * 2**20
SETUP_LINE = re.compile(r"^COURSE_REF = ", re.MULTILINE)
MISSING = "the solution cell is missing: no cell with grade_id {sid} — was its metadata changed?"


@dataclass(frozen=True)
class HiddenTest:
    """What grades one exercise: the teacher's probe and check, and the package names it forbids."""

    exercise: Exercise
    probe: str
    check: str
    forbidden: tuple[str, ...]
    position: int  # the test cell's index in the teacher's notebook
    solution_names: frozenset[str]  # what the teacher's solution cell defines
    solution_uses: frozenset[str]  # the names the teacher's solution and probe read


@dataclass(frozen=True)
class TeacherNotebook:
    path: Path
    tests: tuple[HiddenTest, ...]
    cells: tuple[tuple[int, str], ...]  # (index, code) of the ordinary code cells, magics blanked, setup cell left out


@dataclass
class Options:
    """How :func:`grade` runs the submissions (JSON-able: it is recorded nowhere secret)."""

    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    isolate: bool = True
    profile: str = "ci"

    def __post_init__(self):
        for name in ("cell_timeout", "notebook_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ClassroomError(f"--{name.replace('_', '-')} must be a finite number of seconds > 0, got {value!r}")
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise ClassroomError(f"--jobs must be a whole number >= 1, got {self.jobs!r}")


# ---------------------------------------------------------------- the teacher's notebooks


def _hidden_region(text: str) -> str:
    start, end = text.find(BEGIN_HIDDEN), text.find(END_HIDDEN)
    return text[text.index("\n", start) + 1:end] if 0 <= start < end else ""


def _hidden_test(path: Path, exercise: Exercise, text: str, position: int, solution: str) -> HiddenTest:
    region = _hidden_region(text)
    tree = parse_cell(region)
    where = f"{path.name} {exercise.test_id}"
    if tree is None:
        raise ClassroomError(f"{where}: the hidden region is not valid Python")
    defs = {n.name: ast.get_source_segment(region, n) for n in tree.body if isinstance(n, ast.FunctionDef)}
    missing = [name for name in ("probe", "check") if name not in defs]
    if missing:
        raise ClassroomError(f"{where}: the hidden region defines no {' and no '.join(m + '()' for m in missing)} "
                             "(the grading format: docs/teaching.md)")
    forbidden = ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "FORBIDDEN" for t in node.targets):
            forbidden = tuple(ast.literal_eval(node.value))
    _, unguarded = probe_runner.prepare_guards(forbidden)
    if unguarded:
        raise ClassroomError(f"{where}: FORBIDDEN cannot be guarded: {'; '.join(unguarded.values())}. Fix the hidden "
                             "region (dotted paths importable with importlib, e.g. gpt.lora.merge_lora or "
                             "gpt.lora.LoRALinear.forward)")
    probe_tree = ast.parse(defs["probe"])
    solution_tree = parse_cell(solution) or ast.Module(body=[], type_ignores=[])
    return HiddenTest(exercise, defs["probe"], defs["check"], forbidden, position, frozenset(binds(solution_tree)),
                      frozenset(uses(probe_tree) | uses(solution_tree)))


def teacher_notebook(path: Path) -> TeacherNotebook:
    """The hidden tests and ordinary cells of one source notebook (checked with :func:`check_notebook` first)."""
    exercises = {e.test_id: e for e in check_notebook(path)}
    cells = read_notebook(path).get("cells", [])
    solutions = {}
    tests, ordinary = [], []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        text = cell_source(cell)
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if gid in exercises:
            tests.append(_hidden_test(path, exercises[gid], text, i, solutions.get(exercises[gid].solution_id, "")))
        elif gid:
            solutions[gid] = solutions.get(gid, "") + text + "\n"
        elif not SETUP_LINE.search(text):  # the setup cell installs and reports; the sandbox has the package
            ordinary.append((i, runnable_code(text)))
    return TeacherNotebook(path, tuple(tests), tuple(ordinary))


# ---------------------------------------------------------------- one submission


def _student_cells(path: Path) -> list[tuple[str, str]]:
    """(grade_id, code) of a submission's code cells; raises ValueError when it is not a notebook."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    nb = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("no list of cells")
    cells = []
    for cell in nb["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else str(source)
        meta = cell.get("metadata")
        nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
        gid = nbg.get("grade_id") if isinstance(nbg, dict) else None
        cells.append((gid if isinstance(gid, str) else "", source))
    return cells


def _defines(code: str) -> set[str]:
    try:
        tree = ast.parse(runnable_code(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def _solution(test: HiddenTest, cells: list[tuple[str, str]]) -> tuple[str | None, str]:
    """The student's solution code for an exercise, and a note when it was found without its grade_id."""
    sid = test.exercise.solution_id
    found = [code for gid, code in cells if gid == sid]
    if found:
        return "\n".join(runnable_code(c) for c in found), ""
    fallback = [code for gid, code in cells if BEGIN_SOLUTION in code and test.solution_names & _defines(code)]
    if fallback:
        names = ", ".join(sorted(test.solution_names & set().union(*map(_defines, fallback))))
        return "\n".join(runnable_code(c) for c in fallback), (
            f"no cell has grade_id {sid} (its metadata was changed); graded the solution cell that defines {names}")
    return None, MISSING.format(sid=sid)


def _needed_cells(teacher: TeacherNotebook, test: HiddenTest, solution: str, done: set[int]) -> list[tuple[str, str]]:
    """The ordinary cells before the exercise that the solution and probe need (by name, transitively), not yet run."""
    try:
        student = ast.parse(solution)
        needed = set(test.solution_uses) | uses(student)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        needed = set(test.solution_uses)
    chosen = []
    for i, code in reversed([c for c in teacher.cells if c[0] < test.position]):
        tree = parse_cell(code)
        if tree is not None and binds(tree) & needed:
            chosen.append(i)
            needed |= uses(tree)
    run = [(f"the notebook's cell {i}", code) for i, code in teacher.cells if i in chosen and i not in done]
    done.update(chosen)
    return run


def plan(teacher: TeacherNotebook, cells: list[tuple[str, str]], cell_timeout: float) -> tuple[dict, dict[str, str]]:
    """The sandbox's program for one submission, and the notes (or reasons) per exercise found while planning."""
    program = {"exercises": []}
    notes, done = {}, set()
    for test in teacher.tests:
        solution, note = _solution(test, cells)
        notes[test.exercise.id] = note
        if solution is None:
            continue
        program["exercises"].append({"id": test.exercise.id, "setup": _needed_cells(teacher, test, solution, done),
                                     "solution": solution, "probe": test.probe, "forbidden": list(test.forbidden),
                                     "timeout": cell_timeout})
    return program, notes


def _sandbox_env(options: Options, package: Path) -> dict[str, str]:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": "/scratch", "TMPDIR": "/tmp",
           "PYTHONPATH": str(package.parent), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "GPT_PROGRESS": "text",
           "GPT_PROFILE": options.profile, "LANG": "C.UTF-8", "HF_HUB_OFFLINE": "1"}
    env["GPT_DATA_DIR"] = str(data_dir().resolve())  # the grader's data folder, read-only inside (prepare_data)
    if os.environ.get("GPT_DATA_MIRROR"):
        env["GPT_DATA_MIRROR"] = os.environ["GPT_DATA_MIRROR"]
    return env


def _readable(package: Path) -> list[Path]:
    """What the sandbox may read besides the system and Python: the package folder itself (never the course
    folder around it, which holds the solutions) and the data."""
    paths = [package, data_dir().resolve()]
    if os.environ.get("GPT_DATA_MIRROR"):
        paths.append(Path(os.environ["GPT_DATA_MIRROR"]))
    return [p for p in paths if p.exists()]


def _lines(stdout: bytes) -> list[dict]:
    out = []
    for raw in stdout.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(raw)
            if isinstance(line, dict) and isinstance(line.get("exercise"), str):
                out.append(line)
    return out


def _run_program(program: dict, workdir: Path, options: Options) -> tuple[dict[str, dict], str]:
    """Run the program; a crash or a hang costs only the exercise it happened in. Returns id -> line, and the log."""
    package = Path(__file__).resolve().parents[1]
    results, logs, todo = {}, [], list(program["exercises"])
    deadline = options.notebook_timeout
    while todo and deadline > 0:
        scratch = workdir / f"scratch{len(logs)}"
        scratch.mkdir()
        (scratch / "program.json").write_text(json.dumps({**program, "exercises": todo}))
        limits = sandbox.Limits(wall_seconds=deadline)
        argv = [sys.executable, "-m", "gpt.teaching.probe_runner", "/scratch/program.json" if options.isolate
                else str(scratch / "program.json")]
        outcome = sandbox.run(argv, workdir=workdir, scratch=scratch, limits=limits, env=_sandbox_env(options, package),
                              read_only=_readable(package), isolate=options.isolate)
        logs.append(outcome.log)
        lines = _lines(outcome.stdout)
        started = [x["exercise"] for x in lines if x.get("start")]
        for line in lines:
            if not line.get("start") and line["exercise"] not in results:
                results[line["exercise"]] = line
            elif not line.get("start"):  # a second result for one exercise: not the harness's doing
                results[line["exercise"]] = {"error": "the result channel held two results for this exercise "
                                                      "(its output was tampered with)"}
        current = next((e for e in started if e not in results), None)
        if current is not None:
            results[current] = _ended(outcome, options)
        deadline -= max(1.0, outcome.seconds)
        todo = [e for e in todo if e["id"] not in results]
        if current is None and todo:  # it ended before starting the rest: nothing more would come of a rerun
            for e in todo:
                results[e["id"]] = {"error": f"the sandbox ended before this exercise ({_exit(outcome)})"}
            todo = []
    for e in todo:
        results[e["id"]] = {"timeout": options.notebook_timeout, "notebook": True}
    return results, "\n".join(logs)


def _exit(outcome: sandbox.Outcome) -> str:
    if outcome.output_exceeded:
        return "it wrote more output than allowed"
    code = outcome.returncode
    if code is not None and code < 0:
        return f"killed by signal {signal.Signals(-code).name}" if -code in signal.valid_signals() else f"signal {-code}"
    return f"exit status {code}"


def _ended(outcome: sandbox.Outcome, options: Options) -> dict:
    """The line for the exercise a run ended in the middle of."""
    if outcome.timed_out:
        return {"timeout": options.notebook_timeout, "notebook": True}
    tail = outcome.log.strip().splitlines()[-1:] or [""]
    return {"error": f"the sandbox's process ended during this exercise ({_exit(outcome)}) {tail[0][:300]}".strip()}


# ---------------------------------------------------------------- the checks (a clean process)


def run_checks(items: list[dict]) -> list[str]:
    """Each ``check(got)`` in a fresh namespace: '' when it passes, else the reason (the assert's whole sentence)."""
    reasons = []
    for item in items:
        scope = {"__name__": "__check__"}
        try:
            exec(compile(item["check"], f"<check {item['id']}>", "exec"), scope)
            scope["check"](item["got"])
            reasons.append("")
        except AssertionError as e:
            reasons.append(str(e).strip() or f"a hidden check of {item['id']} failed (the check has no message)")
        except Exception as e:  # the probe's output has the wrong shape or type: the student's code returned it
            reasons.append(f"the output could not be checked ({type(e).__name__}: {e})")
    return reasons


def _check(items: list[dict], workdir: Path) -> list[str]:
    """:func:`run_checks` in a child process of this (clean) Python: it never shares anything with student code."""
    if not items:
        return []
    path = workdir / "checks.json"
    path.write_text(json.dumps(items))
    cmd = [sys.executable, "-m", "gpt.teaching.grading", str(path)]
    try:
        with sandbox.tracked(cmd, cwd=workdir) as proc:
            out, err = proc.communicate(timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return [f"the hidden checks ran past {CHECK_TIMEOUT} s (the teacher's check code)"] * len(items)
    try:
        reasons = json.loads(out)
        assert isinstance(reasons, list) and len(reasons) == len(items)
        return reasons
    except (ValueError, AssertionError):
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return [f"the hidden checks failed to run ({tail[0]})"] * len(items)


def _reason(test: HiddenTest, line: dict | None) -> str | None:
    """Why an exercise scores nothing, from its line of the sandbox; None when its result goes to the check."""
    if line is None:
        return "not run"
    if "forbidden_error" in line:  # checked in teacher_notebook already: the sandbox's package differs from ours
        raise ClassroomError(f"exercise {test.exercise.id}: the sandbox could not guard its FORBIDDEN names "
                             f"({str(line['forbidden_error'])[:500]}); the teacher's notebook or the package is wrong")
    if "timeout" in line:
        which = "the notebook's time limit, --notebook-timeout" if line.get("notebook") else "--cell-timeout"
        return f"timed out after {line['timeout']:g} s ({which})"
    if "error" in line:
        error = str(line["error"])
        stage = line.get("stage", "")
        if error.startswith("NotImplementedError") and stage == "probe":
            return "not answered (NotImplementedError)"
        if "calling the package's" in error:
            return error.split(": ", 1)[-1]
        where = {"solution": "the solution cell raised", "probe": "the hidden test's call of your code raised"}.get(
            stage, f"{stage} failed after your earlier cells ran" if stage else "")
        return f"{where} {error}".strip()
    return None


def grade_submission(teacher: TeacherNotebook, path: Path | None, why: str, workdir: Path,
                     options: Options) -> tuple[list[tuple[float, str]], str]:
    """(points, reason) per exercise of one student's copy of one notebook, and the sandbox's log."""
    tests = teacher.tests
    if path is not None and not why:
        try:
            cells = _student_cells(path)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            why = f"not a notebook ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
    if why:
        return [(0.0, why)] * len(tests), ""
    program, notes = plan(teacher, cells, options.cell_timeout)
    lines, log = _run_program(program, workdir, options) if program["exercises"] else ({}, "")
    reasons = {t.exercise.id: (notes[t.exercise.id] if notes[t.exercise.id].startswith("the solution cell is missing")
                               else _reason(t, lines.get(t.exercise.id))) for t in tests}
    to_check = [t for t in tests if reasons[t.exercise.id] is None]
    checked = _check([{"id": t.exercise.id, "check": t.check, "got": lines[t.exercise.id]["result"]} for t in to_check],
                     workdir)
    reasons.update({t.exercise.id: r for t, r in zip(to_check, checked)})
    rows = []
    for t in tests:
        reason, note = reasons[t.exercise.id], notes[t.exercise.id]
        full = reason == ""
        if note and note != reason:
            reason = f"{reason} ({note})" if reason else note
        rows.append((float(t.exercise.points) if full else 0.0, reason))
    return rows, log


# ---------------------------------------------------------------- a class


def _student_folders(submissions: Path, print_fn) -> list[Path]:
    if not submissions.is_dir():
        raise ClassroomError(f"{submissions} is not a folder; give a folder with one subfolder per student")
    folders = sorted(p for p in submissions.iterdir() if p.is_dir())
    hidden = [p.name for p in folders if p.name.startswith(".")]
    students = [p for p in folders if not p.name.startswith(".")]
    if hidden:
        print_fn(f"skipped hidden folders (a name starting with '.' is not a student): {', '.join(hidden)}")
    if not students:
        raise ClassroomError(f"{submissions} has no student subfolders (expected {submissions}/<student>/<NN_name>.ipynb)")
    if not any(_visible_notebooks(s) for s in students):
        raise ClassroomError(f"{submissions} holds no notebooks in its student subfolders: is it the submissions folder? "
                             f"(expected {submissions}/<student>/<NN_name>.ipynb)")
    return students


def _visible_notebooks(student: Path) -> list[Path]:
    return [p for p in student.rglob("*.ipynb") if not any(part.startswith(".") for part in p.relative_to(student).parts)]


def _find_submission(student: Path, name: str) -> tuple[Path | None, str]:
    found = sorted(p for p in _visible_notebooks(student) if p.name == name)
    if not found:
        return None, "not submitted"
    if len(found) > 1:
        return None, f"{len(found)} files named {name}; keep one"
    return found[0], ""


def isolation_line(isolate: bool) -> str:
    """The first line grading prints: how students' code is isolated, or that it is not (and why)."""
    problem = sandbox.isolation_problem()
    if isolate and not problem:
        return ("isolation: each submission runs in its own sandbox (Linux user, mount, pid and network namespaces; "
                "read-only minimal root; no network; memory, CPU, process and output limits)")
    why = problem or "isolation is available here, but --no-isolation was given"
    if isolate:
        raise ClassroomError(f"isolation is unavailable: {why}. Grading would run students' code with your rights "
                             "(it could read the solutions and change the grades). Grade in a container (docs/teaching.md) "
                             "or, on a machine you can throw away, pass --no-isolation")
    return (f"WARNING: grading WITHOUT isolation (--no-isolation): {why}; students' code runs with your rights and "
            "can read and change your files")


def default_source() -> Path:
    """The solved notebooks: ``notebooks/solutions/`` of the course (``notebooks/`` where there is none)."""
    solutions = course_root() / "notebooks" / "solutions"
    return solutions if solutions.is_dir() else course_root() / "notebooks"


def _grade_all(jobs: list[tuple], tmp: Path, options: Options) -> list:
    """Run ``grade_submission`` over jobs, ``options.jobs`` at a time, with a progress bar; results in job order."""
    results = [None] * len(jobs)
    stop = threading.Event()

    def one(k):
        if stop.is_set():
            raise KeyboardInterrupt
        workdir = tmp / f"job{k}"
        workdir.mkdir()
        return grade_submission(*jobs[k], workdir, options)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=options.jobs)  # each job's work runs in child processes
    try:
        futures = {pool.submit(one, k): k for k in range(len(jobs))}
        with progress_bar(total=len(jobs), desc="grading", unit="notebook") as bar:
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    except BaseException:
        stop.set()
        sandbox.kill_all()
        pool.shutdown(wait=True, cancel_futures=True)
        sandbox.kill_all()
        raise
    pool.shutdown()
    return results


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM stops grading as Ctrl-C does (sandboxes killed, temporary folders removed, nothing written)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


GRADING_DATA = ("the_verdict", "sms_spam")  # what the exercises' setup cells read (01-04: the text; 05-08: the SMS)


def prepare_data(print_fn=print) -> None:
    """Fetch (verified by sha256) the files the notebooks' setup cells read, and build the SMS splits, here in the
    trusted grader: a sandbox reads the data folder but cannot write it, so one student cannot change another's data."""
    for name in GRADING_DATA:
        fetch(name, progress=False)
    load_splits()
    print_fn(f"data ready in {data_dir()}")


def grade(submissions: str | os.PathLike, source=None, *, out: str | os.PathLike | None = None, overwrite: bool = False,
          options: Options | None = None, keep: str | os.PathLike | None = None, print_fn=print) -> pd.DataFrame:
    """Grade ``submissions/<student>/<NN_name>.ipynb`` against the source notebooks; returns the table.

    Writes ``out`` (default ``submissions/grades.csv``: one row per student, one column per exercise, then
    total and max) and, beside it, ``<out stem>_details.csv`` (one row per student and exercise, with the
    whole reason for every lost point, and how the code was isolated). ``keep``: a folder to receive what
    each submission printed (its warnings, tracebacks, prints), ``keep/<student>/<NN_name>.log``.
    """
    options = options or Options()
    first = isolation_line(options.isolate)  # refuses before anything else when isolation is unavailable
    print_fn(first)
    submissions = Path(submissions)
    students = _student_folders(submissions, print_fn)
    notebooks = source_notebooks(source or default_source())
    teachers = [t for t in map(teacher_notebook, notebooks) if t.tests]
    if not teachers:
        raise ClassroomError(f"the source notebooks ({notebooks[0].parent}) have no exercises to grade")
    out = Path(out) if out else submissions / "grades.csv"
    details_path = out.with_name(f"{out.stem}_details.csv")
    for path in (out, details_path):
        check_output(path, overwrite=overwrite)
    if keep:
        check_output(keep, kind="dir", overwrite=overwrite)
    jobs = [(t, *_find_submission(s, t.path.name)) for s in students for t in teachers]
    prepare_data(print_fn)
    with _sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="gpt-grading-") as tmp:
        os.chmod(tmp, 0o755)  # the sandbox's setup (root of its namespace) mounts its new root in here
        results = _grade_all(jobs, Path(tmp), options)
    isolation = "namespaces" if options.isolate else "NONE (--no-isolation)"
    rows = [{"student": s.name, "notebook": t.path.stem, "exercise": test.exercise.id, "title": test.exercise.title,
             "points": points, "max_points": test.exercise.points, "reason": reason, "isolation": isolation}
            for (t, _, _), s, (scored, _) in zip(jobs, [s for s in students for _ in teachers], results)
            for test, (points, reason) in zip(t.tests, scored)]
    if keep:
        with atomic_dir(keep, overwrite=overwrite) as kept:
            for (t, _, _), s, (_, log) in zip(jobs, [s for s in students for _ in teachers], results):
                (kept / s.name).mkdir(exist_ok=True)
                (kept / s.name / f"{t.path.stem}.log").write_text(log, encoding="utf-8")
    details = pd.DataFrame(rows)
    table = grades_table(details)
    atomic_write_text(details_path, details.to_csv(index=False))
    atomic_write_text(out, table.to_csv())
    print_fn(table.to_string())
    print_fn(f"wrote {out} and {details_path}")
    return table


def grades_table(details: pd.DataFrame) -> pd.DataFrame:
    """Students x exercises (points), then total and max, from the per-exercise rows (students in their order)."""
    order = list(dict.fromkeys(details["exercise"]))
    students = list(dict.fromkeys(details["student"]))
    table = details.pivot(index="student", columns="exercise", values="points").loc[students, order]
    table.columns.name = None
    table["total"] = table.sum(axis=1)
    table["max"] = details.drop_duplicates("exercise")["max_points"].sum()
    return table


if __name__ == "__main__":  # the checker process: python -m gpt.teaching.grading CHECKS.json
    print(json.dumps(run_checks(json.loads(Path(sys.argv[1]).read_text()))))
