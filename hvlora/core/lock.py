"""One training run at a time per output folder: `RUN/lock.json` held with an exclusive `fcntl.flock`.

The kernel drops a flock when its holder's last file descriptor closes, so a lock whose holder died (SIGKILL,
OOM kill, a power cut, a container stopped) can always be taken again: a lock *file* whose flock can be taken is
stale; one whose flock is held is live. flock works across processes and containers that share a host folder
(one kernel); on NFS Linux maps it to a POSIX lock held by the server. The JSON inside ({pid, host, started_at,
argv, token, child_pgid}) names the holder and what it started: pid and host are as the holder saw them (a
container's own pid and host name); every child process of the run carries `HVLORA_RUN_TOKEN=<token>` in its
environment, and `child_pgid` is the process group of the newest one. A lock is stale when its holder died, but
its children may live on (they should not: runner.py ties them to us; an older version did not), so taking one
over first stops whatever still carries its token (`stop_leftovers`).

Starting a run takes a short-held exclusive guard flock on `OUTPUT/runs/.lock` while it scans its sibling run
folders and creates its own lock, so two runs started at the same moment cannot both pass the check; probing
(`find_live_lock`) takes the guard shared, so it never sees a lock file between its creation and its flock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .timefmt import utc_now

LOCK_NAME = "lock.json"
GUARD_NAME = ".lock"
BUSY_RETRY_S = 0.2  # retry a busy flock this long before calling it live (probers hold theirs for microseconds)
TOKEN_VAR = "HVLORA_RUN_TOKEN"  # in the environment of every child process of a run
STOP_GRACE_S = 10.0  # a leftover process of a dead run gets this long after SIGTERM before SIGKILL


@dataclass(frozen=True)
class LockInfo:
    """A run folder's lock file: who wrote it (pid, host, started_at ISO UTC, argv; None/[] when the file is empty
    or unreadable, e.g. its holder died while writing it) and `stale`: True when nobody holds its flock."""

    path: Path
    run_dir: Path
    pid: int | None
    host: str | None
    started_at: str | None
    argv: list[str]
    stale: bool
    token: str | None = None
    child_pgid: int | None = None

    def describe(self) -> str:
        """'pid 1234 on host gpu1, started 2025-01-02T03:04:05+00:00' (with 'unknown' for missing fields)."""
        return f"pid {self.pid or 'unknown'} on host {self.host or 'unknown'}, started {self.started_at or 'unknown'}"


class LockHeld(UserError):
    """Another live run holds the lock of this output folder. `info` names it. Exit code 2."""

    def __init__(self, info: LockInfo):
        super().__init__(
            f"another training run is using this output folder: {info.run_dir.name} ({info.describe()}); "
            f"wait for it to finish or stop it (its lock: {info.path})"
        )
        self.info = info


def _read_info(fd: int, path: Path, stale: bool) -> LockInfo:
    try:
        data = json.loads(os.pread(fd, 1 << 20, 0).decode("utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    pid = data.get("pid")
    argv = data.get("argv")
    return LockInfo(
        path=path,
        run_dir=path.parent,
        pid=pid if isinstance(pid, int) else None,
        host=data.get("host") if isinstance(data.get("host"), str) else None,
        started_at=data.get("started_at") if isinstance(data.get("started_at"), str) else None,
        argv=[str(a) for a in argv] if isinstance(argv, list) else [],
        stale=stale,
        token=data.get("token") if isinstance(data.get("token"), str) else None,
        child_pgid=data.get("child_pgid") if isinstance(data.get("child_pgid"), int) else None,
    )


def _flock(fd: int, mode: int, timeout: float) -> bool:
    """Try flock(fd, mode | LOCK_NB) until it succeeds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def probe(path: Path, timeout: float = 0.0) -> LockInfo | None:
    """The LockInfo of one lock file (stale if its flock can be taken, which is let go at once), or None when the
    file does not exist."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        free = _flock(fd, fcntl.LOCK_SH, timeout)
        return _read_info(fd, path, stale=free)
    finally:
        os.close(fd)  # also drops the shared flock


def find_locks(output_dir: Path) -> list[LockInfo]:
    """Every OUTPUT/runs/*/lock.json, probed under a shared flock of the guard (so no RunLock is starting
    meanwhile); live ones first, then by started_at, newest first."""
    runs = Path(output_dir) / "runs"
    guard = _open_guard(runs, shared=True)
    try:
        found = [i for p in sorted(runs.glob(f"*/{LOCK_NAME}")) if (i := probe(p)) is not None]
    finally:
        if guard is not None:
            os.close(guard)
    found.sort(key=lambda i: i.started_at or "", reverse=True)
    return sorted(found, key=lambda i: i.stale)


def find_live_lock(output_dir: Path) -> LockInfo | None:
    """The lock a run in this output folder holds (stale=False), else the newest stale one left by a dead run
    (stale=True: "taking over the stale lock of pid X ..."), else None. Scans OUTPUT/runs/*/lock.json."""
    locks = find_locks(output_dir)
    return locks[0] if locks else None


