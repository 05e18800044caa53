"""gpt.io.lock: one writer per output. A second writer (another process) is refused with an error
naming the first; a lock left by a killed process is taken over with a note; waiting writers get the
lock in turn, so parallel read-modify-writes all land."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from gpt.errors import GPTError
from gpt.io.lock import OutputLockedError, lock_holder, lock_path, output_lock

HOLD = textwrap.dedent("""
    import sys, time
    from gpt.io.lock import output_lock
    with output_lock(sys.argv[1], command="the holder's command"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _holder(target, seconds, cwd):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(target), str(seconds)], stdout=subprocess.PIPE, text=True, cwd=cwd,
                         env={**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    target = tmp_path / "run"
    p = _holder(target, 60, tmp_path)
    try:
        with pytest.raises(OutputLockedError) as e:
            with output_lock(target, what="--out run"):
                pytest.fail("took a lock another process holds")
        msg = str(e.value)
        assert isinstance(e.value, GPTError)
        assert msg.startswith(f"--out run is being written by pid {p.pid} on ")
        assert "started " in msg and "(the holder's command)" in msg and "wait until it has finished" in msg
        assert lock_holder(target)["pid"] == p.pid
    finally:
        p.kill()
        p.wait()


def test_a_lock_of_a_killed_process_is_taken_over_with_a_note(tmp_path, capsys):
    target = tmp_path / "run"
    p = _holder(target, 60, tmp_path)
    os.kill(p.pid, signal.SIGKILL)  # dies holding the lock: the file stays
    p.wait()
    assert lock_path(target).exists() and lock_holder(target)["pid"] == p.pid
    with output_lock(target, command="me"):
        assert lock_holder(target)["pid"] == os.getpid()
        assert lock_holder(target)["command"] == "me"
    err = capsys.readouterr().err
    assert f"was locked by pid {p.pid}" in err and "which is no longer running; taking the lock over" in err
    assert not lock_path(target).exists()  # released: removed


def test_released_on_error_and_reusable(tmp_path):
    target = tmp_path / "x" / "run"  # the folder of the lock is made
    with pytest.raises(ValueError):
        with output_lock(target):
            raise ValueError("boom")
    assert not lock_path(target).exists()
    with output_lock(target):
        pass


def test_nested_lock_in_one_process_is_refused(tmp_path):
    with output_lock(tmp_path / "run"):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            with output_lock(tmp_path / "run"):
                pass


def test_wait_gets_the_lock_when_the_holder_ends(tmp_path):
    target = tmp_path / "run"
    p = _holder(target, 1.0, tmp_path)
    try:
        t0 = time.monotonic()
        with output_lock(target, wait=120):
            assert time.monotonic() - t0 > 0.8  # only once the holder's 1 s block has ended
            assert lock_holder(target)["pid"] == os.getpid()
    finally:
        p.kill()
        p.wait()


APPEND = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from gpt.io.lock import output_lock
    path = Path(sys.argv[1])
    for i in range(int(sys.argv[3])):
        with output_lock(path, wait=120):
            rows = json.loads(path.read_text()) if path.exists() else []
            time.sleep(0.005)  # widen the window between read and write
            rows.append(sys.argv[2] + str(i))
            path.write_text(json.dumps(rows))
""")


def test_parallel_read_modify_writes_all_land(tmp_path):
    path = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", APPEND, str(path), name, "10"], env=env) for name in "abcd"]
    assert all(p.wait(timeout=600) == 0 for p in procs)
    rows = json.loads(path.read_text())
    assert sorted(rows) == sorted(f"{n}{i}" for n in "abcd" for i in range(10))


def test_an_unwritable_place_is_a_clear_error(tmp_path):
    from gpt.io.files import OutputError

    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="its lock .* cannot be created .*choose a writable location"):
        with output_lock(tmp_path / "afile" / "run"):
            pass
