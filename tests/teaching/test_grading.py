"""gpt.teaching.grading: scoring with probe/check, fair to correct answers, and cheating notebooks that gain nothing.

One tiny teacher notebook (four exercises in the grading format) is built here, and one grading run
over a class of honest, sloppy and cheating students serves most tests (a sandbox run imports torch,
which takes seconds, so the class is graded once, two at a time). Without user namespaces the tests
that need the sandbox skip, saying so.
"""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gpt.errors import OutputExistsError
from gpt.teaching import grading, sandbox
from gpt.teaching.classroom import ClassroomError

NO_SANDBOX = f"user namespaces are unavailable here: {sandbox.isolation_problem()}"
needs_sandbox = pytest.mark.skipif(bool(sandbox.isolation_problem()), reason=NO_SANDBOX)
MARKER = "gpt-grading-test-detached-4711"
SETUP = 'COURSE_REPO = "https://example.org/course"\nCOURSE_REF = "abc123"\nimport sys\nprint("setup")'


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def code(text, grade_id=None, points=None):
    meta = {}
    if grade_id and points is None:
        meta = {"nbgrader": {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
                             "solution": True, "task": False}}
    elif grade_id:
        meta = {"nbgrader": {"grade": True, "grade_id": grade_id, "locked": True, "points": points,
                             "schema_version": 3, "solution": False, "task": False}}
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [], "source": text}


def exercise(k, title, points, solution, visible, hidden):
    return [md(f"### Exercise 01.{k} · {title} ({points} point{'s' if points > 1 else ''})"),
            code(solution, f"ex01_{k}"),
            code(f"{visible}\n### BEGIN HIDDEN TESTS\n{hidden}\ncheck(probe())\n### END HIDDEN TESTS", f"ex01_{k}_test", points)]


SOLUTIONS = {
    "ex01_1": "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
    "ex01_2": "def scaled(x):\n    ### BEGIN SOLUTION\n    return x * scale\n    ### END SOLUTION",
    "ex01_3": ("def my_loss(logits, targets):\n    ### BEGIN SOLUTION\n    logp = torch.log_softmax(logits, dim=-1)\n"
               "    return -logp[torch.arange(len(targets)), targets].mean()\n    ### END SOLUTION"),
    "ex01_4": ("def mha(x, attn):\n    ### BEGIN SOLUTION\n    B, T, C = x.shape\n    H = attn.n_head\n    D = C // H\n"
               "    q, k, v = (p(x).view(B, T, H, D).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj))\n"
               "    w = (q @ k.transpose(-2, -1) / D ** 0.5).masked_fill(attn.causal_mask[:T, :T], float('-inf'))\n"
               "    y = (torch.softmax(w, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)\n    return attn.out_proj(y)\n"
               "    ### END SOLUTION"),
}

HIDDEN = {
    "ex01_1": '''FORBIDDEN = ["operator.add"]  # a builtin: no __code__, replaced on its module
def probe():
    return {"sums": [add(1, 2), add(-1, 1), add(2.5, 0.5)]}

def check(got):
    assert got["sums"] == [3, 0, 3.0], f"for (1, 2), (-1, 1) and (2.5, 0.5) expected the sums [3, 0, 3.0], got {got['sums']}"''',
    "ex01_2": '''FORBIDDEN = ["gpt.model.CausalSelfAttention.__init__"]  # a closure (super()); 01.4's probe needs it
def probe():
    torch.manual_seed(0)
    return {"y": scaled(torch.randn(5)).tolist()}

def check(got):
    import torch
    torch.manual_seed(0)
    want = torch.randn(5) * 3
    assert torch.allclose(torch.tensor(got["y"]), want), f"for x = torch.randn(5) with seed 0 expected 3 * x = {want.tolist()}, got {got['y']}"''',
    "ex01_3": '''FORBIDDEN = ["gpt.runtime.fused_loss.cross_entropy"]
def probe():
    torch.manual_seed(1)
    logits, targets = torch.randn(4, 7), torch.tensor([0, 3, 6, 2])
    return {"loss": float(my_loss(logits, targets))}

def check(got):
    import torch
    torch.manual_seed(1)
    logits, targets = torch.randn(4, 7), torch.tensor([0, 3, 6, 2])
    want = torch.nn.functional.cross_entropy(logits, targets).item()
    assert abs(got["loss"] - want) < 1e-5, f"for seeded logits (4, 7) expected the mean cross-entropy {want:.6f}, got {got['loss']}"''',
    "ex01_4": '''FORBIDDEN = ["gpt.model.CausalSelfAttention.forward"]
def probe():
    torch.manual_seed(5)
    attn = CausalSelfAttention(GPTConfig(vocab_size=10, context_length=8, n_embd=8, n_head=2, attn_impl="explicit"))
    return {"out": mha(torch.randn(2, 5, 8), attn).tolist()}

def check(got):
    import torch
    from gpt.model import CausalSelfAttention, GPTConfig
    torch.manual_seed(5)
    attn = CausalSelfAttention(GPTConfig(vocab_size=10, context_length=8, n_embd=8, n_head=2, attn_impl="explicit"))
    want = attn(torch.randn(2, 5, 8))
    assert torch.allclose(torch.tensor(got["out"]), want, atol=1e-5), f"for x of shape (2, 5, 8) expected attn(x), got values that differ by up to {(torch.tensor(got['out']) - want).abs().max().item():.3g}"''',
}


