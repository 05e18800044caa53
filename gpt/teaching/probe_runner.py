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
runs, every FORBIDDEN package function or method is replaced by a tripwire that raises. After each
exercise, every other process in the sandbox is killed (it is the first process of its pid namespace).

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

TRIPWIRE = ("def _tripwire(*args, **kwargs):\n"
            "    raise RuntimeError({message!r})\n")
MESSAGE_LIMIT = 4000


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


def _resolve(dotted: str):
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"cannot import {dotted}")


def _tripwire_code(dotted: str):
    short = dotted.rsplit(".", 1)[-1]
    message = (f"the exercise asks you to write {short} yourself; calling the package's {dotted} scores 0")
    scope = {}
    exec(TRIPWIRE.format(message=message), scope)
    return scope["_tripwire"].__code__


def install_tripwires(names: list[str]) -> dict:
    """Replace the code of each forbidden function (or every method of a forbidden class); returns the originals."""
    originals = {}
    for dotted in names:
        obj = _resolve(dotted)
        functions = [obj] if callable(obj) and hasattr(obj, "__code__") else [
            f for f in vars(obj).values() if hasattr(f, "__code__")]
        for f in functions:
            code = _tripwire_code(dotted)
            if f.__code__.co_freevars:  # a closure: a code object with the same free variables is needed
                code = code.replace(co_freevars=f.__code__.co_freevars)
            originals[f] = f.__code__
            try:
                f.__code__ = code
            except ValueError:
                originals.pop(f)
    return originals


def _swap(codes: dict) -> None:
    """Put the given code objects in place (function -> code)."""
    for f, code in codes.items():
        f.__code__ = code


def _error(e: BaseException) -> str:
    message = str(e).strip()
    text = f"{type(e).__name__}: {message}" if message else type(e).__name__
    return text[:MESSAGE_LIMIT]


def _run_exercise(ns: dict, exercise: dict, originals: dict, armed: dict) -> dict:
    """One exercise; returns the line to emit. ``originals``/``armed``: each guarded function's own code and tripwire."""
    stage = "setup"
    try:
        for label, code in exercise["setup"]:
            stage = label
            _swap(originals)  # the teacher's cells may use the package's own versions
            try:
                exec(compile(code, f"<{label}>", "exec"), ns)
            finally:
                _swap(armed)
        stage = "solution"
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
    originals = install_tripwires(program.get("forbidden", []))  # before any of the student's code runs
    armed = {f: f.__code__ for f in originals}
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    for exercise in program["exercises"]:
        channel.write(json.dumps({"exercise": exercise["id"], "start": True}) + "\n")
        channel.flush()
        try:
            line = _run_exercise(ns, exercise, originals, armed)
        except ExerciseTimeout:
            line = {"exercise": exercise["id"], "timeout": exercise["timeout"], "stage": "probe"}
        finally:
            _stop_timer()
            kill_leftovers()
        channel.write(json.dumps(line) + "\n")
        channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
