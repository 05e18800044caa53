"""Runs a graded exercise's hidden probe/check on a solution cell in this process (tests only).

A fast, in-process stand-in for the grader (see tests/teaching/heldout/README.md): the notebook's
ordinary cells that the solution and the probe need run once per notebook, each solution runs in a
copy of that namespace with the exercise's FORBIDDEN names replaced by tripwires, ``probe()`` runs
there, its result goes through JSON, and ``check(got)`` runs in a namespace of its own.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import importlib
import json
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELDOUT = Path(__file__).resolve().parent / "heldout"


FORBIDDEN_PREFIX = "forbidden call: "


@dataclass(frozen=True)
class Variant:
    path: Path
    exercise: str  # "06.2"
    expect: str  # "correct" or "wrong"
    why: str
    code: str


def read_variant(path: Path) -> Variant:
    """A variant file: header lines ``# exercise: 06.2``, ``# expect: correct|wrong``, ``# why: ...``, then the solution cell."""
    meta, lines = {}, path.read_text(encoding="utf-8").splitlines()
    for line in lines:
        if not line.startswith("# ") or ":" not in line:
            break
        key, _, value = line[2:].partition(":")
        meta[key.strip()] = value.strip()
    if meta.get("expect") not in ("correct", "wrong") or "exercise" not in meta:
        raise ValueError(f"{path.name}: the header needs '# exercise: NN.k' and '# expect: correct' or '# expect: wrong'")
    return Variant(path, meta["exercise"], meta["expect"], meta.get("why", ""), "\n".join(lines) + "\n")


def variants() -> list[Variant]:
    return [read_variant(p) for p in sorted(HELDOUT.glob("*.py"))]


def solutions_notebook(number: str) -> Path:
    """The teacher's notebook NN: notebooks/solutions/NN_*.ipynb once the handouts are split off, else notebooks/NN_*.ipynb."""
    for folder in (ROOT / "notebooks" / "solutions", ROOT / "notebooks"):
        hits = sorted(folder.glob(f"{number}_*.ipynb"))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"no notebook {number}_*.ipynb")


def _source(cell: dict) -> str:
    text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in text.splitlines())


