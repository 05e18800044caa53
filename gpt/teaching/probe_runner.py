"""The harness that runs inside the grading sandbox: ``python -m gpt.teaching.probe_runner PROGRAM.json``.

It shares its process with the student's code, so nothing it says is trusted: it only turns a
program planned by :mod:`gpt.teaching.grading` into data. For each exercise, in order, it

1. runs the teacher's ordinary cells the exercise needs (those not run yet),
2. runs the student's solution cell(s) of the exercise,
3. defines the teacher's ``probe`` and calls it (2 and 3 within the exercise's time limit),

and writes one JSON line to the result channel (its original stdout): ``{"exercise": id, "result": ...}``,
or ``{"exercise": id, "error": "Type: message", "stage": ...}``, or ``{"exercise": id, "timeout": seconds}``.
Before each exercise it writes ``{"exercise": id, "start": true}``, so the grader knows which exercise
a crash or a hang happened in. The student's prints and warnings go to stderr. Before any student code
runs, every FORBIDDEN name of the program is resolved and its tripwire made (:func:`guards`); each
exercise's own FORBIDDEN names are armed only while its solution cell(s) and probe run, so the teacher's
cells and the other exercises (a later one may build on a class an earlier one asks to rewrite) use the
package freely. An entry that cannot be guarded is the teacher's mistake: the exercise is not run and
its line says ``{"exercise": id, "forbidden_error": why}``. After each exercise, every other process
in the sandbox is killed (it is the first process of its pid namespace).

It imports nothing from :mod:`gpt` itself: the student's code must not be able to change what the
grader computes, and the grader uses none of this process's state.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
import types

TRIPWIRE = ("def _tripwire(*args, **kwargs):\n"
            "    raise RuntimeError({message!r})\n")
MESSAGE_LIMIT = 4000
_INHERITED = object()  # an attribute a class inherits: restored by deleting the tripwire put on the class


class ExerciseTimeout(BaseException):
    """The exercise ran past its time limit (a BaseException, so that ``except Exception`` does not swallow it)."""


_timer = {"on": False}


def _on_alarm(signum, frame):
    if _timer["on"]:
        raise ExerciseTimeout()


def _start_timer(seconds: float) -> None:
    """SIGALRM after ``seconds``, then every 0.2 s until stopped: a timeout raised where it is swallowed (in a
    callback Python ignores exceptions from, such as an at-fork handler) is raised again."""
    _timer["on"] = True
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.2)


def _stop_timer() -> None:
    _timer["on"] = False
    signal.setitimer(signal.ITIMER_REAL, 0)


class ForbiddenError(Exception):
    """A FORBIDDEN entry of the teacher's notebook that cannot be resolved or guarded (the teacher's mistake)."""


def _resolve(dotted: str):
    """(owner, attribute, object, shown) for a dotted path: the longest importable module prefix, then attributes.
    ``shown`` is the name a learner knows: the attributes after the module ("CausalSelfAttention.forward", "gelu")."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        if i == len(parts):
            raise ForbiddenError(f"{dotted} is a module; name a function, method or class in it")
        owner = obj
        try:
            for name in parts[i:]:
                owner, obj = obj, getattr(obj, name)
        except AttributeError as e:
            raise ForbiddenError(f"{dotted} cannot be found ({e})") from None
        return owner, parts[-1], obj, ".".join(parts[i:])
    raise ForbiddenError(f"{dotted} cannot be imported (no module {parts[0]})")


def _tripwire_code(message: str, freevars: tuple[str, ...] = ()) -> types.CodeType:
    """A code object that raises RuntimeError(message), with the given free variables (a closure's, such as
    ``__class__`` of a method using super()), so it can replace that closure's code."""
    source = TRIPWIRE.format(message=message)
    if freevars:  # the names are cells of an outer function, read (never run) by the tripwire: its free variables
        source = ("def _outer():\n" + "".join(f"    {name} = None\n" for name in freevars)
                  + "    def _tripwire(*args, **kwargs):\n"
                  + f"        if False:\n            ({', '.join(freevars)},)\n"
                  + f"        raise RuntimeError({message!r})\n"
                  + "    return _tripwire\n")
    scope = {}
    exec(source, scope)
    code = (scope["_outer"]() if freevars else scope["_tripwire"]).__code__
    if code.co_freevars != tuple(freevars):
        raise ForbiddenError(f"no tripwire with the free variables {freevars} could be made (got {code.co_freevars})")
    return code


def _functions(obj) -> list[types.FunctionType]:
    """The Python functions behind a callable (a decorated one's wrapped function too), or of every method of a class."""
    if isinstance(obj, type):
        found = []
        for value in vars(obj).values():
            value = getattr(value, "__func__", value)  # staticmethod, classmethod
            if isinstance(value, types.FunctionType):
                found += _functions(value)
        return found
    obj = getattr(obj, "__func__", obj)
    if not isinstance(obj, types.FunctionType):
        return []
    wrapped = getattr(obj, "__wrapped__", None)
    return [obj] + (_functions(wrapped) if isinstance(wrapped, types.FunctionType) else [])


