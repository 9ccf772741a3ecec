"""Run one child process (a musubi entry point) in its own process group, teeing its output to a log file.

- The child gets a new session (`start_new_session=True`), so a terminal's Ctrl-C reaches only us; we forward it
  (and SIGTERM, and SIGHUP: a closed terminal or SSH session) to the child's whole group (accelerate's workers
  included), wait up to `grace_s`, then SIGKILL what is left. A second signal kills at once. This mirrors how
  SimpleTuner stops its trainer.
- The child never outlives us, even when we die without running a handler (SIGKILL, the OOM killer): it runs under
  childguard.py, which the kernel tells when we die (PR_SET_PDEATHSIG) and which then kills the whole group.
- One thread reads the child's output and drives the `console` (a progress display may write the summary and draw
  plots from there); `run_logged` returns only after that thread has ended, so from then on the caller's thread is
  the only one writing them.
- Output goes to the console unchanged (musubi's tqdm bars keep working) and to the log with carriage returns turned
  into line breaks, so the log reads as lines and its tail can be shown when the stage fails.
"""

from __future__ import annotations

import errno
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .context import say
from .errors import Interrupted, StageFailed

GRACE_S = 30.0
TAIL_LINES = 40
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GUARD = str(Path(__file__).with_name("childguard.py"))
POLL_S = 0.2  # the output thread looks for its stop request this often while the pipe is silent
DRAIN_S = 5.0  # after the child's group is gone, what is still in the pipe is read for at most this long