def teacher_notebook():
    cells = [md("# Toy"), code(SETUP), code("import torch\nfrom gpt.model import CausalSelfAttention, GPTConfig\n%matplotlib inline"),
             code("scale = 3\nprint('scale', scale)"), code("import this_module_does_not_exist  # an unrelated cell the grader skips")]
    titles = {"ex01_1": ("add", 1), "ex01_2": ("scaled", 2), "ex01_3": ("my loss", 1), "ex01_4": ("attention", 1)}
    for k, (gid, (title, points)) in enumerate(titles.items(), start=1):
        cells += exercise(k, title, points, SOLUTIONS[gid], "print('visible tests')", HIDDEN[gid])
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def handout():
    """What release gives students: solutions replaced by NotImplementedError, hidden tests removed."""
    nb = teacher_notebook()
    for cell in nb["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id", "")
        if gid in SOLUTIONS:
            cell["source"] = SOLUTIONS[gid].split("### BEGIN SOLUTION")[0] + "    raise NotImplementedError()"
        elif gid.endswith("_test"):
            cell["source"] = cell["source"].split("### BEGIN HIDDEN TESTS")[0]
    return nb


def with_cells(nb, **cells):
    """``nb`` with the solution cells given replaced (ex01_1="code")."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id", "")
        if gid in cells:
            cell["source"] = cells[gid]
    return nb


def write(nb, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


def solved(**cells):
    return with_cells(handout(), **{**SOLUTIONS, **cells})


def blank_except(**cells):
    return with_cells(handout(), **cells)


# ---------------------------------------------------------------- planning (no sandbox)


def test_teacher_notebook_extracts_probe_check_and_forbidden(tmp_path):
    t = grading.teacher_notebook(write(teacher_notebook(), tmp_path / "01_toy.ipynb"))
    assert [x.exercise.id for x in t.tests] == ["01.1", "01.2", "01.3", "01.4"]
    assert t.tests[2].forbidden == ("gpt.runtime.fused_loss.cross_entropy",) and t.tests[0].forbidden == ("operator.add",)
    assert t.tests[0].probe.startswith("def probe():") and "assert" in t.tests[0].check
    assert all("COURSE_REF" not in c for _, c in t.cells)  # the setup cell is left out
    assert any("pass" in c and "%matplotlib" not in c for _, c in t.cells)  # magics made `pass`


def test_plan_runs_only_the_cells_an_exercise_needs_and_never_the_teachers_solutions(tmp_path):
    t = grading.teacher_notebook(write(teacher_notebook(), tmp_path / "01_toy.ipynb"))
    cells = grading._student_cells(write(solved(), tmp_path / "s.ipynb"))
    program, notes = grading.plan(t, cells, 5)
    setups = [[label for label, _ in e["setup"]] for e in program["exercises"]]
    assert setups == [[], ["the notebook's cell 2", "the notebook's cell 3"], [], []]  # each cell once, when first needed
    text = json.dumps(program)
    assert "this_module_does_not_exist" not in text and "def check" not in text and "COURSE_REF" not in text
    assert [e["forbidden"] for e in program["exercises"]] == [  # each exercise's own, armed only while it runs
        ["operator.add"], ["gpt.model.CausalSelfAttention.__init__"], ["gpt.runtime.fused_loss.cross_entropy"],
        ["gpt.model.CausalSelfAttention.forward"]]
    assert set(notes.values()) == {""}


@pytest.mark.parametrize("entry, message", [
    ("gpt.model.no_such_function", "gpt.model.no_such_function cannot be found"),
    ("no_such_package.f", "no_such_package.f cannot be imported"),
    ("gpt.model", "gpt.model is a module"),
    ("gpt.model.GPTConfig.n_embd", "not callable"),
])
def test_a_forbidden_entry_that_cannot_be_guarded_is_the_teachers_error(tmp_path, entry, message):
    nb = teacher_notebook()
    test_cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "ex01_3_test")
    test_cell["source"] = test_cell["source"].replace('FORBIDDEN = ["gpt.runtime.fused_loss.cross_entropy"]', f"FORBIDDEN = [{entry!r}]")
    with pytest.raises(ClassroomError, match="01_toy.ipynb ex01_3_test: FORBIDDEN cannot be guarded") as e:
        grading.teacher_notebook(write(nb, tmp_path / "01_toy.ipynb"))
    assert message in str(e.value)


@pytest.mark.parametrize("entry, call, shown", [
    ("gpt.model.CausalSelfAttention.__init__", "lambda: CausalSelfAttention(GPTConfig(vocab_size=5, context_length=4, "
     "n_embd=4, n_head=1))", "CausalSelfAttention.__init__"),  # uses super(): a closure over __class__
    ("gpt.lora.LoRALinear.__init__", "lambda: LoRALinear(torch.nn.Linear(2, 2), r=1, lora_alpha=1)", "LoRALinear.__init__"),
    ("torch.nn.functional.gelu", "lambda: F.gelu(torch.zeros(2))", "gelu"),  # a builtin: replaced on its module
    ("gpt.model.GPT.generate", "lambda: GPT.generate(None, None, 1)", "GPT.generate"),  # decorated
])
def test_every_kind_of_forbidden_callable_is_guarded_and_restored(entry, call, shown):
    import torch
    import torch.nn.functional as F
    from gpt.lora import LoRALinear
    from gpt.model import GPT, CausalSelfAttention, GPTConfig
    from gpt.teaching import probe_runner

    f = eval(call, {"torch": torch, "F": F, "LoRALinear": LoRALinear, "GPT": GPT, "GPTConfig": GPTConfig,
                    "CausalSelfAttention": CausalSelfAttention})
    swaps, problems = probe_runner.prepare_guards([entry])
    assert not problems and swaps[entry]
    probe_runner.arm(swaps[entry], armed=True)
    try:
        with pytest.raises(RuntimeError) as e:
            f()
    finally:
        probe_runner.arm(swaps[entry], armed=False)
    assert str(e.value) == f"the exercise asks you to write {shown} yourself; calling the package's {entry} scores 0"
    if entry != "gpt.model.GPT.generate":
        f()  # restored: the original runs again


def test_plan_finds_a_solution_cell_without_its_metadata_and_names_missing_ones(tmp_path):
    t = grading.teacher_notebook(write(teacher_notebook(), tmp_path / "01_toy.ipynb"))
    nb = solved()
    nb["cells"][6]["metadata"] = {}  # ex01_1's solution cell lost its nbgrader metadata
    nb["cells"][9]["metadata"] = {}
    nb["cells"][9]["source"] = "def scaled(x):\n    return x * scale"  # ... and its BEGIN SOLUTION line
    program, notes = grading.plan(t, grading._student_cells(write(nb, tmp_path / "s.ipynb")), 5)
    assert [e["id"] for e in program["exercises"]] == ["01.1", "01.3", "01.4"]
    assert notes["01.1"] == "no cell has grade_id ex01_1 (its metadata was changed); graded the solution cell that defines add"
    assert notes["01.2"] == "the solution cell is missing: no cell with grade_id ex01_2 — was its metadata changed?"


@pytest.mark.parametrize("kwargs, message", [
    ({"cell_timeout": float("nan")}, "--cell-timeout must be a finite number of seconds > 0"),
    ({"notebook_timeout": float("inf")}, "--notebook-timeout must be a finite"),
    ({"cell_timeout": -5}, "--cell-timeout must be"),
    ({"jobs": 0}, "--jobs must be"),
])
def test_options_refuse_timeouts_that_are_not_finite_and_positive(kwargs, message):
    with pytest.raises(ClassroomError, match=message):
        grading.Options(**kwargs)


def test_grade_refuses_a_folder_without_notebooks_and_lists_hidden_folders(tmp_path):
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    write(solved(), tmp_path / "subs" / ".zoe" / "01_toy.ipynb")
    messages = []
    with pytest.raises(ClassroomError, match="holds no notebooks in its student subfolders"):
        grading.grade(tmp_path / "subs", tmp_path, options=grading.Options(isolate=False), print_fn=messages.append)
    assert messages[0].startswith("WARNING: grading WITHOUT isolation (--no-isolation)")
    assert "skipped hidden folders (a name starting with '.' is not a student): .zoe" in messages


def test_without_isolation_grading_refuses_unless_told(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "isolation_problem", lambda: "isolation needs Linux namespaces, and this is darwin")
    with pytest.raises(ClassroomError, match=r"^isolation is unavailable: isolation needs Linux namespaces, and this is darwin.*--no-isolation"):
        grading.grade(tmp_path, tmp_path)
    assert grading.isolation_line(False).startswith("WARNING: grading WITHOUT isolation (--no-isolation): isolation needs Linux")


def test_grades_table_pivots_points_and_sums_them():
    details = pd.DataFrame([
        {"student": s, "exercise": e, "points": p, "max_points": m}
        for s, e, p, m in [("b", "01.1", 1, 1), ("b", "01.2", 0, 2), ("a", "01.1", 0, 1), ("a", "01.2", 2, 2)]])
    table = grading.grades_table(details)
    assert list(table.index) == ["b", "a"]  # the students' order, not sorted again
    assert table.loc["b"].tolist() == [1, 0, 1, 3] and table.loc["a"].tolist() == [0, 2, 2, 3]


def test_grade_refuses_a_folder_without_students(tmp_path):
    with pytest.raises(ClassroomError, match="no student subfolders"):
        grading.grade(tmp_path, tmp_path, options=grading.Options(isolate=False), print_fn=lambda *a: None)


def test_run_checks_gives_the_whole_sentence():
    check = "def check(got):\n    assert got == 1, 'for the input 2 expected 1,\\nand the whole message is kept, got ' + str(got)"
    assert grading.run_checks([{"id": "01.1", "check": check, "got": 1}, {"id": "01.1", "check": check, "got": 5},
                               {"id": "01.1", "check": "def check(got):\n    got['x']", "got": []}]) == [
        "", "for the input 2 expected 1,\nand the whole message is kept, got 5",
        "the output could not be checked (TypeError: list indices must be integers or slices, not str)"]


# ---------------------------------------------------------------- a class with cheaters (one grading run)

CHEATS = {
    # the IPython trick that scored 8/8 under nbgrader: there is no display output to fake here
    "displayhook": blank_except(ex01_1=("import sys\ntry:\n    _ip = get_ipython()\n"
                                        "    _ip.events.register('pre_run_cell', lambda *a: _ip.displayhook('ok'))\n"
                                        "except NameError:\n    pass\nsys.displayhook = lambda v: None\n"
                                        "def add(a, b):\n    raise NotImplementedError()")),
    # patched torch: the checks run in the grader's own clean process
    "patched": blank_except(ex01_2=("import torch\ntorch.allclose = torch.equal = lambda *a, **k: True\n"
                                    "def scaled(x):\n    return x")),
    "forbidden": solved(ex01_3="import gpt.runtime.fused_loss\ndef my_loss(logits, targets):\n    return gpt.runtime.fused_loss.cross_entropy(logits, targets)"),
    "bypass": solved(ex01_4="def mha(x, attn):\n    return type(attn).forward(attn, x)"),
    "builtin": solved(ex01_1="import operator\ndef add(a, b):\n    return operator.add(a, b)",
                      ex01_2="CausalSelfAttention(GPTConfig(vocab_size=5, context_length=4, n_embd=4, n_head=1))\n"
                             "def scaled(x):\n    return x * scale"),
    # what one exercise forbids, another may use: 01.3's answer builds an attention layer (01.2 forbids its __init__)
    # and calls attention's forward (01.4 forbids it); 01.4's probe builds one too
    "crossover": solved(ex01_3=("from gpt.model import CausalSelfAttention, GPTConfig\n"
                                "_attn = CausalSelfAttention(GPTConfig(vocab_size=5, context_length=4, n_embd=4, n_head=1))\n"
                                "_attn(torch.zeros(1, 2, 4))\n" + SOLUTIONS["ex01_3"])),
    "bomb": blank_except(ex01_1="import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                         ex01_2="big = bytearray(64 * 2**30)"),
    "detached": blank_except(ex01_1=(
        "import os, subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)  # {MARKER}'], start_new_session=True)\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(300)  # {MARKER}'])\n"
        "    os._exit(0)\n"
        "def add(a, b):\n    return a + b")),
}


def reader(source):
    """Reads the teacher's notebook (path known) or finds any notebook by walking up, and runs its solutions."""
    return blank_except(ex01_1=(
        "import json, os, pathlib, sys, gpt\n"
        "up = [*pathlib.Path(gpt.__file__).parents, *pathlib.Path.cwd().parents]\n"
        f"paths = [{str(source)!r}]\n"
        # every notebook under /tmp and /scratch, but not inside Python itself (a venv made by mktemp lies under /tmp)
        "python = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}\n"
        "for top in ('/tmp', '/scratch'):\n"
        "    for d, dirs, files in os.walk(top):\n"
        "        dirs[:] = [x for x in dirs if os.path.realpath(os.path.join(d, x)) not in python]\n"
        "        paths += [os.path.join(d, f) for f in files if f.endswith('.ipynb')]\n"
        "paths += [str(p) for d in up for p in [*d.glob('*.ipynb'), *d.glob('notebooks/**/*.ipynb'), *d.glob('*/*.ipynb')]]\n"
        "for p in paths:\n    try:\n        nb = json.load(open(p))\n    except OSError:\n        continue\n"
        "    for c in nb['cells']:\n        if c['metadata'].get('nbgrader', {}).get('solution'):\n"
        "            exec(''.join(c['source']))\n"
        "print('found', paths)"))


