"""gpt.teaching.sandbox: what code run in the sandbox can see, write, reach and spend (plain Python, no torch: fast).

Every test here needs user namespaces; where they are unavailable the tests skip, saying why.
"""

import os
import sys
import textwrap
from pathlib import Path

import pytest

from gpt.teaching import sandbox

pytestmark = pytest.mark.skipif(bool(sandbox.isolation_problem()),
                                reason=f"user namespaces are unavailable here: {sandbox.isolation_problem()}")
MARKER = "gpt-sandbox-test-orphan-2718"


def run(tmp_path, code, **limits):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    limits = sandbox.Limits(**{"wall_seconds": 30, **limits})
    return sandbox.run([sys.executable, "-c", textwrap.dedent(code)], workdir=work, scratch=tmp_path / "scratch",
                       limits=limits, env={"PATH": "/usr/bin:/bin", "HOME": "/scratch"})


def test_it_sees_only_the_system_python_and_its_scratch(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the solutions")
    out = run(tmp_path, f"""
        import os
        print(sorted(os.listdir("/")))
        print(os.path.exists({str(secret)!r}), os.path.exists({str(Path.cwd())!r}), os.getcwd())
        print(len([p for p in os.listdir("/proc") if p.isdigit()]))
        """)
    lines = out.stdout.decode().splitlines()
    assert out.returncode == 0, out.log
    assert set(eval(lines[0])) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "scratch", "tmp",
                                   "usr", "root", "work", "home", "opt"} | {Path(sys.prefix).parts[1], Path(sys.base_prefix).parts[1]}
    assert lines[1] == "False False /scratch"
    assert lines[2] == "1"  # its own pid namespace: only itself


def test_it_writes_only_its_scratch_and_cannot_remount(tmp_path):
    out = run(tmp_path, f"""
        import subprocess
        for p in ["/usr/x", {sys.prefix + "/x"!r}, "/etc/passwd", "/x", "/scratch/mine"]:
            try:
                open(p, "a").write("x")
                print("wrote", p)
            except OSError as e:
                print("refused", p, e.errno)
        for cmd in (["mount", "-o", "remount,rw", "/usr"],
                    ["unshare", "-U", "-r", "-m", "sh", "-c", "mount -o remount,rw /usr && touch /usr/x"]):
            print(subprocess.run(cmd, capture_output=True).returncode != 0)
        """)
    lines = out.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines[:5]] == ["refused"] * 4 + ["wrote"], lines
    assert lines[5:] == ["True", "True"]
    assert (tmp_path / "scratch" / "mine").read_text() == "x"
    assert not Path(sys.prefix, "x").exists()


def test_it_has_no_network_and_no_capabilities(tmp_path):
    out = run(tmp_path, """
        import socket
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("1.1.1.1", 53))
            print("connected")
        except OSError as e:
            print("no network", e.errno)
        print(open("/proc/self/status").read().split("CapEff:")[1].split()[0])
        """)
    lines = out.stdout.decode().splitlines()
    assert lines[0].startswith("no network") and lines[1] == "0000000000000000"


def test_a_fork_bomb_is_bounded_and_nothing_outlives_the_run(tmp_path):
    out = run(tmp_path, f"""
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # {MARKER}"], start_new_session=True)
        n = 0
        for _ in range(1000):
            try:
                if os.fork() == 0:
                    time.sleep(300)
                    os._exit(0)
                n += 1
            except OSError:
                break
        print(n, flush=True)
        """, processes=32)
    assert 0 < int(out.stdout.decode()) < 32
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _has_marker(pid)]


def _has_marker(pid):
    try:
        return MARKER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_memory_output_and_time_are_limited(tmp_path):
    out = run(tmp_path, """
        try:
            x = bytearray(8 * 2**30)
            print("allocated")
        except MemoryError:
            print("MemoryError")
        """, memory_bytes=2 * 2**30)
    assert out.stdout.decode().strip() == "MemoryError"
    out = run(tmp_path, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", output_bytes=2**20)
    assert out.output_exceeded and len(out.stdout) == 2**20
    out = run(tmp_path, "while True:\n    pass", wall_seconds=2)
    assert out.timed_out and out.returncode is None and out.seconds < 10