def _binds(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        else:
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def _free(node: ast.AST) -> set[str]:
    """The names a piece of code reads from outside: a function's arguments and locals, a comprehension's targets are not."""
    inner = set().union(*(_free(child) for child in ast.iter_child_nodes(node)))
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Load) else set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
        local = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)} if not isinstance(node, ast.ClassDef) else set()
        local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        local |= {n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n is not node}
        local |= {(a.asname or a.name).split(".")[0] for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        return inner - local
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return inner - {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
    return inner


def _loads(tree: ast.Module) -> set[str]:
    return _free(tree) - _binds(tree)


@dataclass
class Hidden:
    forbidden: list[str]
    probe: str
    check: str


def hidden_region(test_source: str) -> Hidden:
    text = test_source.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
    tree = ast.parse(text)
    forbidden, parts = [], {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["FORBIDDEN"]:
            forbidden = ast.literal_eval(node.value)
        elif isinstance(node, ast.FunctionDef) and node.name in ("probe", "check"):
            parts[node.name] = ast.get_source_segment(text, node)
    return Hidden(forbidden, parts["probe"], parts["check"])


class Notebook:
    """One teacher notebook: its exercises' hidden regions and a namespace grown cell by cell as exercises need."""

    def __init__(self, number: str):
        self.path = solutions_notebook(number)
        cells = json.loads(self.path.read_text(encoding="utf-8"))["cells"]
        self.cells, self.hidden, self.position, self.solution = [], {}, {}, {}
        for i, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
            text = _source(cell)
            if gid.endswith("_test"):
                ex = f"{gid[2:4]}.{gid[5:-5]}"
                self.hidden[ex], self.position[ex] = hidden_region(text), i
            elif gid:
                self.solution[f"{gid[2:4]}.{gid[5:]}"] = text
            else:
                tree = ast.parse(text)
                self.cells.append((i, text, _binds(tree), _loads(tree)))
        self.namespace = {"__name__": "__main__"}
        self.ran: set[int] = set()

    def prepare(self, exercise: str, extra_code: str = "") -> dict:
        """Run the ordinary cells before the exercise that its solution, the extra code and the probe need (their closure)."""
        before = [c for c in self.cells if c[0] < self.position[exercise]]
        wanted = _loads(ast.parse(self.solution[exercise] + "\n" + extra_code + "\n" + self.hidden[exercise].probe))
        need, seen = set(), set()
        while wanted - seen:
            name = (wanted - seen).pop()
            seen.add(name)
            binders = [c for c in before if name in c[2]]
            if binders and binders[-1][0] not in need:
                need.add(binders[-1][0])
                wanted |= binders[-1][3]
        for i, text, _, _ in before:
            if i in need and i not in self.ran:
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    exec(compile(text, f"{self.path.name} cell {i}", "exec"), self.namespace)
                self.ran.add(i)
        return self.namespace


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        owner = obj
        for attr in parts[cut:]:
            owner, obj = obj, getattr(obj, attr)
        return owner, parts[-1] if cut < len(parts) else None, obj
    raise ImportError(dotted)


def _tripwire(name: str):
    """A function that raises; it names only builtins, so its __code__ can replace any function's."""
    message = f"{FORBIDDEN_PREFIX}the exercise asks you to write {name} yourself; calling the package's {name} scores 0"
    scope: dict = {}
    exec(f"def tripwire(*args, **kwargs):\n    raise RuntimeError({message!r})", scope)
    return scope["tripwire"]


def _shown(dotted: str) -> str:
    """The name a learner knows: "CausalSelfAttention.forward" for a method, "lm_loss" for a function."""
    parts = dotted.split(".")
    classes = [i for i, p in enumerate(parts) if p[:1].isupper()]
    return ".".join(parts[classes[0]:]) if classes else parts[-1]


def install_tripwires(forbidden: list[str]):
    """Replace every forbidden name (functions: their __code__ too; classes: their methods); returns the undo list."""
    undo = []
    for dotted in forbidden:
        owner, attr, obj = _resolve(dotted)
        trip = _tripwire(_shown(dotted))
        targets = [(obj, k, v) for k, v in vars(obj).items() if isinstance(v, types.FunctionType)] if isinstance(obj, type) else [(owner, attr, obj)]
        for holder, key, fn in targets:
            undo.append(("attr", holder, key, vars(holder).get(key, fn) if isinstance(holder, type) else fn))
            setattr(holder, key, trip)
            for f in {fn, getattr(fn, "__wrapped__", None)} - {None}:
                if isinstance(f, types.FunctionType) and not f.__code__.co_freevars:
                    undo.append(("code", f, "__code__", f.__code__))
                    f.__code__ = trip.__code__
    return undo


def remove_tripwires(undo) -> None:
    for _, holder, key, value in reversed(undo):
        setattr(holder, key, value)


def run_variant(notebook: Notebook, exercise: str, code: str) -> None:
    """probe() on ``code`` as the solution cell, then check(got) in a namespace of its own; raises when check fails."""
    hidden = notebook.hidden[exercise]
    namespace = dict(notebook.prepare(exercise, code))
    undo = install_tripwires(hidden.forbidden)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            exec(compile(code, f"solution {exercise}", "exec"), namespace)
            exec(compile(hidden.probe, f"probe {exercise}", "exec"), namespace)
            got = json.loads(json.dumps(namespace["probe"]()))
    finally:
        remove_tripwires(undo)
    scope = {"__name__": "check", "__builtins__": builtins}
    exec(compile(hidden.check, f"check {exercise}", "exec"), scope)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scope["check"](got)
