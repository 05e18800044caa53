"""The programs the package starts, found in the Python environment that runs the package.

The classroom commands run nbgrader in a child process, and nbgrader in turn starts ``alembic`` by
name (through PATH) and a Jupyter kernel. A virtual environment keeps such programs beside its
``python`` (``venv/bin``), and that folder is on PATH only while the environment is activated. Run as
``/path/to/venv/bin/python -m gpt classroom release OUT`` without activating it, a child would find
no ``alembic``, or another environment's. So every child process the package starts gets:

* :func:`tool_env`: the environment with this interpreter's folders (:func:`tool_dirs`) first on PATH;
* :func:`find_tool`: a program's path, looked up in those folders first;
* :func:`run_tool`: the command in its own process group (killed whole on a timeout or Ctrl-C), its
  output and errors in one text; :func:`output_tail` gives the last lines of it (a failed child's
  traceback) for the error message.

And one program that ``torch.compile`` starts: :func:`require_compiler` checks, before any training,
that a C++ compiler is there to build the code it generates on a CPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import ConfigError, GPTError

__all__ = ["ToolError", "tool_dirs", "tool_env", "find_tool", "run_tool", "output_tail", "require_compiler"]


class ToolError(GPTError, RuntimeError):
    """A program the package needs is not installed in this environment."""


def tool_dirs() -> list[str]:
    """The folders of this Python environment's programs: the one holding ``sys.executable`` (not
    resolved: a venv's ``bin/python`` is a link to the base interpreter) and the scripts folder."""
    dirs = [str(Path(sys.executable).parent), sysconfig.get_path("scripts")]
    return [d for i, d in enumerate(dirs) if d and d not in dirs[:i]]


def tool_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with :func:`tool_dirs` first on PATH."""
    env = dict(os.environ if env is None else env)
    first = tool_dirs()
    rest = [d for d in env.get("PATH", os.defpath).split(os.pathsep) if d and d not in first]
    env["PATH"] = os.pathsep.join(first + rest)
    return env


def find_tool(name: str, install: str = "") -> str:
    """The path of the program ``name``: this environment's first, then PATH's. ``install``: the fix
    named in the error when it is found nowhere (e.g. ``pip install -e ".[classroom]"``)."""
    found = shutil.which(name, path=tool_env()["PATH"])
    if found is None:
        raise ToolError(f"the program {name!r} is not installed: not in {os.pathsep.join(tool_dirs())} (beside "
                        f"{sys.executable}) nor on PATH" + (f"; {install}" if install else ""))
    return found


def output_tail(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a program's output: where a Python traceback ends."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_tool(cmd: Sequence[str], *, cwd: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
             timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` with :func:`tool_env` (``env`` as the base), stdout and stderr together in ``stdout``.

    It runs in its own process group: on a timeout (``subprocess.TimeoutExpired`` is raised) or an
    interrupt the whole group is killed, kernels and all. The return code is the caller's to check.
    """
    cmd = [str(c) for c in cmd]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=tool_env(env), start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise
    except BaseException:  # Ctrl-C: take the children down with it
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass


def require_compiler() -> None:
    """torch.compile generates C++ (on a CPU) and needs a compiler to build it: a missing one is a
    :class:`~gpt.errors.ConfigError` here, not an error deep inside the first training step."""
    if not any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "c++", "clang++")):
        raise ConfigError(
            "--compile (TrainConfig.compile) needs a C++ compiler for torch.compile, and none was found "
            "(g++, c++ or clang++, or $CXX); install one (e.g. apt install g++) or train without --compile"
        )