def writer(subs, package):
    """Tries to write the grades, another student's notebook, the installed package and a host folder."""
    targets = [subs / "grades.csv", subs / "honest" / "01_toy.ipynb", package / "pwned.py", package / "__init__.py",
               subs.parent / "pwned.txt"]
    return solved(ex01_1=(
        "import os\n"
        f"for p in {[str(t) for t in targets]!r}:\n"
        "    try:\n        open(p, 'a').write('student,total\\nwriter,999\\n')\n        print('WROTE', p)\n"
        "    except OSError as e:\n        print('refused', p, e)\n"
        "open('/scratch/mine.txt', 'w').write('my own scratch is fine')\n"
        "def add(a, b):\n    return a + b"))


def marker_processes():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if MARKER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if sandbox.isolation_problem():
        pytest.skip(NO_SANDBOX)
    root = tmp_path_factory.mktemp("grading")
    source = write(teacher_notebook(), root / "source" / "01_toy.ipynb")
    subs = root / "subs"
    package = Path(grading.__file__).resolve().parents[1]
    noisy = {gid: f"import warnings, sys\nwarnings.warn('careful')\nprint('debug', file=sys.stderr)\nprint('debug')\n{s}"
             for gid, s in SOLUTIONS.items()}
    students = {
        "honest": solved(), "noisy": solved(**noisy), "blank": handout(),
        "wrong": solved(ex01_1="def add(a, b):\n    return a - b"),
        "loop": solved(ex01_1="def add(a, b):\n    while True:\n        pass"),
        "reader": reader(source), "writer": writer(subs, package), **CHEATS,
    }
    for name, nb in students.items():
        write(nb, subs / name / "01_toy.ipynb")
    dup = solved()
    dup["cells"].insert(9, copy.deepcopy(dup["cells"][9]))  # Jupyter's copy of a cell keeps its metadata
    write(dup, subs / "duplicate" / "nested" / "01_toy.ipynb")
    (subs / "junk").mkdir()
    (subs / "junk" / "01_toy.ipynb").write_text("this is not json")
    (subs / "missing").mkdir()
    before = {p: p.read_bytes() for p in [source, *subs.rglob("*.ipynb")]}
    package_files = sorted(p.name for p in package.iterdir())
    messages = []
    start = time.monotonic()
    table = grading.grade(subs, source.parent, options=grading.Options(cell_timeout=4, notebook_timeout=600, jobs=2),
                          keep=root / "kept", print_fn=messages.append)
    seconds = time.monotonic() - start
    details = pd.read_csv(subs / "grades_details.csv", dtype={"exercise": str}).fillna("")
    return dict(table=table, details=details.set_index(["student", "exercise"])["reason"], subs=subs, root=root,
                messages=messages, before=before, package=package, package_files=package_files, seconds=seconds)


