"""One training run at a time per output folder: `RUN/lock.json` held with an exclusive `fcntl.flock`.

The kernel drops a flock when its holder's last file descriptor closes, so a lock whose holder died (SIGKILL,
OOM kill, a power cut, a container stopped) can always be taken again: a lock *file* whose flock can be taken is
stale; one whose flock is held is live. flock works across processes and containers that share a host folder
(one kernel); on NFS Linux maps it to a POSIX lock held by the server. The JSON inside ({pid, host, started_at,
argv}) is only there to name the holder; pid and host are as the holder saw them (a container's own pid and host
name).

Starting a run takes a short-held exclusive guard flock on `OUTPUT/runs/.lock` while it scans its sibling run
folders and creates its own lock, so two runs started at the same moment cannot both pass the check; probing
(`find_live_lock`) takes the guard shared, so it never sees a lock file between its creation and its flock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
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
    """Context manager: hold RUN/lock.json ({pid, host, started_at, argv}) with an exclusive flock while a run works.

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
        self._fd: int | None = None

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

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_now(), "argv": self.argv}
        data = (json.dumps(info, indent=2) + "\n").encode("utf-8")
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