def guards(dotted: str) -> list[tuple]:
    """How to guard one FORBIDDEN entry: (holder, attribute, original, tripwire) swaps, nothing changed yet.

    A function or method has its ``__code__`` swapped (that also catches a reference saved earlier); a class,
    every one of its methods'; anything without Python code (a builtin such as ``torch.nn.functional.gelu``) is
    replaced on its owner (module or class). Raises :class:`ForbiddenError` when the entry cannot be guarded."""
    owner, attr, obj, shown = _resolve(dotted)
    message = f"the exercise asks you to write {shown} yourself; calling the package's {dotted} scores 0"
    functions = _functions(obj)
    if functions:
        return [(f, "__code__", f.__code__, _tripwire_code(message, f.__code__.co_freevars)) for f in functions]
    if isinstance(obj, type) or not callable(obj):
        raise ForbiddenError(f"{dotted} is {'a class without Python methods' if callable(obj) else 'not callable'}; "
                             "name the function or method the exercise asks for")
    scope = {}
    exec(TRIPWIRE.format(message=message), scope)
    original = vars(owner).get(attr, _INHERITED) if isinstance(owner, type) else obj
    swap = (owner, attr, original, scope["_tripwire"])
    try:  # check now that the owner accepts the swap, not in the middle of an exercise
        arm([swap], armed=True)
        arm([swap], armed=False)
    except (AttributeError, TypeError) as e:
        raise ForbiddenError(f"{dotted} has no Python code and its owner {owner!r} cannot be changed ({e})") from None
    return [swap]


def arm(swaps: list[tuple], armed: bool = True) -> None:
    """Put each swap's tripwire (armed) or original in place."""
    for holder, attr, original, tripwire in swaps:
        value = tripwire if armed else original
        if value is _INHERITED:
            delattr(holder, attr)
        else:
            setattr(holder, attr, value)


def prepare_guards(names) -> tuple[dict[str, list[tuple]], dict[str, str]]:
    """The swaps of each FORBIDDEN name, and the reason of each one that cannot be guarded."""
    swaps, problems = {}, {}
    for dotted in dict.fromkeys(names):
        try:
            swaps[dotted] = guards(dotted)
        except ForbiddenError as e:
            problems[dotted] = str(e)
        except Exception as e:  # importing the module failed in some other way
            problems[dotted] = f"{dotted} cannot be imported ({type(e).__name__}: {e})"
    return swaps, problems


def _error(e: BaseException) -> str:
    message = str(e).strip()
    text = f"{type(e).__name__}: {message}" if message else type(e).__name__
    return text[:MESSAGE_LIMIT]


def _run_exercise(ns: dict, exercise: dict, swaps: list[tuple]) -> dict:
    """One exercise; returns the line to emit. ``swaps``: the exercise's own FORBIDDEN names' tripwires, armed for
    its solution cell(s) and probe only (the teacher's cells and the other exercises use the package freely)."""
    stage = "setup"
    try:
        for label, code in exercise["setup"]:
            stage = label
            exec(compile(code, f"<{label}>", "exec"), ns)
        stage = "solution"
        arm(swaps, armed=True)
        _start_timer(exercise["timeout"])  # the student's code and the probe; not the teacher's cells
        exec(compile(exercise["solution"], f"<solution cell {exercise['id']}>", "exec"), ns)
        stage = "probe"
        exec(compile(exercise["probe"], "<probe>", "exec"), ns)
        result = ns["probe"]()
        return {"exercise": exercise["id"], "result": json.loads(json.dumps(result))}
    except ExerciseTimeout:
        _stop_timer()
        return {"exercise": exercise["id"], "timeout": exercise["timeout"], "stage": stage}
    except BaseException as e:  # anything the student's code raises, SystemExit and KeyboardInterrupt included
        _stop_timer()
        where = traceback.extract_tb(e.__traceback__)
        line = next((f.lineno for f in reversed(where) if f.filename.startswith("<solution")), None)
        return {"exercise": exercise["id"], "error": _error(e), "stage": stage, "line": line}


def kill_leftovers() -> None:
    """As the first process of the sandbox's pid namespace: kill every other process in it (what the exercise's
    code started: a fork bomb, a detached process), so nothing of one exercise runs on into the next."""
    if os.getpid() != 1:  # outside a pid namespace kill(-1) would reach every process of this user
        return
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100_000):
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        program = json.load(f)
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the student's prints go to stderr, never into the result channel
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.argv = ["notebook"]
    # every FORBIDDEN name resolved before any of the student's code runs; armed per exercise
    swaps, problems = prepare_guards(n for e in program["exercises"] for n in e.get("forbidden", []))
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    for exercise in program["exercises"]:
        channel.write(json.dumps({"exercise": exercise["id"], "start": True}) + "\n")
        channel.flush()
        mine = [swap for name in exercise.get("forbidden", []) for swap in swaps.get(name, [])]
        unguarded = [problems[n] for n in exercise.get("forbidden", []) if n in problems]
        try:
            line = ({"exercise": exercise["id"], "forbidden_error": "; ".join(unguarded)} if unguarded
                    else _run_exercise(ns, exercise, mine))
        except ExerciseTimeout:
            line = {"exercise": exercise["id"], "timeout": exercise["timeout"], "stage": "probe"}
        finally:
            _stop_timer()
            arm(mine, armed=False)
            kill_leftovers()
        channel.write(json.dumps(line) + "\n")
        channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
