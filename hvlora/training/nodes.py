"""A machine other than machine 0 of a multi-node run (`--machine_rank R`, R > 0): it joins the training machine 0
prepares, and writes nothing.

Machine 0 runs the whole pipeline on the shared output folder (the data check, downloads, the dataset, the caches)
and, under its run lock, records the exact musubi command of each training segment in RUN/segments.json before it
starts it. Machine R finds machine 0's live run of this output name (waiting up to `appear_s` for it, then for as
long as machine 0 is alive), waits for the segment machine 0 starts, checks that every path that command reads is
there from here (the weights, the dataset config with its media and caches, the state it resumes from: data/,
models/ and output/ must be shared at the same paths), and runs the same command with its own `accelerate launch
--machine_rank R`. It takes no lock, makes no run folder and writes no file or log: checkpoints, states, logs and
the LoRA are machine 0's (musubi saves on the main process only; accelerate's rendezvous waits for every machine).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import tomllib

from ..core.config import Settings
from ..core.context import child_env, say
from ..core.errors import Interrupted, StageFailed, UserError
from ..core.lock import LOCK_NAME, LockInfo, probe
from ..core.runner import run_logged
from . import gpu, plan, resume
from .musubi import Command, launcher

APPEAR_S = 1800.0  # how long machine R waits for machine 0's run to start (its data check and planning come first)
NOTE_S = 60.0  # a waiting line this often


def join(
    s: Settings,
    *,
    appear_s: float = APPEAR_S,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Join machine 0's next training segment (see the module docstring). Raises UserError when machine 0's run
    does not appear in time, ends before it trains, or runs with another launch than this command's, or when a path
    its command reads is not visible here; StageFailed when training fails on this machine."""
    me = f"machine {s.machine_rank}"
    say(
        f"{me} of {s.num_machines}: joining the run machine 0 trains in {s.output_dir / 'runs'} (this machine "
        "writes no file)",
        err=False,
    )
    lock, seg = _wait_for_segment(s, me, appear_s, poll_s, clock)
    cmd = _our_command(s, seg.command)
    missing = [f"{flag} {path}" for flag, path in _reads(s, cmd).items() if not path.exists()]
    if missing:
        raise UserError(
            f"{me} does not see what machine 0's command reads: {'; '.join(missing[:5])}. Put data/, models/ and "
            "output/ on storage every machine mounts at the same paths, then start both again"
        )
    say(
        f"{me}: joining segment {seg.index} of {lock.run_dir.name} (steps {seg.from_step + 1}..{seg.total_steps})",
        err=False,
    )
    say(f"  {cmd.display()}", err=False)
    try:
        run_logged(cmd.executable(), stage="train", log_path=None, env=child_env(device=s.device))
    except StageFailed as e:
        say(f"\n{me}: training {e}; machine 0's console and its log {lock.run_dir / 'logs' / 'train.log'} say more")
        raise
    except Interrupted:
        say(f"\n{me}: stopped; machine 0 keeps its states: start the same command on every machine to continue")
        raise
    say(f"{me}: training ended; machine 0 writes the checkpoints and the LoRA into {lock.run_dir}", err=False)


def _wait_for_segment(s: Settings, me: str, appear_s: float, poll_s: float, clock) -> tuple[LockInfo, resume.Segment]:
    start = last_note = clock()
    seen: LockInfo | None = None
    while True:
        live = _machine0(s)
        if live is not None:
            seen = live
            seg = _segment_of(live)
            if seg is not None:
                return live, seg
        elif seen is not None:  # machine 0's run ended before it started a segment
            status = _status(seen.run_dir)
            if status == "succeeded":
                raise UserError(f"machine 0 finished {seen.run_dir.name} without training: nothing was left to train")
            raise UserError(
                f"machine 0's run {seen.run_dir.name} ended ({status or 'stopped'}) before training began: see machine "
                "0's console, then start the command on every machine again"
            )
        elif clock() - start >= appear_s:
            raise UserError(
                f"{me}: no run of --output_name {s.output_name} was started by machine 0 in {s.output_dir / 'runs'} "
                f"within {appear_s / 60:.0f} min. Start the same command with --machine_rank 0 on machine "
                f"{s.main_process_ip}, with output/ on storage both machines share"
            )
        if clock() - last_note >= NOTE_S:
            last_note = clock()
            doing = f"{seen.run_dir.name}: {_stage(seen.run_dir)}" if seen else "no run started yet"
            say(f"{me}: waiting for machine 0 ({doing})", err=False)
        time.sleep(poll_s)


def _machine0(s: Settings) -> LockInfo | None:
    """The live run lock of this output name in OUTPUT/runs (probed read-only: no guard file is made)."""
    runs = s.output_dir / "runs"
    for path in sorted(runs.glob(f"*/{LOCK_NAME}")) if runs.is_dir() else []:
        info = probe(path)
        if info is not None and not info.stale and _record(info.run_dir).get("output_name") == s.output_name:
            return info
    return None


def _record(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("identity", {})
    except (OSError, ValueError):
        return {}


def _segment_of(lock: LockInfo) -> resume.Segment | None:
    """The segment machine 0's current command has started (recorded with its command, not yet ended)."""
    try:
        segments = resume.SegmentLog.in_run(lock.run_dir).all()
    except resume.ResumeError:
        return None
    for seg in reversed(segments):
        if seg.status is None and seg.command and seg.started_at >= (lock.started_at or ""):
            return seg
    return None


def _summary(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _status(run_dir: Path) -> str | None:
    return _summary(run_dir).get("status")


def _stage(run_dir: Path) -> str:
    stages = _summary(run_dir).get("stages") or []
    return f"after stage {stages[-1]['name']}" if stages else "checking the data"


def _our_command(s: Settings, entry: dict) -> Command:
    """Machine 0's train command with this machine's `accelerate launch` (its rank, its CPU threads). Raises
    UserError when this command's launch settings differ from machine 0's."""
    launch = plan.launch_for(s, gpu.detect_gpus() if s.device == "cuda" else [])
    ours = launcher(s, launch)
    theirs = entry.get("launcher") or []
    diff = [
        f
        for f in ("--num_processes", "--num_machines", "--main_process_ip", "--main_process_port")
        if _flag(ours, f) != _flag(theirs, f)
    ]
    if diff:
        raise UserError(
            f"machine 0 launches with {' '.join(f'{f} {_flag(theirs, f)}' for f in diff)}, this command with "
            f"{' '.join(f'{f} {_flag(ours, f)}' for f in diff)}: every machine needs the same GPU count and "
            "multi-node flags"
        )
    return Command(entry["name"], entry["module"], tuple(entry["argv"]), ours)


def _flag(flags, name: str) -> str | None:
    flags = list(flags)
    return flags[flags.index(name) + 1] if name in flags else None


def _reads(s: Settings, cmd: Command) -> dict[str, Path]:
    """flag -> path of everything the command reads, with the dataset config's media and cache folders."""
    paths = s.family.scripts.read_paths(cmd.argv)
    config = paths.get("--dataset_config")
    if config is not None and config.is_file():
        for i, block in enumerate(tomllib.loads(config.read_text(encoding="utf-8")).get("datasets", [])):
            for key, value in block.items():
                if key.endswith("_directory"):
                    paths[f"{config.name} datasets[{i}].{key}"] = Path(value)
    return paths