class RunLock:
    """Context manager: hold RUN/lock.json ({pid, host, started_at, argv, token, child_pgid}) with an exclusive flock
    while a run works. `token` goes into every child's environment (TOKEN_VAR); `record_child` notes a child's group.

    On entry (under the guard of RUN's parent folder, `OUTPUT/runs/.lock`): raises LockHeld if a sibling run folder
    or RUN itself has a live lock; removes stale sibling lock files and takes over RUN's own stale one (each listed
    in `took_over`, for the caller to report). On exit the file is removed, then the flock let go; if the process
    dies instead, the kernel lets go and the file stays behind as a stale lock. Not reentrant: a second RunLock on
    the same folder, in this process or another, raises LockHeld.
    """

    def __init__(self, run_dir: Path, argv: list[str] | None = None, *, timeout: float = BUSY_RETRY_S):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.argv = list(sys.argv if argv is None else argv)
        self.timeout = timeout
        self.took_over: list[LockInfo] = []
        self.token = secrets.token_hex(8)
        self._fd: int | None = None
        self._info: dict = {}

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (see the class docstring). Raises LockHeld, or OSError when the folder is not writable."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        guard = self._take_guard()
        try:
            self._clear_siblings()
            self._fd = self._lock_own()
            self._write_info()
        except BaseException:
            self.release()
            raise
        finally:
            os.close(guard)

    def release(self) -> None:
        """Remove the lock file and let go of the flock (idempotent)."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        finally:
            os.close(self._fd)
            self._fd = None

    def _take_guard(self) -> int:
        fd = _open_guard(self.run_dir.parent, shared=False)
        if fd is None:
            raise UserError(f"another run has been starting in {self.run_dir.parent} for a minute; try again")
        return fd

    def _clear_siblings(self) -> None:
        for path in sorted(self.run_dir.parent.glob(f"*/{LOCK_NAME}")):
            if path != self.path:
                info = self._remove_if_stale(path)
                if info is not None:
                    self.took_over.append(info)

    def _remove_if_stale(self, path: Path) -> LockInfo | None:
        """Delete a stale lock file (holding its flock while unlinking); LockHeld if live; None if gone."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            if not _flock(fd, fcntl.LOCK_EX, self.timeout):
                raise LockHeld(_read_info(fd, path, stale=False))
            info = _read_info(fd, path, stale=True)
            if _same_file(fd, path):
                path.unlink()
            return info
        finally:
            os.close(fd)

    def _lock_own(self) -> int:
        """Open and flock RUN/lock.json, retrying when a releasing holder unlinked it under us."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _flock(fd, fcntl.LOCK_EX, self.timeout):
                info = _read_info(fd, self.path, stale=False)
                os.close(fd)
                raise LockHeld(info)
            if _same_file(fd, self.path):
                if os.fstat(fd).st_size:
                    self.took_over.append(_read_info(fd, self.path, stale=True))
                return fd
            os.close(fd)

    def record_child(self, pgid: int) -> None:
        """Note the process group of the child just started (runner.run_logged's on_start)."""
        if self._fd is not None:
            self._info["child_pgid"] = pgid
            self._write_info()

    def _write_info(self) -> None:
        self._info = self._info or {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": utc_now(),
            "argv": self.argv,
            "token": self.token,
        }
        data = (json.dumps(self._info, indent=2) + "\n").encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)


def _open_guard(runs_dir: Path, shared: bool, timeout: float = 60.0) -> int | None:
    """Open and flock OUTPUT/runs/.lock (shared for probing, exclusive for starting a run); None when it cannot be
    taken in `timeout` seconds, or (shared only) when the folder is missing or not writable."""
    try:
        fd = os.open(runs_dir / GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if shared:
            return None
        raise
    if _flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, timeout):
        return fd
    os.close(fd)
    return None


def _same_file(fd: int, path: Path) -> bool:
    """True while `path` still names the open file `fd` (not unlinked or replaced by another process)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def stop_leftovers(info: LockInfo, grace_s: float = STOP_GRACE_S) -> str | None:
    """Before a stale lock is taken over: stop every process that still carries its run's token (a trainer left by
    a killed command keeps the GPU and writes into the run folder). SIGTERM to each, SIGKILL to what is left after
    `grace_s`. Returns what was done, for the console, or None when nothing of that run is alive. A lock of another
    host cannot be checked from here: says so. Raises UserError when a leftover cannot be stopped (another user's)."""
    if info.host and info.host != socket.gethostname():
        return (
            f"the stale lock was taken on host {info.host}: processes there cannot be checked from here; make sure "
            "nothing of that run still trains"
        )
    pids = _carrying(info.token) if info.token else []
    if not pids:
        return None
    names = sorted({_cmdline(p) for p in pids})
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        alive = _signal_all(pids, sig)
        alive = _wait_gone(alive, wait)
        if not alive:
            break
    if alive:
        raise UserError(
            f"processes of the earlier run {info.run_dir.name} are still alive and cannot be stopped from here (pids "
            f"{', '.join(map(str, alive))}): stop them, then run the same command again"
        )
    group = f" (process group {info.child_pgid})" if info.child_pgid else ""
    return f"stopped {len(pids)} process(es) the killed run left running{group}: {'; '.join(names)[:300]}"


def _carrying(token: str) -> list[int]:
    """Pids (of this user, readable in /proc) whose environment holds TOKEN_VAR=token; never our own."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone, or another user's
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:120]
    except OSError:
        return str(pid)


def _signal_all(pids: list[int], sig: int) -> list[int]:
    """Send `sig` to each pid; the ones that were there to receive it."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            alive.append(pid)
        except ProcessLookupError:
            pass
        except PermissionError:
            alive.append(pid)
    return alive


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Poll until none of `pids` exists (zombies count as gone) or `timeout` passes; the ones left."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if _exists(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