class _LineLog:
    """Writes child output to a log file with '\\r' and '\\r\\n' turned into '\\n' (also across chunk borders)."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.pending_cr = False

    def write(self, chunk: bytes) -> None:
        if self.pending_cr:
            chunk = b"\r" + chunk
            self.pending_cr = False
        if chunk.endswith(b"\r"):
            chunk, self.pending_cr = chunk[:-1], True
        self.f.write(chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        self.f.flush()

    def close(self) -> None:
        if self.pending_cr:
            self.f.write(b"\n")
        self.f.flush()


class _GroupStopper:
    """Signal handlers that stop the child's process group: forward the signal, SIGKILL after a grace period."""

    def __init__(self, proc: subprocess.Popen, stage: str, grace_s: float):
        self.proc, self.stage, self.grace_s = proc, stage, grace_s
        self.signum: int | None = None
        self._saved: dict[int, object] = {}

    def __enter__(self) -> _GroupStopper:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._saved[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._saved.items():
            signal.signal(s, h)

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is not None:  # second signal: no more waiting
            say(f"\nkilling {self.stage} now")
            kill_group(self.proc, signal.SIGKILL)
            return
        self.signum = signum
        say(
            f"\n{signal.Signals(signum).name}: stopping {self.stage} (waiting up to {self.grace_s:.0f} s; "
            f"press Ctrl-C again to kill it at once)"
        )
        kill_group(self.proc, signal.SIGTERM if signum == signal.SIGHUP else signum)
        timer = threading.Timer(self.grace_s, kill_group, (self.proc, signal.SIGKILL))
        timer.daemon = True
        timer.start()


def kill_group(proc: subprocess.Popen, signum: int) -> None:
    """Send `signum` to the process group led by `proc` (created with start_new_session); ignore a gone group."""
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def run_logged(
    argv: list[str],
    *,
    stage: str,
    log_path: Path | None,
    env: dict[str, str],
    cwd: Path | None = None,
    grace_s: float = GRACE_S,
    console: BinaryIO | None = None,
    abort: Callable[[], str | None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> None:
    """Run `argv` (a list, never a shell string) to completion, streaming its output to the console and `log_path`.

    `console` gets every raw chunk (a progress display may stand in for the terminal; an exception in it is
    logged and the raw output shown instead). `abort` is asked after each chunk: a reason (e.g. the loss went NaN) stops the
    child's group and fails the stage with it. `on_start(pgid)` is called once the child's process group exists (the
    run lock records it). Raises StageFailed (non-zero exit, or the log could not be written, e.g. a full
    disk: the child is then stopped rather than left blocked on a pipe nobody reads; carries the command and log
    path) or Interrupted (Ctrl-C/SIGTERM/SIGHUP, after the child's group has exited). The log is appended to, so one
    file can hold several commands of a stage; `log_path` None keeps no log (a machine that writes no file).
    """
    console = console if console is not None else sys.stdout.buffer
    try:
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        # unbuffered: a write that fails (disk full) fails once, in the pump, not again when the file is closed
        logf = open(log_path or os.devnull, "ab", buffering=0)  # noqa: SIM115 - closed below, after the pump drained
        logf.write(f"$ {shlex.join(argv)}\n".encode())
        logf.flush()
    except OSError as e:
        raise StageFailed(stage, _log_failure(log_path, e), argv, log_path) from None
    with logf:
        log = _LineLog(logf)
        try:
            if shutil.which(argv[0]) is None:  # say so here: the guard would only report it in its exit code
                raise FileNotFoundError(errno.ENOENT, "no such program", argv[0])
            proc = subprocess.Popen(
                [sys.executable, GUARD, str(os.getpid()), "--", *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as e:
            raise StageFailed(stage, f"could not start {argv[0]}: {e}", argv, log_path) from None
        if on_start is not None:
            on_start(proc.pid)
        pump = _Pump(proc, console, log, abort)
        thread = threading.Thread(target=pump.run, name="hvlora-output", daemon=True)
        with _GroupStopper(proc, stage, grace_s) as stopper:
            thread.start()
            rc = _wait(proc)
            # Leftover grandchildren (dataloader workers) may hold the pipe open: end them, then drain what is left
            # and wait for the output thread to finish whatever it is doing (drawing a plot, writing the summary).
            kill_group(proc, signal.SIGKILL)
            _wait_group_gone(proc.pid)
            pump.stop()
            thread.join()
        if pump.log_error is None:
            try:
                log.close()
                logf.write(f"[exit code {rc}]\n".encode())
                logf.flush()
            except OSError as e:
                pump.log_error = e
    if stopper.signum is not None:
        raise Interrupted(stopper.signum, stage)
    if pump.log_error is not None:
        raise StageFailed(stage, _log_failure(log_path, pump.log_error), argv, log_path, returncode=rc)
    if pump.aborted is not None:
        raise StageFailed(stage, pump.aborted, argv, log_path, returncode=rc)
    if rc != 0:
        raise StageFailed(stage, _describe_exit(rc), argv, log_path, returncode=rc)


def _wait_group_gone(pgid: int, timeout: float = 3.0) -> None:
    """After SIGKILL, wait (briefly) until no process of the group is left: nothing the stage started outlives it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def _wait(proc: subprocess.Popen) -> int:
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # a SIGINT that arrived before our handler was installed
            kill_group(proc, signal.SIGINT)
            time.sleep(0.1)


def _log_failure(log_path: Path, e: OSError) -> str:
    folder = log_path.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 1e9:.2f} GB free there"
    except OSError:
        free = "its free space is unknown"
    full = e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
    what = "the disk is full" if full else "writing failed"
    return (
        f"could not write its log {log_path} ({e.strerror or e}): {what} in {folder} ({free}); the process was "
        "stopped. Free space there (old run folders in output/runs, checkpoints), then run the same command again"
    )


class _Pump:
    """Copies the child's output to the log and the console until the pipe closes. It never stops draining: a
    child blocked on a full pipe would never exit. If the log cannot be written (disk full), it stops logging, ends
    the child's group (a run whose log and checkpoints cannot be written is wasted GPU time) and keeps draining."""

    def __init__(self, proc: subprocess.Popen, console: BinaryIO, log: _LineLog, abort=None):
        self.proc, self.console, self.log, self.abort = proc, console, log, abort
        self.log_error: OSError | None = None
        self.aborted: str | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish once the pipe has nothing more to read: a process outside the child's group (one that left it)
        may keep the pipe open for ever, and the caller must not wait for it."""
        self._stop.set()

    def run(self) -> None:
        fd = self.proc.stdout.fileno()
        stopping_since = None
        while True:
            ready, _, _ = select.select([fd], [], [], POLL_S)
            if self._stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                # drained, or a stray writer that never pauses: either way the caller gets its thread back
                if not ready or time.monotonic() - stopping_since > DRAIN_S:
                    break
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self._log(chunk)
            self._show(chunk)
            self._check_abort()
        self.proc.stdout.close()

    def _show(self, chunk: bytes) -> None:
        try:
            self.console.write(chunk)
            self.console.flush()
        except (OSError, ValueError):  # console gone (closed pipe): keep logging
            pass
        except Exception as e:  # a display bug must not stop the pump: show the raw output from now on
            self._log(f"\n[hvlora: progress display stopped: {type(e).__name__}: {e}]\n".encode())
            self.console = sys.stdout.buffer

    def _check_abort(self) -> None:
        if self.abort is None or self.aborted is not None:
            return
        try:
            reason = self.abort()
        except Exception:  # noqa: BLE001 - a broken guard must not stop the run
            return
        if reason:
            self.aborted = reason
            self._log(f"\n{reason}\n".encode())
            kill_group(self.proc, signal.SIGTERM)

    def _log(self, chunk: bytes) -> None:
        if self.log_error is not None:
            return
        try:
            self.log.write(chunk)
        except OSError as e:
            self.log_error = e
            kill_group(self.proc, signal.SIGTERM)


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


def log_tail(log_path: Path, n: int = TAIL_LINES) -> list[str]:
    """The last `n` non-empty lines of a log file (decoded leniently); [] if it does not exist."""
    try:
        with open(log_path, "rb") as f:
            lines: deque[bytes] = deque(maxlen=n)
            for line in f:
                if line.strip():
                    lines.append(line.rstrip(b"\r\n"))
    except FileNotFoundError:
        return []
    return [ln.decode("utf-8", "replace") for ln in lines]
