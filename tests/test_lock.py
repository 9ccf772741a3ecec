"""One run at a time per output folder: real flocks held by real processes, killed for real."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hvlora.core.errors import UserError
from hvlora.core.lock import LockHeld, RunLock, find_live_lock, find_locks, stop_leftovers

REPO = Path(__file__).resolve().parents[1]

HOLDER = textwrap.dedent(
    """
    import sys, time
    from hvlora.core.lock import RunLock
    with RunLock(sys.argv[1], argv=["train_local.py", "--rank", "16"]):
        print("locked", flush=True)
        time.sleep(120)
    """
)

TRY = textwrap.dedent(
    """
    import sys
    from hvlora.core.lock import LockHeld, RunLock
    try:
        with RunLock(sys.argv[1]):
            print("got it")
    except LockHeld as e:
        print(e)
        sys.exit(e.exit_code)
    """
)


def env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def holder():
    """holder(run_dir) -> a child process that holds RunLock(run_dir) until killed."""
    procs = []

    def start(run_dir: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env())
        procs.append(p)
        assert p.stdout.readline().strip() == "locked"
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()


def kill(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL


def test_a_lock_records_its_holder_and_goes_away(tmp_path):
    run = tmp_path / "output" / "runs" / "lora-1"
    with RunLock(run, argv=["train_local.py", "--epochs", "3"]) as lock:
        info = json.loads((run / "lock.json").read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["argv"] == ["train_local.py", "--epochs", "3"] and info["started_at"].endswith("+00:00")
        assert lock.took_over == []
        live = find_live_lock(tmp_path / "output")
        assert live.stale is False and live.pid == os.getpid() and live.run_dir == run
    assert not (run / "lock.json").exists()
    assert find_live_lock(tmp_path / "output") is None


def test_a_live_lock_in_another_process_refuses_this_run_and_its_siblings(tmp_path, holder):
    out = tmp_path / "output"
    child = holder(out / "runs" / "lora-1")
    live = find_live_lock(out)
    assert (live.stale, live.pid, live.run_dir.name) == (False, child.pid, "lora-1")
    assert live.argv == ["train_local.py", "--rank", "16"]
    for run in ("lora-1", "lora-2"):  # the same run (a resume) and a new run in the same output folder
        with pytest.raises(LockHeld) as e:
            RunLock(out / "runs" / run).acquire()
        assert f"pid {child.pid}" in str(e.value) and "lora-1" in str(e.value)
        assert isinstance(e.value, UserError) and e.value.exit_code == 2
    assert not (out / "runs" / "lora-2" / "lock.json").exists()
    assert find_live_lock(out).pid == child.pid  # the refused attempts did not disturb the holder


def test_sigkill_leaves_a_stale_lock_that_the_next_run_takes_over(tmp_path, holder):
    out = tmp_path / "output"
    child = holder(out / "runs" / "lora-1")
    kill(child)
    stale = find_live_lock(out)
    assert (stale.stale, stale.pid, stale.host) == (True, child.pid, socket.gethostname())
    assert f"pid {child.pid}" in stale.describe()
    with RunLock(out / "runs" / "lora-2") as lock:
        assert [i.pid for i in lock.took_over] == [child.pid]
        assert not (out / "runs" / "lora-1" / "lock.json").exists()
        assert [i.pid for i in find_locks(out)] == [os.getpid()]


def test_a_resume_takes_over_its_own_stale_lock(tmp_path, holder):
    run = tmp_path / "output" / "runs" / "lora-1"
    child = holder(run)
    kill(child)
    with RunLock(run) as lock:
        assert [(i.pid, i.stale) for i in lock.took_over] == [(child.pid, True)]
        assert json.loads((run / "lock.json").read_text())["pid"] == os.getpid()
        assert find_live_lock(tmp_path / "output").stale is False


def test_two_processes_conflict(tmp_path):
    run = tmp_path / "output" / "runs" / "lora-1"
    with RunLock(run):
        r = subprocess.run([sys.executable, "-c", TRY, str(run)], capture_output=True, text=True, env=env())
        assert r.returncode == 2 and f"pid {os.getpid()}" in r.stdout
        sibling = subprocess.run(
            [sys.executable, "-c", TRY, str(run.parent / "lora-2")], capture_output=True, text=True, env=env()
        )
        assert sibling.returncode == 2
    r = subprocess.run([sys.executable, "-c", TRY, str(run)], capture_output=True, text=True, env=env())
    assert r.returncode == 0 and r.stdout.strip() == "got it"


def test_two_locks_in_one_process_conflict(tmp_path):
    run = tmp_path / "runs" / "a"
    with RunLock(run):
        with pytest.raises(LockHeld):
            RunLock(run, timeout=0.1).acquire()
        assert (run / "lock.json").exists()  # the refused second lock did not remove the first one's file


def test_an_empty_lock_file_nobody_holds_is_stale(tmp_path):
    """A holder killed between creating the file and writing it leaves an empty, unlocked file."""
    run = tmp_path / "output" / "runs" / "lora-1"
    run.mkdir(parents=True)
    (run / "lock.json").write_text("")
    info = find_live_lock(tmp_path / "output")
    assert (info.stale, info.pid, info.describe()) == (True, None, "pid unknown on host unknown, started unknown")
    with RunLock(run) as lock:
        assert lock.took_over == []  # nothing to name: the file was empty
        assert find_live_lock(tmp_path / "output").pid == os.getpid()


LEFTOVER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from hvlora.core.lock import TOKEN_VAR, RunLock
    with RunLock(sys.argv[1]) as lock:
        # a trainer that does not die with us (an older version started it so): its own session, the run's token
        child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"],
                                 env={**os.environ, TOKEN_VAR: lock.token}, start_new_session=True)
        lock.record_child(child.pid)
        print(child.pid, flush=True)
        time.sleep(120)
    """
)


def test_taking_over_a_stale_lock_stops_what_the_dead_run_left_running(tmp_path):
    run = tmp_path / "runs" / "lora-1"
    holder = subprocess.Popen([sys.executable, "-c", LEFTOVER, str(run)], stdout=subprocess.PIPE, text=True, env=env())
    trainer = int(holder.stdout.readline())
    kill(holder)
    holder.stdout.close()
    assert os.path.exists(f"/proc/{trainer}")
    with RunLock(run) as lock:
        (stale,) = lock.took_over
        assert stale.child_pgid == trainer and stale.token
        said = stop_leftovers(stale, grace_s=5)
        assert said.startswith(f"stopped 1 process(es) the killed run left running (process group {trainer}):")
        assert "signal.pause()" in said
        assert stop_leftovers(stale) is None  # nothing left
    gone = subprocess.run(["ps", "-o", "stat=", "-p", str(trainer)], capture_output=True, text=True).stdout.strip()
    assert gone == "" or gone.startswith("Z")  # gone, or a zombie nobody reaped yet


def test_a_stale_lock_of_another_host_is_said_to_be_unchecked(tmp_path):
    run = tmp_path / "runs" / "lora-1"
    run.mkdir(parents=True)
    info = {"pid": 1, "host": "elsewhere", "started_at": "2025-01-01T00:00:00+00:00", "argv": [], "token": "ab"}
    (run / "lock.json").write_text(json.dumps(info))
    with RunLock(run) as lock:
        assert "taken on host elsewhere: processes there cannot be checked from here" in stop_leftovers(
            lock.took_over[0]
        )