def points(graded, student):
    return graded["table"].loc[student, ["01.1", "01.2", "01.3", "01.4"]].tolist()


def test_first_line_says_how_students_code_is_isolated(graded):
    assert graded["messages"][0].startswith("isolation: each submission runs in its own sandbox")
    assert set(graded["details"].index.get_level_values(0)) >= {"honest", "writer"}
    assert (pd.read_csv(graded["subs"] / "grades_details.csv")["isolation"] == "namespaces").all()


def test_correct_answers_score_full_with_warnings_prints_and_duplicated_cells(graded):
    for student in ("honest", "noisy", "duplicate"):
        assert points(graded, student) == [1, 2, 1, 1], graded["details"][student]
        assert graded["table"].loc[student, "total"] == 5 == graded["table"].loc[student, "max"]
        assert set(graded["details"][student]) == {""}


def test_wrong_blank_and_looping_answers_say_why(graded):
    d = graded["details"]
    assert points(graded, "wrong") == [0, 2, 1, 1]
    assert d[("wrong", "01.1")] == "for (1, 2), (-1, 1) and (2.5, 0.5) expected the sums [3, 0, 3.0], got [-1, -2, 2.0]"
    assert points(graded, "blank") == [0, 0, 0, 0]
    assert set(d["blank"]) == {"not answered (NotImplementedError)"}
    assert points(graded, "loop") == [0, 2, 1, 1]  # a hang costs only its own exercise
    assert d[("loop", "01.1")] == "timed out after 4 s (--cell-timeout)"
    assert d[("junk", "01.1")].startswith("not a notebook") and d[("missing", "01.1")] == "not submitted"


