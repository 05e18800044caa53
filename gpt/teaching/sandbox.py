"""Running untrusted code (a student's notebook cells) isolated from everything else on the machine.

On Linux, :func:`run` starts the command inside new namespaces with util-linux's ``unshare`` (user,
mount, pid, network, ipc, uts) and a small shell script that builds a new root before anything
untrusted runs:

* a tmpfs root holding only read-only, ``nosuid``/``nodev`` bind mounts of what Python needs (``/usr``,
  ``/lib*``, a few files of ``/etc``, the Python prefix and venv, the installed ``gpt`` package folder
  only, the data mirror), a fresh ``/proc`` (its ``/proc/sys`` read-only), a minimal ``/dev``, a small
  tmpfs ``/tmp``, and the scratch folder, the only place it can write (``/scratch``, also its home);
* ``pivot_root`` into it and the old root unmounted, so the teacher's files, the solutions, the other
  submissions and the grades are not in its file tree at all;
* an empty network namespace (no network), its own pid namespace (it sees only its own processes, and
  when its first process ends the kernel kills every process left in it: nothing outlives a run);
* every capability dropped (``setpriv``: empty bounding and inheritable sets, ``no_new_privs``,
  securebits ``noroot``), so it cannot remount anything or gain privileges through a set-uid program;
  mounts made read-only here stay locked read-only in any namespace it makes itself;
* limits (``prlimit``): address space, CPU seconds, processes, file size (its output), no core files.

When the grader runs as root, the namespace maps uid 0 to root only while the script mounts, and the
command then runs as an unprivileged uid (host ``nobody``, 65534): it owns nothing on the host and the
process-count limit applies to it (the kernel does not enforce RLIMIT_NPROC on root). As a normal user,
the namespace maps the user to uid 0 inside, with no capabilities left once the command starts.

The caller reads the command's stdout (capped at ``Limits.output_bytes``) and its stderr (a file, whose
tail is returned); a run past ``Limits.wall_seconds`` is killed whole and reported as timed out.
:func:`isolation_problem` says why isolation is unavailable ('' when it is available); there is no
silent weaker mode: :func:`run` with ``isolate=False`` is the caller's explicit choice.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import GPTError

SANDBOX_UID = 65534  # host uid the command runs as when the grader is root ("nobody")
INNER_UID = 1000  # that uid's number inside the namespace
TOOLS = ("unshare", "setpriv", "prlimit", "mount", "umount", "pivot_root")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group", "hosts")
TOP_LEVEL = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
LOG_TAIL = 4000

# Runs as root of the new user namespace. $1: "wait" (the grader writes the uid map, then a line on
# stdin) or "go"; $2: the new root's mount point; $3: the scratch folder; $4: the uid:gid to run as, or
# "-"; $5: the prlimit options; then "ro" PATH... up to "--", then the command.
SETUP = r"""
set -eu
if [ "$1" = wait ]; then read -r _; fi
exec </dev/null
CALLER_PATH=${PATH:-/usr/bin:/bin}; PATH=/usr/sbin:/usr/bin:/sbin:/bin
R=$2; SCRATCH=$3; RUNAS=$4; LIMITS=$5; shift 5
mount -t tmpfs -o size=4m,mode=755,nosuid,nodev gpt-sandbox "$R"
bind() {  # bind PATH read-only at the same path in the new root
  if [ -L "$1" ]; then mkdir -p "$R$(dirname "$1")"; ln -s "$(readlink "$1")" "$R$1"; return; fi
  if [ -d "$1" ]; then mkdir -p "$R$1"; else mkdir -p "$R$(dirname "$1")"; : > "$R$1"; fi
  mount --bind "$1" "$R$1"
  mount -o remount,bind,ro,nosuid,nodev "$R$1"
}
mkdir -p "$R/tmp"  # /tmp first: what is bound below may live under the host's /tmp (a venv made by mktemp)
mount -t tmpfs -o size=256m,mode=1777,nosuid,nodev gpt-tmp "$R/tmp"
while [ "$1" != "--" ]; do bind "$2"; shift 2; done; shift
mkdir -p "$R/scratch" "$R/proc" "$R/dev/shm" "$R/.old"
mount --bind "$SCRATCH" "$R/scratch"
mount -o remount,bind,nosuid,nodev "$R/scratch"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro,nosuid,nodev,noexec "$R/proc/sys"
for d in null zero full random urandom; do : > "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
ln -s /proc/self/fd "$R/dev/fd"
mount -t tmpfs -o size=64m,mode=1777,nosuid,nodev gpt-shm "$R/dev/shm"
cd "$R"
pivot_root . .old
umount -l /.old
rmdir /.old
cd /scratch
PATH=$CALLER_PATH
if [ "$RUNAS" != "-" ]; then
  exec prlimit $LIMITS -- setpriv --reuid="${RUNAS%:*}" --regid="${RUNAS#*:}" --clear-groups --bounding-set=-all \
    --inh-caps=-all --no-new-privs "$@"
