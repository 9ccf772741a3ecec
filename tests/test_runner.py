"""The subprocess runner with real child processes: tee to console and log, failures, signals, process groups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hvlora.core.errors import Interrupted, StageFailed
from hvlora.core.runner import log_tail, run_logged

ROOT = Path(__file__).resolve().parent.parent


class Console:
    """Collects what the runner shows; optionally sends us a signal when a marker appears (like a user's Ctrl-C
    once the child is running)."""

    def __init__(self, on: bytes | None = None, signum: int = signal.SIGINT):
        self.data, self.on, self.signum, self.sent = b"", on, signum, False

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        if self.on and self.on in self.data and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def flush(self) -> None:
        pass


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_output_goes_to_console_raw_and_to_the_log_as_lines(tmp_path):
    log = tmp_path / "logs" / "s.log"
    console = Console()
    run_logged(
        py("""
        import sys
        sys.stdout.write("start\\n"); sys.stdout.flush()
        for i in range(3):
            sys.stderr.write(f"\\rsteps: {i}/3"); sys.stderr.flush()
        sys.stderr.write("\\r\\n"); print("done")
    """),
        stage="s",
        log_path=log,
        env=dict(os.environ),
        console=console,
    )
    assert b"\rsteps: 2/3" in console.data  # progress bars reach the terminal unchanged
    lines = log.read_text().splitlines()
    assert lines[0].startswith("$ ") and sys.executable in lines[0]
    assert "steps: 0/3" in lines and "steps: 2/3" in lines and "done" in lines and "\r" not in log.read_text()
    assert lines[-1] == "[exit code 0]"


def test_failure_carries_exit_code_command_and_tail(tmp_path):
    log = tmp_path / "f.log"
    argv = py("""
        for i in range(100):
            print(f"line {i}")
        raise SystemExit(3)
    """)
    with pytest.raises(StageFailed) as e:
        run_logged(argv, stage="cache_latents", log_path=log, env=dict(os.environ), console=Console())
    assert e.value.returncode == 3 and e.value.command == argv and e.value.stage == "cache_latents"
    assert str(e.value) == "exited with code 3"
    tail = log_tail(log)
    assert len(tail) == 40 and tail[-2] == "line 99" and tail[-1] == "[exit code 3]"


def test_killed_child_is_described(tmp_path):
    with pytest.raises(StageFailed, match="was killed by SIGKILL"):
        run_logged(
            py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
            stage="t",
            log_path=tmp_path / "k.log",
            env=dict(os.environ),
            console=Console(),
        )


def test_missing_program(tmp_path):
    with pytest.raises(StageFailed, match="could not start"):
        run_logged([str(tmp_path / "nope")], stage="t", log_path=tmp_path / "n.log", env={}, console=Console())


def test_child_runs_in_its_own_process_group(tmp_path):
    console = Console()
    run_logged(
        py("import os; print(os.getpgid(0), os.getsid(0))"),
        stage="t",
        log_path=tmp_path / "g.log",
        env=dict(os.environ),
        console=console,
    )
    pgid, sid = map(int, console.data.split())
    assert pgid != os.getpgid(0) and sid != os.getsid(0)


GROUP_CHILD = """
    import os, subprocess, sys, signal
    worker = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    open({pidfile!r}, "w").write(f"{{os.getpid()}} {{worker.pid}}")
    {prelude}
    print("ready", flush=True)
    signal.pause()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_the_whole_group_and_raises_interrupted(tmp_path, signum):
    pidfile = tmp_path / "pids"
    code = GROUP_CHILD.format(pidfile=str(pidfile), prelude="")
    with pytest.raises(Interrupted) as e:
        run_logged(
            py(code),
            stage="train",
            log_path=tmp_path / "i.log",
            env=dict(os.environ),
            console=Console(on=b"ready", signum=signum),
        )
    assert e.value.signum == signum and e.value.exit_code == 128 + signum and e.value.stage == "train"
    child, worker = map(int, pidfile.read_text().split())
    assert not alive(child) and not alive(worker)  # the dataloader-like worker went down with the group


def test_a_child_that_ignores_the_signal_is_killed_after_the_grace_period(tmp_path):
    pidfile = tmp_path / "pids"
    code = GROUP_CHILD.format(pidfile=str(pidfile), prelude="signal.signal(signal.SIGINT, signal.SIG_IGN)")
    with pytest.raises(Interrupted):
        run_logged(
            py(code),
            stage="train",
            log_path=tmp_path / "i.log",
            env=dict(os.environ),
            console=Console(on=b"ready"),
            grace_s=0.5,
        )
    child, worker = map(int, pidfile.read_text().split())
    assert not alive(child) and not alive(worker)
    assert "[exit code -9]" in (tmp_path / "i.log").read_text()