def test_display_hook_and_patched_torch_score_nothing(graded):
    assert points(graded, "displayhook") == [0, 0, 0, 0]
    assert points(graded, "patched") == [0, 0, 0, 0]
    assert graded["details"][("patched", "01.2")].startswith("for x = torch.randn(5) with seed 0 expected 3 * x")


def test_calling_a_forbidden_package_function_scores_zero_even_through_the_class(graded):
    d = graded["details"]
    assert points(graded, "forbidden") == [1, 2, 0, 1]
    assert d[("forbidden", "01.3")] == ("the exercise asks you to write cross_entropy yourself; calling the package's "
                                        "gpt.runtime.fused_loss.cross_entropy scores 0")
    assert points(graded, "bypass") == [1, 2, 1, 0]  # type(attn).forward(attn, x) is the same tripwired function
    assert "calling the package's gpt.model.CausalSelfAttention.forward scores 0" in d[("bypass", "01.4")]
    assert points(graded, "builtin") == [0, 0, 1, 1]
    assert d[("builtin", "01.1")] == "the exercise asks you to write add yourself; calling the package's operator.add scores 0"
    assert d[("builtin", "01.2")] == ("the exercise asks you to write CausalSelfAttention.__init__ yourself; calling the "
                                      "package's gpt.model.CausalSelfAttention.__init__ scores 0")