fi
exec prlimit $LIMITS -- setpriv --bounding-set=-all --inh-caps=-all --no-new-privs \
  --securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked "$@"
"""


class SandboxError(GPTError, RuntimeError):
    """Isolation is unavailable, or the sandbox could not be set up."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    wall_seconds: float  # killed whole after this, reported as timed out
    memory_bytes: int = 6 * 2**30  # address space of each process (RLIMIT_AS); importing torch maps ~2 GiB
    processes: int = 64  # processes and threads of the run (RLIMIT_NPROC)
    output_bytes: int = 16 * 2**20  # stdout kept, and the largest file it may write (RLIMIT_FSIZE)

    def prlimit_options(self, processes: bool = True) -> str:
        """The limits as ``prlimit`` options (without the process count outside a namespace, where it would count
        every process of this user)."""
        cpu = int(math.ceil(self.wall_seconds)) + 5
        nproc = f" --nproc={self.processes}" if processes else ""
        return f"--as={self.memory_bytes} --cpu={cpu}{nproc} --fsize={self.output_bytes} --core=0"


@dataclass
class Outcome:
    """How a run ended: its stdout (at most ``output_bytes``), the end of its stderr, and why it stopped."""

    stdout: bytes
    log: str
    returncode: int | None
    timed_out: bool
    output_exceeded: bool
    seconds: float  # wall-clock time it ran


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


@functools.lru_cache(maxsize=None)
def isolation_problem() -> str:
    """'' when :func:`run` can isolate here (a trial run of the whole sandbox succeeded); else one sentence why not."""
    if not sys.platform.startswith("linux"):
        return f"isolation needs Linux namespaces, and this is {sys.platform}"
    missing = [t for t in TOOLS if _tool(t) is None]
    if missing:
        return f"isolation needs util-linux's {', '.join(missing)}, not found on PATH"
    with tempfile.TemporaryDirectory(prefix="gpt-sandbox-trial-") as tmp:
        os.chmod(tmp, 0o755)
        try:
            outcome = run(["/bin/sh", "-c", "echo ok"], workdir=Path(tmp), scratch=Path(tmp) / "scratch",
                          limits=Limits(wall_seconds=60), env={"PATH": "/usr/bin:/bin"}, trial=True)
        except (OSError, SandboxError) as e:
            return f"the sandbox could not start ({e})"
    if outcome.stdout.strip() != b"ok":
        why = (outcome.log.strip().splitlines() or [f"exit status {outcome.returncode}"])[-1]
        return f"user namespaces or mounts in them are unavailable here ({why.strip()})"
    return ""


def _read_only_paths(extra: list[Path]) -> list[str]:
    """What the sandbox sees (read-only): the system's programs and libraries, a few /etc files, Python, ``extra``."""
    paths = [p for p in TOP_LEVEL if os.path.lexists(p)]
    paths += [f"/etc/{f}" for f in ETC_FILES if os.path.exists(f"/etc/{f}")]
    python = [Path(sys.base_prefix), Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent.parent]
    for p in [*python, *extra]:
        p = str(Path(p).resolve())
        if os.path.exists(p) and not any(p == q or p.startswith(q.rstrip("/") + "/") for q in paths):
            paths.append(p)
    return paths


def _command(root: Path, scratch: Path, argv: list[str], limits: Limits, read_only: list[Path], as_root: bool) -> list[str]:
    runas = f"{INNER_UID}:{INNER_UID}" if as_root else "-"
    binds = [x for p in _read_only_paths(read_only) for x in ("ro", p)]
    namespaces = ["--user", "--mount", "--pid", "--fork", "--net", "--ipc", "--uts", "--kill-child"]
    if not as_root:
        namespaces.insert(1, "--map-root-user")
    return [_tool("unshare"), *namespaces, "sh", "-c", SETUP, "gpt-sandbox", "wait" if as_root else "go",
            str(root), str(scratch), runas, limits.prlimit_options(), *binds, "--", *argv]