def test_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    run_logged(py("pass"), stage="t", log_path=tmp_path / "r.log", env=dict(os.environ), console=Console())
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_full_disk_stops_the_child_instead_of_hanging(tmp_path):
    """The log write fails (RLIMIT_FSIZE stands in for ENOSPC: writes past the limit fail with EFBIG): the runner
    keeps draining the pipe, stops the child, and reports the full disk with the folder. Before, the pump thread
    died, nobody drained the pipe, the child blocked on write and the wait never returned."""
    driver = textwrap.dedent(f"""
        import io, os, resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from hvlora.core.errors import StageFailed
        from hvlora.core.runner import run_logged
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that writes past the limit fail instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        child = [sys.executable, "-c", "import sys\\nwhile True: sys.stdout.write('x' * 1000 + '\\\\n')"]
        try:
            run_logged(child, stage="s", log_path=__import__("pathlib").Path({str(tmp_path / "s.log")!r}),
                       env=dict(os.environ), console=io.BytesIO())
        except StageFailed as e:
            print("FAILED:", e, "| exit", e.returncode)
    """)
    r = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=60)
    assert "FAILED: could not write its log" in r.stdout, r.stdout + r.stderr
    assert "the disk is full" in r.stdout and str(tmp_path) in r.stdout and "run the same command again" in r.stdout
    assert "exit -15" in r.stdout  # the child was stopped (SIGTERM), not left blocked


def test_a_progress_display_that_raises_never_stops_the_run(tmp_path, capfd):
    """A console object (our progress display) with a bug: the run goes on, the log keeps every line, the raw
    output is shown instead, and the log says the display stopped."""

    class Broken:
        def write(self, chunk: bytes) -> None:
            raise RuntimeError("broken progress parser")  # (OSError, ValueError: a closed console)

        def flush(self) -> None:
            pass

    run_logged(
        py("print('a', flush=True); print('b')"),
        stage="s",
        log_path=tmp_path / "s.log",
        env=dict(os.environ),
        console=Broken(),
    )
    log = (tmp_path / "s.log").read_text()
    assert "progress display stopped: RuntimeError: broken progress parser" in log
    assert "\na\n" in log and "\nb\n" in log and "[exit code 0]" in log


def test_the_output_thread_has_ended_when_the_runner_returns(tmp_path):
    """A process that left the child's group (its own session) keeps the pipe open: the runner must neither wait for
    it nor return while its output thread still runs the console (which draws plots and writes the summary): after
    run_logged the caller's thread is the only one left to write them."""
    pidfile = tmp_path / "stray"
    code = f"""
        import subprocess, sys
        stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        open({str(pidfile)!r}, "w").write(str(stray.pid))
        print("child done", flush=True)
    """
    before = set(threading.enumerate())
    console = Console()
    try:
        run_logged(py(code), stage="s", log_path=tmp_path / "s.log", env=dict(os.environ), console=console)
        assert b"child done" in console.data
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        assert left == [], left
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_the_child_dies_with_its_parent_even_by_sigkill(tmp_path):
    """Our process killed without running a handler: the child's whole group (a launcher and the process it
    started, as accelerate launch starts musubi) goes down with it."""
    pidfile = tmp_path / "pids"
    grandchild = "import signal; signal.pause()"
    child = f"""
        import os, subprocess, sys
        worker = subprocess.Popen([sys.executable, "-c", {grandchild!r}])
        open({str(pidfile)!r}, "w").write(f"{{os.getpid()}} {{worker.pid}}")
        print("ready", flush=True)
        worker.wait()
    """
    driver = textwrap.dedent(f"""
        import io, os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from hvlora.core.runner import run_logged
        run_logged([sys.executable, "-c", {textwrap.dedent(child)!r}], stage="s", log_path=Path({str(tmp_path / "s.log")!r}),
                   env=dict(os.environ))
    """)
    parent = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    launcher, worker = map(int, pidfile.read_text().split())
    parent.kill()  # SIGKILL: no handler of ours runs
    parent.wait(30)
    deadline = time.monotonic() + 20
    while (alive(launcher) or alive(worker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(launcher) and not alive(worker)
