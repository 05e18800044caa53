"""gpt.runtime.tools: the programs the package starts come from this Python's environment, and a failed one's
error keeps the end of its output (its traceback)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import gpt.runtime.tools as tools
from gpt.errors import ConfigError
from gpt.runtime.tools import ToolError, find_tool, output_tail, require_compiler, run_tool, tool_dirs, tool_env

HERE = str(Path(sys.executable).parent)


def test_tool_dirs_start_with_the_folder_of_this_python_unresolved():
    assert tool_dirs()[0] == HERE  # a venv's bin/, even though bin/python links to the base interpreter
    assert len(set(tool_dirs())) == len(tool_dirs())


def test_tool_env_puts_this_environment_first_on_path_once():
    env = tool_env({"PATH": os.pathsep.join(["/somewhere/bin", HERE, "/usr/bin"]), "OTHER": "kept"})
    parts = env["PATH"].split(os.pathsep)
    assert parts[:len(tool_dirs())] == tool_dirs() and parts.count(HERE) == 1
    assert parts[len(tool_dirs()):] == [d for d in ["/somewhere/bin", "/usr/bin"] if d not in tool_dirs()]
    assert env["OTHER"] == "kept"
    assert tool_env({})["PATH"].split(os.pathsep)[0] == HERE


def test_find_tool_looks_beside_this_python_even_without_it_on_path(monkeypatch):
    name = Path(sys.executable).name
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_tool(name) == str(Path(sys.executable).parent / name)
    with pytest.raises(ToolError, match=r"'no-such-tool-xyz' is not installed.*; pip install it"):
        find_tool("no-such-tool-xyz", "pip install it")


def test_run_tool_gives_the_child_this_environment_and_all_its_output():
    done = run_tool([sys.executable, "-c", "import os, sys; print(os.environ['PATH'], flush=True); print('oops', file=sys.stderr)"],
                    env={"PATH": "/usr/bin"})
    assert done.returncode == 0
    path, err = done.stdout.splitlines()
    assert path.split(os.pathsep)[0] == HERE and err == "oops"


def test_output_tail_keeps_a_failed_childs_traceback():
    code = "for i in range(200): print('noise', i)\ndef deep(n):\n    return 1 / 0 if n == 0 else deep(n - 1)\ndeep(5)"
    done = run_tool([sys.executable, "-c", code])
    assert done.returncode == 1
    tail = output_tail(done.stdout)
    assert len(tail.splitlines()) == 40 and "noise 0" not in tail
    assert tail.splitlines()[-1] == "ZeroDivisionError: division by zero" and "in deep" in tail


def test_run_tool_kills_a_child_past_its_timeout():
    with pytest.raises(subprocess.TimeoutExpired):  # the child would sleep for 10 minutes: no machine is that fast
        run_tool([sys.executable, "-c", "import time; time.sleep(600)"], timeout=1)


def test_require_compiler_names_the_fix_when_no_compiler_is_found(monkeypatch):
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"needs a C\+\+ compiler .* or train without --compile"):
        require_compiler()
    monkeypatch.setenv("CXX", "my-c++")
    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "my-c++" else None)
    require_compiler()  # $CXX is the first place it looks
