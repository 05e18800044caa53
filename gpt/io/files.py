"""Writing files so that nothing is lost: output checks before the work, atomic writes after it.

* :func:`check_output` is called by every command for every output path *before* any expensive work:
  an existing output is refused unless the caller allows overwriting, and an output whose folder
  cannot be written is reported at once, not after an hour of training.
* :func:`atomic_file` (and :func:`atomic_write_bytes` / :func:`atomic_write_text` built on it) write a
  file in one step: the bytes go to a temporary file next to the target, are flushed to disk (``fsync``)
  and then renamed over the target. A crash leaves either the old file or the new one, never a half-written one.
* :func:`sha256_file` / :func:`sha256_bytes`: the package's one sha256 helper.
* :func:`atomic_dir` does the same for a folder of files (a checkpoint, an adapter): everything is
  written into a temporary folder that replaces the target in one rename.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import GPTError, OutputExistsError

__all__ = ["check_output", "atomic_file", "atomic_write_bytes", "atomic_write_text", "atomic_dir", "replace_dir", "fsync_dir",
           "OutputError", "sha256_bytes", "sha256_file"]


class OutputError(GPTError, OSError):
    """An output cannot be written (read-only folder, full disk, a file where a folder should be)."""


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of ``data``: the package's one sha256 helper, with :func:`sha256_file`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _explain(e: OSError, path: Path) -> str:
    if e.errno == errno.ENOSPC:
        return f"the disk holding {path} is full ({e.strerror}); free some space or choose another location"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path} cannot be written ({e.strerror}); choose a writable location"
    return f"{path} cannot be written ({e.strerror or e})"


def check_output(path: str | os.PathLike, *, kind: str = "file", overwrite: bool = False, flag: str = "--overwrite") -> Path:
    """Check before any work that ``path`` can become an output ``kind`` (``"file"`` or ``"dir"``).

    Raises :class:`~gpt.errors.OutputExistsError` if something is already there and ``overwrite``
    is false (the message names ``flag``, the option that allows it), :class:`OutputError` if a
    file stands where a folder is needed (or the reverse) or the nearest existing parent folder is
    not writable. Returns the path.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    path = Path(path)
    if path.exists():
        if kind == "file" and path.is_dir():
            raise OutputError(f"{path} is a folder, but a file is to be written there; give a file path")
        if kind == "dir" and not path.is_dir():
            raise OutputError(f"{path} is a file, but a folder is to be written there; give a folder path")
        if not overwrite and (kind == "file" or any(path.iterdir())):
            raise OutputExistsError(f"{path} already exists; pass {flag} to replace it, or choose another path")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{parent} is a file, so {path} cannot be created below it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{parent} is not writable, so {path} cannot be created; choose a writable location")
    return path


class AtomicFile:
    """The open temporary file of :func:`atomic_file`: ``write`` it; a write the disk refuses is an :class:`OutputError`."""

    def __init__(self, f, path: Path, temporary: Path):
        self.f, self.path, self.temporary = f, path, temporary

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            raise OutputError(_explain(e, self.path)) from e

    def sync(self) -> None:
        """Flush what was written to disk (``fsync``), e.g. before reading the temporary file back."""
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
        except OSError as e:
            raise OutputError(_explain(e, self.path)) from e


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[AtomicFile]:
    """Write a file in one step: ``with atomic_file(path) as f: f.write(data)``; creates parent folders.

    The bytes go to a temporary file ``.<name>.<random><suffix>`` next to ``path``; when the block ends
    without an error they are flushed to disk (``fsync``) and the file is renamed over ``path``. If the
    block raises (Ctrl-C included) the temporary file is removed and ``path`` is untouched: that is also
    how a caller refuses what it wrote (a download whose sha256 is wrong). A failure of the disk is an
    :class:`OutputError` (the OSError is its ``__cause__``); the block's own exceptions pass through.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the permissions a plain open() would
    except OSError as e:
        raise OutputError(_explain(e, path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            out = AtomicFile(f, path, Path(tmp))
            yield out
            out.sync()
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise OutputError(_explain(e, path)) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` in one step (:func:`atomic_file`: temporary file, fsync, rename); creates parent folders."""
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_tree(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False, flag: str = "--overwrite") -> Iterator[Path]:
    """Build a folder in one step: ``with atomic_dir("runs/x") as tmp: write files into tmp``.

    The files are written into a temporary sibling folder; when the block ends without an error they
    are fsynced and the folder is renamed to ``path`` (an existing ``path`` is replaced only with
    ``overwrite``, and is removed only after the new folder is in place). If the block raises
    (Ctrl-C included), the temporary folder is deleted and ``path`` is untouched.
    """
    path = Path(path)
    check_output(path, kind="dir", overwrite=overwrite, flag=flag)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    except OSError as e:
        raise OutputError(_explain(e, path)) from e
    try:
        yield tmp
        replace_dir(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(_explain(e, path)) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def others_in(path: str | os.PathLike, new: str | os.PathLike, outputs: Iterable[str]) -> list[str]:
    """Names of the entries of the folder ``path`` that are neither one of ``outputs`` (what a run writes there)
    nor in the folder ``new``: the files a user kept in ``path``, which :func:`replace_dir` moves into ``new``."""
    path, new, outputs = Path(path), Path(new), set(outputs)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.name not in outputs and not (new / p.name).exists())


def replace_dir(new: str | os.PathLike, path: str | os.PathLike, outputs: Iterable[str] | None = None) -> Path:
    """Put the complete folder ``new`` in the place of ``path`` (which may exist): ``new`` is fsynced,
    the old ``path`` is moved aside, ``new`` renamed to ``path``, and only then the old one deleted.
    A crash leaves the old folder or the new one at ``path`` (or, between the two renames, the old
    one in ``.<name>.old-<pid>`` beside it); both must be on the same filesystem (siblings).

    ``outputs``: the names of what the run writes into ``path``; every other entry of the old ``path``
    (:func:`others_in`: a user's notes, plots, ...) is first moved into ``new``, so it is kept, not deleted.
    A crash after that move leaves those entries in ``new`` (the staging folder), never lost."""
    new, path = Path(new), Path(path)
    for name in others_in(path, new, outputs) if outputs is not None else []:
        os.replace(path / name, new / name)
    _fsync_tree(new)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        if old is not None:
            os.replace(old, path)  # put the previous folder back
        raise
    fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working folder when it lies inside it, else as given: how results files and
    cards name a checkpoint, so that they read the same on every machine."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