def test_each_exercise_arms_only_its_own_forbidden_names(graded):
    assert points(graded, "crossover") == [1, 2, 1, 1], graded["details"]["crossover"]


def test_reading_the_teachers_notebook_finds_nothing(graded):
    assert points(graded, "reader") == [0, 0, 0, 0]
    log = (graded["root"] / "kept" / "reader" / "01_toy.log").read_text()
    assert "found [" in log and "01_toy.ipynb'" in log.split("found [")[1].split(",")[0]  # the path was tried...
    assert log.count(".ipynb") == 1  # ... and no notebook exists anywhere the sandbox can see


def test_writing_outside_scratch_changes_nothing(graded):
    assert points(graded, "writer") == [1, 2, 1, 1]  # it earned these; its writes all failed
    log = (graded["root"] / "kept" / "writer" / "01_toy.log").read_text()
    assert "WROTE" not in log and log.count("refused") == 5
    assert points(graded, "honest") == [1, 2, 1, 1]
    for path, data in graded["before"].items():
        assert path.read_bytes() == data, path
    assert sorted(p.name for p in graded["package"].iterdir()) == graded["package_files"]
    assert not (graded["subs"].parent / "pwned.txt").exists()
    assert "writer,999" not in (graded["subs"] / "grades.csv").read_text()


