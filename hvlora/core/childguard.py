"""Run a command so that it never outlives the process that started it: `python childguard.py PARENT_PID -- ARGV`.

The kernel's PR_SET_PDEATHSIG signals only a process's direct child, and `accelerate launch` starts musubi as a
child of its own: if our process died without running its handlers (SIGKILL, the OOM killer, a closed terminal),
the launcher would die with it and the trainer go on, unseen, holding the GPU and writing into the run folder. So
the runner starts this guard as the leader of a new process group; the guard asks for SIGUSR1 when its parent dies
and starts the command in the same group (with PR_SET_PDEATHSIG itself, and default signal handlers); on SIGUSR1
it SIGKILLs the whole group, itself included. Signals the runner sends the group on purpose (SIGINT, SIGTERM,
SIGHUP: stop gracefully) are for the command; the guard waits for it and exits as it did (code, or the same
signal). Stdlib only, run by path (the child's Python need not import this package); Linux only for the parent
link: elsewhere the guard just runs the command.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_DIED = signal.SIGUSR1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _kill_group(*_args) -> None:
    os.killpg(0, signal.SIGKILL)


def _on_parent_death(signum: int) -> bool:
    """Ask the kernel for `signum` when the parent dies; False where prctl is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _child_setup() -> None:
    """In the command's process, before exec: the default stop handlers (the guard ignores them) and its own parent
    link (the guard dies only by SIGKILL, with the whole group)."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    _on_parent_death(signal.SIGKILL)


def main(argv: list[str]) -> int:
    parent, sep, command = argv[0], argv[1], argv[2:]
    if sep != "--" or not command:
        print("usage: childguard.py PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    signal.signal(PARENT_DIED, _kill_group)
    if _on_parent_death(PARENT_DIED) and os.getppid() != int(parent):
        _kill_group()  # the parent died before the link was made
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(command, preexec_fn=_child_setup)  # noqa: PLW1509 - single-threaded here
    except OSError as e:
        print(f"could not start {command[0]}: {e}", file=sys.stderr, flush=True)
        return 127
    rc = proc.wait()
    if rc < 0:  # die of the same signal, so the runner sees what the command saw
        if -rc not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
