"""One writer per output: a lock held while a command writes a folder or a file.

``with output_lock(path, command="python -m gpt pretrain ..."):`` holds the lock of ``path`` (a run
folder, a results folder, one run's row in it) until the block ends. The lock is a small JSON file
next to ``path``, ``.<name>.lock``, holding who writes: pid, host, start time and command. Next to
it rather than inside, so that the lock outlives replacing the folder in one rename
(:func:`gpt.io.files.replace_dir`) and exists before the folder does.

* A second writer is refused at once with :class:`OutputLockedError`, which names the running one
  (pid, host, start time, command). With ``wait=`` seconds it waits for the lock instead (the
  short read-modify-write of ``results.csv`` by runs in parallel).
* A process that died holding a lock (``kill -9``, a power cut) leaves the file behind: the next
  writer sees that its process is gone, says so on stderr, and takes the lock over.

On POSIX the file is locked with ``fcntl.flock``: the kernel releases it when its process dies,
however it dies, so a stale lock is exactly a lock file that nobody holds (no pid guessing, no
race between two writers taking over the same stale lock). Where ``fcntl`` does not exist
(Windows) the file is created with ``O_EXCL`` and a lock whose pid is no longer running on this
host is stale. A lock on another host cannot be checked from here: it is reported, never taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from ..errors import GPTError
from .files import OutputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["OutputLockedError", "output_lock", "lock_path", "lock_holder"]


class OutputLockedError(GPTError, RuntimeError):
    """Another process is writing the same output; the message names it (pid, host, start time, command)."""


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of ``path``: ``.<name>.lock`` in the same folder."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _describe(info: dict | None) -> str:
    if not info:
        return "another process (it is just starting)"
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
            + (f" ({info['command']})" if info.get("command") else ""))


def _read_info(fd_or_path) -> dict | None:
    try:
        if isinstance(fd_or_path, int):
            os.lseek(fd_or_path, 0, os.SEEK_SET)
            text = os.read(fd_or_path, 1 << 16).decode("utf-8", "replace")
        else:
            text = Path(fd_or_path).read_text(encoding="utf-8", errors="replace")
        info = json.loads(text)
        return info if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


def lock_holder(path: str | os.PathLike) -> dict | None:
    """Who holds the lock of ``path`` as recorded in its lock file (``None``: no lock file). The
    record may be stale; only taking the lock tells."""
    return _read_info(lock_path(path))


def _my_info(command: str | None) -> bytes:
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()), "command": command or " ".join(sys.argv)}
    return (json.dumps(info) + "\n").encode("utf-8")


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, but belongs to someone else
    return True


def _stale_note(path: Path, old: dict | None) -> None:
    print(f"note: {path} was locked by {_describe(old)}, which is no longer running; taking the lock over",
          file=sys.stderr, flush=True)


def _try_flock(lock: Path, path: Path, mine: bytes) -> int | None:
    """The locked descriptor of ``lock``, or None when another process holds it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:  # the holder we waited for may have removed the file: then lock the new one
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        old = _read_info(fd)
        if old is not None:  # a lock file nobody held: its process died without releasing it
            _stale_note(path, old)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, mine)
        return fd


def _try_exclusive(lock: Path, path: Path, mine: bytes) -> int | None:
    """Without fcntl: create ``lock`` with O_EXCL; a lock of a dead pid on this host is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            old = _read_info(lock)
            if old and old.get("host") == socket.gethostname() and not _pid_alive(old.get("pid")):
                _stale_note(path, old)
                lock.unlink(missing_ok=True)
                continue
            return None
        os.write(fd, mine)
        return fd
    return None


def _take(take, lock: Path, path: Path, mine: bytes) -> int | None:
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        return take(lock, path, mine)
    except OSError as e:
        raise OutputError(f"{path} cannot be written: its lock {lock} cannot be created ({e.strerror or e}); "
                          "choose a writable location") from e


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, *, command: str | None = None, wait: float = 0.0, what: str = "") -> Iterator[Path]:
    """Hold the lock of ``path`` while the block runs (see the module's doc); yields the lock file.

    Another holder raises :class:`OutputLockedError` naming it, at once or after ``wait`` seconds.
    ``what`` names the output in that message (default: ``path``)."""
    path = Path(path)
    lock = lock_path(path.absolute())
    mine = _my_info(command)
    deadline = time.monotonic() + wait
    take = _try_flock if fcntl is not None else _try_exclusive
    while (fd := _take(take, lock, path, mine)) is None:
        if time.monotonic() >= deadline:
            holder = _read_info(lock)
            raise OutputLockedError(
                f"{what or path} is being written by {_describe(holder)}; wait until it has finished, or choose another "
                f"output. If that process is gone (another host, a reused pid), delete {lock}"
            )
        time.sleep(0.05)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)  # before closing: a process waiting on this file will see it is gone
        os.close(fd)