def test_detached_processes_and_bombs_are_bounded_and_cleaned_up(graded):
    assert marker_processes() == []  # the double-forked and setsid processes died with the sandbox
    assert points(graded, "detached") == [1, 0, 0, 0]
    d = graded["details"]
    assert points(graded, "bomb") == [0, 0, 0, 0]
    assert d[("bomb", "01.1")] == "timed out after 4 s (--cell-timeout)"
    assert d[("bomb", "01.2")] == "the solution cell raised MemoryError"
    # bounded by --cell-timeout, not the notebook's limit (no wall-clock bound here: CI machines are busy)


def test_the_table_is_in_the_students_order_and_refuses_to_overwrite(graded):
    table = graded["table"]
    written = pd.read_csv(graded["subs"] / "grades.csv", index_col=0)
    assert list(written.index) == list(table.index) == sorted(table.index)
    assert written["total"].to_dict() == table["total"].to_dict()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        grading.grade(graded["subs"], graded["root"] / "source", options=grading.Options(isolate=False),
                      print_fn=lambda *a: None)


# ---------------------------------------------------------------- the command: Ctrl-C / SIGTERM


@needs_sandbox
def test_sigterm_kills_every_sandbox_removes_temp_folders_and_writes_nothing(tmp_path):
    source = write(teacher_notebook(), tmp_path / "source" / "01_toy.ipynb").parent
    hang = (f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)  # {MARKER}'], "
            "start_new_session=True)\nwhile True:\n    pass")
    for name in ("a", "b"):
        write(blank_except(ex01_1=hang), tmp_path / "subs" / name / "01_toy.ipynb")
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(Path(grading.__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "gpt", "classroom", "grade", str(tmp_path / "subs"), "--source",
                             str(source), "--cell-timeout", "300", "--jobs", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while len(marker_processes()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(marker_processes()) == 2, "the students' processes never started"
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, out
    time.sleep(0.5)
    assert marker_processes() == []
    assert list(temp.iterdir()) == []
    assert not (tmp_path / "subs" / "grades.csv").exists()


def test_every_forbidden_name_in_the_course_is_guardable_at_its_current_path():
    """A FORBIDDEN entry that names a moved module's old path (gpt.deprecated.MOVED) or a name that no longer
    exists would still grade, but the tripwire's message would send the learner to an old path, or the
    exercise would lose its guard: every entry resolves, outside the deprecated paths."""
    from gpt.deprecated import MOVED
    from gpt.teaching.classroom import source_notebooks
    from gpt.teaching.probe_runner import prepare_guards

    names = [n for path in source_notebooks() for t in grading.teacher_notebook(path).tests for n in t.forbidden]
    assert len(names) > 30
    old = [n for n in names if any(n == m or n.startswith(m + ".") for m in MOVED)]
    assert not old, f"FORBIDDEN entries name deprecated paths: {old}"
    _, problems = prepare_guards(names)
    assert not problems, problems