def _map_users(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """As root: map uid/gid 0 to root (for the mounts) and INNER_UID to SANDBOX_UID in the new namespace."""
    own, deadline = os.readlink("/proc/self/ns/user"), time.monotonic() + timeout
    while True:
        try:
            if os.readlink(f"/proc/{proc.pid}/ns/user") != own:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SandboxError("the sandbox's user namespace did not appear (unshare failed); see its log")
        time.sleep(0.002)
    for kind in ("uid", "gid"):
        with open(f"/proc/{proc.pid}/{kind}_map", "w") as f:
            f.write(f"0 0 1\n{INNER_UID} {SANDBOX_UID} 1\n")
    proc.stdin.write(b"go\n")
    proc.stdin.close()


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (for unshare: the first process of the sandbox's pid namespace)."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _kill(proc: subprocess.Popen) -> None:
    """Kill the run: the namespace's first process (the kernel then kills every process in its pid namespace,
    even one that left the process group), then the process group."""
    for child in _children(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def _read_capped(proc: subprocess.Popen, limits: Limits) -> tuple[bytes, bool, bool]:
    """Read stdout until it closes; returns (bytes, timed_out, output_exceeded), killing the run on either."""
    chunks, size, deadline = [], 0, time.monotonic() + limits.wall_seconds
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b"".join(chunks), True, False
            if not sel.select(timeout=min(left, 1.0)):
                continue
            data = os.read(proc.stdout.fileno(), 1 << 16)
            if not data:
                return b"".join(chunks), False, False
            chunks.append(data)
            size += len(data)
            if size > limits.output_bytes:
                return b"".join(chunks)[: limits.output_bytes], False, True


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - LOG_TAIL))
        return f.read().decode("utf-8", "replace")


_LIVE: set[subprocess.Popen] = set()  # runs in progress in this process, killed by kill_all()


@contextlib.contextmanager
def tracked(cmd: list[str], cwd: Path):
    """A trusted child process (stdout and stderr piped) that :func:`kill_all` kills too; killed on leaving."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            start_new_session=True)
    _LIVE.add(proc)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            _kill(proc)
        _LIVE.discard(proc)


def kill_all() -> None:
    """Kill every run this process has in progress (the grader's signal handlers call it)."""
    for proc in list(_LIVE):
        _kill(proc)


def run(argv: list[str], *, workdir: Path, scratch: Path, limits: Limits, env: dict[str, str],
        read_only: list[Path] = (), isolate: bool = True, trial: bool = False) -> Outcome:
    """Run ``argv`` with ``scratch`` as its only writable folder; ``workdir`` (the caller's, private) holds the log.

    ``read_only``: folders it may read besides the system and Python (the package, the data mirror).
    With ``isolate=False`` it runs as a plain child process with the same limits where they apply
    (no namespaces: it can read and write whatever this user can). ``trial``: :func:`isolation_problem`'s own run.
    """
    if isolate and not trial and isolation_problem():
        raise SandboxError(isolation_problem())
    as_root = isolate and os.geteuid() == 0
    scratch.mkdir(parents=True, exist_ok=True)
    if as_root:
        os.chown(scratch, SANDBOX_UID, SANDBOX_UID)
    log_path = workdir / "sandbox.log"
    if isolate:
        (workdir / "root").mkdir(exist_ok=True)
        cmd = _command(workdir / "root", scratch, argv, limits, list(read_only), as_root)
    else:
        prlimit = _tool("prlimit")
        cmd = [prlimit, *limits.prlimit_options(processes=False).split(), "--", *argv] if prlimit else list(argv)
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                cwd=scratch, start_new_session=True)
    _LIVE.add(proc)
    try:
        if as_root:
            _map_users(proc)
        else:
            proc.stdin.close()
        out, timed_out, exceeded = _read_capped(proc, limits)
        if timed_out or exceeded:
            _kill(proc)
        else:
            try:
                proc.wait(timeout=max(1.0, limits.wall_seconds))
            except subprocess.TimeoutExpired:
                _kill(proc)
                timed_out = True
        return Outcome(out, _tail(log_path), None if timed_out else proc.returncode, timed_out, exceeded,
                       time.monotonic() - start)
    finally:
        if proc.poll() is None:
            _kill(proc)
        proc.stdout.close()
        _LIVE.discard(proc)
