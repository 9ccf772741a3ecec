"""Resume across training segments: true step numbers, complete states, the segment log, adoption and pruning.

musubi-tuner v0.3.4 restarts its epoch and step counters at 0 on `--resume` and names every output with those
run-local numbers (../shared/musubi-training.md §1). So each *segment* (the first run and each resume) runs musubi
in its own `RUN/segments/NN` with its own counters, and `adopt` moves what it wrote into `RUN/checkpoints/` under
TRUE numbers:

- a step artifact `NAME-stepL` of a segment that resumed from true step F becomes `NAME-step(F+L)`;
- an epoch artifact `NAME-E` (local epoch E ends at local step E x steps_per_epoch) becomes the true epoch
  `NAME-(F/spe + E)` when the segment began at an epoch boundary (F % spe == 0), else the step artifact
  `NAME-step(F + E x spe)`: a local epoch end of a mid-epoch resume is not a true epoch boundary;
- the final state `NAME-state` becomes the state of its true step (read from the state's scheduler), epoch-named
  when that step ends a true epoch and the data loader was at an epoch end (`random_states_0.pkl` step 0);
- the final LoRA `NAME.safetensors` stays `NAME.safetensors` (the newest final).

The absolute counter that survives resumes is the LR scheduler's `last_epoch` (= global step x num_processes,
restored by `load_state`), used to cross-check every state's name (`true_step_of`).

Name collisions never overwrite. If the target exists with the same content (same tensors for a LoRA; same
model, optimizer, scheduler and scaler bytes and the same data-loader step for a state) the newcomer is a duplicate
of that training point and is removed. Otherwise the newcomer takes the canonical name and the earlier one is kept
as `NAME-step00001300~1.safetensors` / `NAME-step00001300-state~1` (the lowest free `~k`): canonical names always
hold the newest lineage, and nothing is lost. `~k` names parse as the same true step, ordered before the canonical.
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import math
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.fsutil import atomic_write_json, fsync_dir
from ..core.timefmt import ago, utc_now
from .lorameta import SafetensorsError, read_header, read_metadata, safetensors_problem

Log = Callable[[str], None]
KINDS = ("epoch", "step", "final")
STATE_FILES = ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl")
OPTIONAL_STATE_FILES = ("scaler.pt",)
SUFFIX = ".safetensors"


class ResumeError(Exception):
    """A state cannot be trusted for resuming: its scheduler step does not match what its name and the segment
    imply, or it cannot be read. The caller falls back to an older state."""


# --- names -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """A parsed musubi output name: kind "epoch" | "step" | "final", a state dir or a LoRA file, its number
    (epoch or step; None for "final") and `aside` (k of a `~k` name kept beside a newer canonical one, else None)."""

    kind: str
    is_state: bool
    number: int | None
    aside: int | None = None

    def name(self, output_name: str) -> str:
        """The file or folder name of this artifact (inverse of `parse_name`)."""
        fmt = state_name if self.is_state else lora_name
        return fmt(output_name, self.kind, self.number, self.aside)


def _pattern(output_name: str) -> re.Pattern[str]:
    num = r"(?:-(?P<epoch>\d{6,})|-step(?P<step>\d{8,}))?"
    return re.compile(re.escape(output_name) + num + r"(?P<state>-state)?(?P<aside>~\d+)?(?P<ext>\.safetensors)?")


def parse_name(name: str, output_name: str) -> Artifact | None:
    """Parse a musubi output name (train_utils.py EPOCH_/STEP_/LAST_ STATE_NAME and *_ckpt_name, plus our `~k`).

    `NAME-000003.safetensors` -> epoch 3 LoRA, `NAME-step00000500-state` -> step 500 state, `NAME.safetensors` ->
    final LoRA, `NAME-state` -> final state. Returns None for any other name (samples, logs, other output names,
    a state name with `.safetensors` or a LoRA name without it).
    """
    m = _pattern(output_name).fullmatch(name)
    if m is None or bool(m["state"]) == bool(m["ext"]):
        return None
    aside = int(m["aside"][1:]) if m["aside"] else None
    if m["epoch"] is not None:
        return Artifact("epoch", bool(m["state"]), int(m["epoch"]), aside)
    if m["step"] is not None:
        return Artifact("step", bool(m["state"]), int(m["step"]), aside)
    return Artifact("final", bool(m["state"]), None, aside)


def _stem(output_name: str, kind: str, number: int | None) -> str:
    if kind == "epoch":
        return f"{output_name}-{number:06d}"
    if kind == "step":
        return f"{output_name}-step{number:08d}"
    if kind == "final":
        return output_name
    raise ValueError(f"unknown artifact kind {kind!r} (expected one of {KINDS})")


def state_name(output_name: str, kind: str, number: int | None = None, aside: int | None = None) -> str:
    """musubi's state folder name: `NAME-000003-state`, `NAME-step00000500-state`, `NAME-state` (+ `~k`)."""
    return _stem(output_name, kind, number) + "-state" + (f"~{aside}" if aside else "")


def lora_name(output_name: str, kind: str, number: int | None = None, aside: int | None = None) -> str:
    """musubi's LoRA file name: `NAME-000003.safetensors`, `NAME-step00000500.safetensors`, `NAME.safetensors`
    (with `~k` before the extension)."""
    return _stem(output_name, kind, number) + (f"~{aside}" if aside else "") + SUFFIX


def steps_per_epoch(num_batches: int, num_processes: int = 1, grad_accum: int = 1) -> int:
    """Optimizer steps per epoch as musubi counts them (trainer_base `num_update_steps_per_epoch`):
    ceil(ceil(num_batches / num_processes) / grad_accum), num_batches = musubi's "num batches per epoch" before
    sharding (items x repeats at batch size 1). Raises ValueError for non-positive inputs."""
    if min(num_batches, num_processes, grad_accum) < 1:
        raise ValueError(f"need positive counts, got {num_batches=}, {num_processes=}, {grad_accum=}")
    return math.ceil(math.ceil(num_batches / num_processes) / grad_accum)


# --- states ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateInfo:
    """A complete, cross-checked training state. `true_step`: global optimizer steps done; `true_epoch`: completed
    epochs (true_step / steps_per_epoch: an int at a boundary, else a float); `epoch_boundary`: the step ends a true
    epoch and the data loader was at an epoch end, so a resume starts a fresh epoch; `saved_at`: newest mtime of its
    files (unix seconds); `kind`: of its name ("epoch" | "step" | "final"); `rs_step`: accelerate's micro-batch
    counter within the epoch."""

    path: Path
    true_step: int
    true_epoch: int | float
    epoch_boundary: bool
    saved_at: float
    kind: str
    rs_step: int = 0


def _torch_load(path: Path) -> Any:
    """torch.load as accelerate's `load` does (weights_only with numpy's RNG-state types allowed). Falls back to a
    full unpickle (weights_only=False) only if that fails: these files were written by our own run's accelerate."""
    import pickle

    import torch

    try:
        from accelerate.utils.other import TORCH_SAFE_GLOBALS
    except ImportError:  # pragma: no cover - accelerate is a runtime requirement
        TORCH_SAFE_GLOBALS = []
    try:
        with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(path, map_location="cpu", weights_only=False)


def read_state(state_dir: Path, num_processes: int) -> tuple[int, int]:
    """(scheduler_step, rs_step) of an accelerate state folder.

    scheduler_step = scheduler.bin["last_epoch"] // num_processes: accelerate's AcceleratedScheduler steps the LR
    scheduler num_processes times per optimizer step, and load_state restores it, so it is the true global step
    across resumes. rs_step = random_states_0.pkl["step"]: `Accelerator.step`, the micro-batches consumed in the
    current epoch (reset to 0 at the end of the data loader, accelerator.py `_do_sync`), 0 at an epoch boundary.
    Raises ResumeError when either file is unreadable or lacks the key (e.g. a schedulefree optimizer's state).
    """
    state_dir = Path(state_dir)
    last_epoch = _read_counter(state_dir / "scheduler.bin", "last_epoch")
    return last_epoch // num_processes, _read_counter(state_dir / "random_states_0.pkl", "step")


def _read_counter(path: Path, key: str) -> int:
    try:
        return int(_torch_load(path)[key])
    except Exception as e:  # torch raises many kinds for a bad file
        raise ResumeError(f"cannot read {key!r} from {path}: {type(e).__name__}: {str(e)[:200]}") from e


def _torch_zip_problem(path: Path) -> str | None:
    """None when `path` is an intact torch.save zip container (central directory readable, a data.pkl inside).

    torch.save writes the zip's end-of-central-directory record last, so a file cut short anywhere lacks it and
    zipfile raises; only the directory is read, never the (possibly GB-sized) data.
    """
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, zipfile.BadZipFile) as e:
        return f"{path.name} is not a whole torch file ({e})"
    if not any(n.endswith("data.pkl") for n in names):
        return f"{path.name} has no data.pkl"
    return None


def is_complete(state_dir: Path) -> tuple[bool, str]:
    """(True, "") when `state_dir` is a complete accelerate 1.6.0 state (checkpointing.save_accelerator_state):
    model.safetensors whole (size == 8 + header + data end), optimizer.bin, scheduler.bin and random_states_0.pkl
    intact torch zips, and scaler.pt intact if present. Else (False, the first problem). Accelerate writes into an
    existing folder in place, so a kill mid-save leaves exactly such a partial folder. (States of *schedulefree
    optimizers have no scheduler.bin and so never count: their true step could not be cross-checked.)"""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return False, f"{state_dir} is not a folder"
    problem = safetensors_problem(state_dir / STATE_FILES[0])
    for name in STATE_FILES[1:]:
        problem = problem or _torch_zip_problem(state_dir / name)
    for name in OPTIONAL_STATE_FILES:
        if (state_dir / name).exists():
            problem = problem or _torch_zip_problem(state_dir / name)
    return (False, problem) if problem else (True, "")


def _saved_at(state_dir: Path) -> float:
    return max((p.stat().st_mtime for p in state_dir.iterdir() if p.is_file()), default=state_dir.stat().st_mtime)


def _epochs(step: int, spe: int) -> int | float:
    return step // spe if step % spe == 0 else step / spe


def _state_info(path: Path, art: Artifact, true_step: int, rs_step: int, spe: int) -> StateInfo:
    boundary = true_step % spe == 0 and rs_step == 0
    return StateInfo(path, true_step, _epochs(true_step, spe), boundary, _saved_at(path), art.kind, rs_step)


# --- the segment log ---------------------------------------------------------------------------------------------


@dataclass
class Segment:
    """One musubi training process (the first run or a resume), recorded before it starts.

    `dir`: its --output_dir; `from_step`/`from_epoch`: true global step / completed epochs of the state it resumed
    from (0 for the first); `resumed_from`: that state's folder or None; `steps_per_epoch`: optimizer steps per
    epoch; `total_steps`: the run's target, so the segment trains `max_train_steps = total_steps - from_step`;
    times are ISO 8601 UTC strings; `status`/`returncode` are set by `SegmentLog.end`; `nan_step`: the true step of
    its first NaN loss (`SegmentLog.mark_nan`), None while the loss stayed finite; `command`: the musubi command it runs
    (Command.plan_entry: what the other machines of a multi-node run join with).
    """

    index: int
    dir: Path
    from_step: int
    from_epoch: int | float
    resumed_from: Path | None
    num_processes: int
    steps_per_epoch: int
    total_steps: int
    started_at: str
    output_name: str | None = None
    ended_at: str | None = None
    status: str | None = None
    returncode: int | None = None
    nan_step: int | None = None
    command: dict | None = None

    @property
    def max_train_steps(self) -> int:
        """The --max_train_steps this segment runs with: the steps still to go when it started."""
        return self.total_steps - self.from_step

    @property
    def at_epoch_boundary(self) -> bool:
        """True when the segment resumed at the end of a true epoch, so its local epochs are true epochs."""
        return self.from_step % self.steps_per_epoch == 0


class SegmentLog:
    """The run's `segments.json`: every segment, written atomically (temporary file + fsync + os.replace + folder
    fsync) so a SIGKILL or power cut leaves the old or the new list, never a torn one. Paths inside the run folder
    are stored relative to it, so the record stays right when the folder is mounted elsewhere (container vs host).
    """

    def __init__(self, path: Path):
        self.path = Path(os.path.abspath(path))
        self.root = self.path.parent

    @classmethod
    def in_run(cls, run_dir: Path) -> SegmentLog:
        """The log of a run folder: RUN/segments.json."""
        return cls(Path(run_dir) / "segments.json")

    def all(self) -> list[Segment]:
        """Every recorded segment in order (empty when no log exists). Raises ResumeError for an unreadable log."""
        if not self.path.exists():
            return []
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))["segments"]
            return [self._load(r) for r in rows]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ResumeError(f"cannot read {self.path}: {e}") from e

    def last(self) -> Segment | None:
        """The newest segment, or None."""
        segments = self.all()
        return segments[-1] if segments else None

    def begin(
        self,
        *,
        from_step: int,
        from_epoch: int | float,
        resumed_from: Path | None,
        num_processes: int,
        steps_per_epoch: int,
        total_steps: int,
        output_name: str | None = None,
        dir: Path | None = None,
        started_at: str | None = None,
    ) -> Segment:
        """Record a new segment before its process starts and return it. `dir` defaults to RUN/segments/NN (NN =
        its index, two digits); the folder is created. Raises ValueError for impossible numbers."""
        if steps_per_epoch < 1 or num_processes < 1 or not 0 <= from_step <= total_steps:
            raise ValueError(f"bad segment: {from_step=}, {total_steps=}, {steps_per_epoch=}, {num_processes=}")
        segments = self.all()
        index = len(segments)
        seg = Segment(
            index=index,
            dir=Path(dir) if dir is not None else self.root / "segments" / f"{index:02d}",
            from_step=from_step,
            from_epoch=from_epoch,
            resumed_from=Path(resumed_from) if resumed_from is not None else None,
            num_processes=num_processes,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            started_at=started_at or utc_now(),
            output_name=output_name,
        )
        seg.dir.mkdir(parents=True, exist_ok=True)
        self._write([*segments, seg])
        return seg

    def end(self, index: int, status: str, *, returncode: int | None = None, ended_at: str | None = None) -> Segment:
        """Record how segment `index` ended (status e.g. "ok", "failed", "interrupted", "killed") and return it.
        Raises IndexError for an unknown index."""
        segments = self.all()
        if not 0 <= index < len(segments):
            raise IndexError(f"no segment {index} in {self.path}")
        seg = dataclasses.replace(segments[index], status=status, returncode=returncode, ended_at=ended_at or utc_now())
        segments[index] = seg
        self._write(segments)
        return seg

    def set_command(self, index: int, command: dict) -> Segment:
        """Record the command segment `index` runs, before it starts. Raises IndexError for an unknown index."""
        segments = self.all()
        if not 0 <= index < len(segments):
            raise IndexError(f"no segment {index} in {self.path}")
        segments[index] = dataclasses.replace(segments[index], command=command)
        self._write(segments)
        return segments[index]

    def mark_nan(self, index: int, step: int) -> Segment:
        """Record that segment `index` had a NaN loss at true step `step` (the earliest one is kept); what it saved
        from that step on is set aside by `adopt`. Raises IndexError for an unknown index."""
        segments = self.all()
        if not 0 <= index < len(segments):
            raise IndexError(f"no segment {index} in {self.path}")
        old = segments[index].nan_step
        segments[index] = dataclasses.replace(segments[index], nan_step=step if old is None else min(old, step))
        self._write(segments)
        return segments[index]

    def _write(self, segments: list[Segment]) -> None:
        atomic_write_json(self.path, {"version": 1, "segments": [self._dump(s) for s in segments]})
        fsync_dir(self.root)

    def _rel(self, p: Path | None) -> str | None:
        if p is None:
            return None
        p = Path(os.path.abspath(p))
        return p.relative_to(self.root).as_posix() if p.is_relative_to(self.root) else str(p)

    def _abs(self, s: str | None) -> Path | None:
        return None if s is None else self.root / s

    def _dump(self, seg: Segment) -> dict[str, Any]:
        row = dataclasses.asdict(seg)
        row["dir"], row["resumed_from"] = self._rel(seg.dir), self._rel(seg.resumed_from)
        return row

    def _load(self, row: dict[str, Any]) -> Segment:
        known = {f.name for f in dataclasses.fields(Segment)}
        row = {k: v for k, v in row.items() if k in known}
        row["dir"], row["resumed_from"] = self._abs(row["dir"]), self._abs(row.get("resumed_from"))
        return Segment(**row)


# --- true steps --------------------------------------------------------------------------------------------------


def end_step(kind: str, number: int | None, steps_per_epoch: int, final_step: int | None = None) -> int | None:
    """The global step at which musubi wrote an output, counted as its name counts: a step save `stepN` at N, the
    end of epoch E at E x steps_per_epoch (at most `final_step`: the loop stops at max_train_steps, possibly inside
    its last epoch), the final file at `final_step` (None when unknown). The one place epochs become steps."""
    if kind == "step":
        return number
    if kind == "epoch":
        step = number * steps_per_epoch
        return step if final_step is None else min(step, final_step)
    return final_step


def _local_end_step(art: Artifact, segment: Segment) -> int:
    """The segment-local global step at which musubi wrote this artifact (final: the segment's max_train_steps)."""
    return end_step(art.kind, art.number, segment.steps_per_epoch, segment.max_train_steps)


def _guess_artifact(name: str) -> Artifact | None:
    """Parse a state name without knowing the output name (by its suffix)."""
    m = re.search(r"(?:-(\d{6,})|-step(\d{8,}))?-state$", name)
    if m is None:
        return None
    if m[1]:
        return Artifact("epoch", True, int(m[1]))
    return Artifact("step", True, int(m[2])) if m[2] else Artifact("final", True, None)


def true_step_of(state_dir: Path, segment: Segment, output_name: str | None = None) -> int:
    """The true global step of a state folder written by `segment` (named with its local numbers).

    scheduler_step (see `read_state`) must equal segment.from_step + the local step the name implies (step S: S;
    epoch E: E x steps_per_epoch; the final `NAME-state`: the segment's max_train_steps), and an epoch state must
    have rs_step 0. The output name is `output_name`, else segment.output_name, else inferred from the suffix.
    Raises ResumeError naming both numbers on a mismatch, or when the state cannot be read.
    """
    state_dir = Path(state_dir)
    name = output_name or segment.output_name
    art = parse_name(state_dir.name, name) if name else _guess_artifact(state_dir.name)
    if art is None or not art.is_state:
        raise ResumeError(f"{state_dir.name} is not a musubi state name")
    scheduler_step, rs_step = read_state(state_dir, segment.num_processes)
    expected = segment.from_step + _local_end_step(art, segment)
    if scheduler_step != expected:
        raise ResumeError(
            f"{state_dir}: the scheduler says step {scheduler_step}, but the name and segment {segment.index} "
            f"(from step {segment.from_step}) imply step {expected}"
        )
    if art.kind == "epoch" and rs_step != 0:
        raise ResumeError(f"{state_dir}: an epoch-end state with {rs_step} micro-batches into the epoch")
    return scheduler_step


def _implied_true_step(art: Artifact, spe: int) -> int | None:
    """The true step a name in checkpoints/ stands for (None for a final state: only its scheduler knows)."""
    return end_step(art.kind, art.number, spe)


def _checked_state(path: Path, art: Artifact, num_processes: int, spe: int) -> StateInfo:
    """StateInfo of a complete state in checkpoints/ whose true-number name matches its scheduler."""
    scheduler_step, rs_step = read_state(path, num_processes)
    implied = _implied_true_step(art, spe)
    if implied is not None and implied != scheduler_step:
        raise ResumeError(f"{path.name}: the name says step {implied}, the scheduler says step {scheduler_step}")
    if art.kind == "epoch" and rs_step != 0:
        raise ResumeError(f"{path.name}: an epoch-end state with {rs_step} micro-batches into the epoch")
    return _state_info(path, art, scheduler_step, rs_step, spe)


def _preference(s: StateInfo, art: Artifact) -> tuple:
    return (s.true_step, s.epoch_boundary, s.kind == "epoch", art.aside is None, -(art.aside or 0), s.saved_at)


def newest_state(
    checkpoints_dir: Path, output_name: str, num_processes: int, steps_per_epoch: int, log: Log | None = None
) -> StateInfo | None:
    """The newest complete state in checkpoints_dir (true-number names) by true step, or None.

    Incomplete states and states whose name disagrees with their scheduler step are skipped (and logged). At the
    same true step an epoch-boundary state wins over a mid-epoch one, then an epoch-named one, then a canonical name
    over a kept-aside `~k` one, then the newer file.
    """
    best, best_key = None, None
    for path, art in _artifacts(checkpoints_dir, output_name, states=True):
        ok, why = is_complete(path)
        try:
            if not ok:
                raise ResumeError(why)
            info = _checked_state(path, art, num_processes, steps_per_epoch)
        except ResumeError as e:
            if log:
                log(f"skipping state {path.name}: {e}")
            continue
        key = _preference(info, art)
        if best_key is None or key > best_key:
            best, best_key = info, key
    return best


def _artifacts(folder: Path, output_name: str, *, states: bool) -> list[tuple[Path, Artifact]]:
    """(path, artifact) of every state folder (states=True) or LoRA file (False) named for output_name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.iterdir()):
        art = parse_name(p.name, output_name)
        if art is not None and art.is_state == states and (p.is_dir() if states else p.is_file()):
            found.append((p, art))
    return found


# --- adoption ----------------------------------------------------------------------------------------------------


def _same_lora(a: Path, b: Path) -> bool:
    """Same tensors (header without __metadata__, and the data bytes): the same weights, whatever the metadata."""
    try:
        (na, ha), (nb, hb) = read_header(a), read_header(b)
    except (OSError, SafetensorsError):
        return False
    ha.pop("__metadata__", None)
    hb.pop("__metadata__", None)
    if ha != hb or a.stat().st_size - na != b.stat().st_size - nb:
        return False
    return _same_bytes_from(a, 8 + na, b, 8 + nb)


def _same_bytes_from(a: Path, off_a: int, b: Path, off_b: int) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(off_a)
        fb.seek(off_b)
        while True:
            ca, cb = fa.read(1 << 22), fb.read(1 << 22)
            if ca != cb:
                return False
            if not ca:
                return True


def _same_state(a: Path, b: Path, num_processes: int) -> bool:
    """The same training point: model, optimizer, scheduler (and scaler) byte-identical and the same data-loader
    step; the RNG pickles may differ (musubi saves the final state after the loop, e.g. after sampling)."""
    for name in (*STATE_FILES[:3], *OPTIONAL_STATE_FILES):
        pa, pb = a / name, b / name
        if pa.exists() != pb.exists() or (pa.exists() and not filecmp.cmp(pa, pb, shallow=False)):
            return False
    try:
        return read_state(a, num_processes) == read_state(b, num_processes)
    except ResumeError:
        return False


def _aside_name(dst: Path) -> Path:
    """The lowest free `~k` (k >= 1) variant of dst's name."""
    k = 1
    while True:
        if dst.name.endswith(SUFFIX):
            cand = dst.with_name(dst.name[: -len(SUFFIX)] + f"~{k}" + SUFFIX)
        else:
            cand = dst.with_name(dst.name + f"~{k}")
        if not cand.exists():
            return cand
        k += 1


def keep_aside(path: Path, log: Log) -> Path:
    """Rename `path` to its lowest free `~k` name (so a newer file can take the canonical one) and return it."""
    aside = _aside_name(path)
    os.rename(path, aside)
    log(f"kept the earlier, different {path.name} as {aside.name}")
    return aside


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()


def _place(src: Path, dst: Path, same: Callable[[Path, Path], bool], log: Log) -> Path | None:
    """Move src to dst by os.rename without overwriting (see the module docstring); the final path or None."""
    if dst.exists() and same(src, dst):
        _remove(src)
        log(f"{src} is the same as {dst.name}, already in checkpoints: removed")
        return None
    if dst.exists():
        keep_aside(dst, log)
    os.rename(src, dst)
    log(f"moved {src} -> {dst}")
    return dst


def _adopted_name(art: Artifact, true_step: int, segment: Segment, output_name: str, rs_step: int = 0) -> str:
    """The checkpoints/ name for an artifact that ends at `true_step` (the naming rules of the module docstring)."""
    if art.kind == "final" and not art.is_state:
        return lora_name(output_name, "final")
    spe = segment.steps_per_epoch
    epoch_like = art.kind == "epoch" or (art.kind == "final" and rs_step == 0)
    kind, number = ("epoch", true_step // spe) if epoch_like and true_step % spe == 0 else ("step", true_step)
    fmt = state_name if art.is_state else lora_name
    return fmt(output_name, kind, number)


def _ss_steps_problem(path: Path, art: Artifact, segment: Segment) -> str | None:
    """Why a whole LoRA file of the segment must not be adopted: its ss_steps (musubi's local global step) contradicts
    the local step its name implies (a wrong steps_per_epoch would misname every epoch). None when fine or absent."""
    try:
        steps = read_metadata(path).get("ss_steps")
    except SafetensorsError as e:
        return str(e)
    expected = _local_end_step(art, segment)
    if steps is not None and steps.isdigit() and int(steps) != expected:
        return f"{path.name} says ss_steps={steps}, its name implies local step {expected}"
    return None


def _in_written_order(segment: Segment, output_name: str, *, states: bool) -> list[tuple[Path, Artifact]]:
    """The segment's artifacts in the order musubi wrote them: by local step, a step save before the epoch save
    at the same step, the final last. So a later duplicate is the one dropped."""
    order = {"step": 0, "epoch": 1, "final": 2}
    entries = _artifacts(segment.dir, output_name, states=states)
    return sorted(entries, key=lambda e: (e[1].kind == "final", _local_end_step(e[1], segment), order[e[1].kind]))


def _destination(dst: Path, true_step: int, segment: Segment, log: Log) -> Path:
    """`dst`, or for an artifact saved at or after the segment's first NaN loss a `~nan` name beside it: its weights
    are poisoned, so no resume may pick it (`parse_name` does not read `~nan` names) and pruning leaves it to the
    user, who may want to look at it."""
    if segment.nan_step is None or true_step < segment.nan_step:
        return dst
    k, stem, ext = (
        1,
        (dst.name[: -len(SUFFIX)] if dst.name.endswith(SUFFIX) else dst.name),
        (SUFFIX if dst.name.endswith(SUFFIX) else ""),
    )
    while (cand := dst.with_name(f"{stem}~nan{k if k > 1 else ''}{ext}")).exists():
        k += 1
    log(
        f"setting {dst.name} aside as {cand.name}: saved at step {true_step}, at or after the first NaN loss (step "
        f"{segment.nan_step})"
    )
    return cand


def _adopt_states(segment: Segment, dst_dir: Path, output_name: str, log: Log) -> dict[Path, int]:
    moved = {}
    for path, art in _in_written_order(segment, output_name, states=True):
        ok, why = is_complete(path)
        if not ok:
            shutil.rmtree(path)
            log(f"deleted the incomplete state {path} ({why})")
            continue
        try:
            true_step = true_step_of(path, segment, output_name)
            rs_step = read_state(path, segment.num_processes)[1]
        except ResumeError as e:
            log(f"not adopting {path}: {e}")
            continue
        dst = _destination(
            dst_dir / _adopted_name(art, true_step, segment, output_name, rs_step), true_step, segment, log
        )
        same = lambda a, b: _same_state(a, b, segment.num_processes)  # noqa: E731
        if (placed := _place(path, dst, same, log)) is not None:
            moved[placed] = true_step
    return moved


def _adopt_loras(segment: Segment, dst_dir: Path, output_name: str, log: Log) -> dict[Path, int]:
    moved = {}
    for path, art in _in_written_order(segment, output_name, states=False):
        cut = safetensors_problem(path)
        if cut:
            path.unlink()
            log(f"deleted the incomplete LoRA {path} ({cut})")
            continue
        problem = _ss_steps_problem(path, art, segment)
        if problem:
            log(f"not adopting {path}: {problem}")
            continue
        true_step = segment.from_step + _local_end_step(art, segment)
        dst = _destination(dst_dir / _adopted_name(art, true_step, segment, output_name), true_step, segment, log)
        if (placed := _place(path, dst, _same_lora, log)) is not None:
            moved[placed] = true_step
    return moved


def adopt(segment: Segment, checkpoints_dir: Path, output_name: str, log: Log = print) -> dict[Path, int]:
    """Move a finished (or killed) segment's LoRA files and states into checkpoints_dir under true numbers.

    Naming and collision rules: the module docstring. Complete states whose scheduler step matches their name are
    moved (`true_step_of`); incomplete states and cut-short LoRA files are deleted; a complete state that fails the
    cross-check or a LoRA whose ss_steps contradicts its name stays in the segment folder (logged). What was saved
    at or after the segment's first NaN loss (`Segment.nan_step`) gets a `~nan` name. Every move is an os.rename
    (one filesystem, atomic per entry), so a kill mid-way leaves each entry in one place and a second call finishes
    the job; on a segment already adopted it does nothing. Call it only while no musubi process writes into
    segment.dir (after the segment ended, or under the run lock after a crash). Returns {new path: the true step
    it was saved at} (a final LoRA's step is its segment's total_steps: what the file is, whatever is asked now).
    """
    dst_dir = Path(checkpoints_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    moved = _adopt_states(segment, dst_dir, output_name, log)
    moved.update(_adopt_loras(segment, dst_dir, output_name, log))
    if moved:
        fsync_dir(dst_dir)
    return moved


# --- pruning -----------------------------------------------------------------------------------------------------


def _order_key(art: Artifact, spe: int) -> tuple:
    step = _implied_true_step(art, spe)
    return (step, art.kind == "epoch", art.aside is None, -(art.aside or 0))


def _numbered(folder: Path, output_name: str, spe: int, *, states: bool) -> list[Path]:
    """Epoch and step artifacts (with ~k variants), oldest true step first; final names excluded."""
    entries = [(p, a) for p, a in _artifacts(folder, output_name, states=states) if a.kind != "final"]
    return [p for p, a in sorted(entries, key=lambda e: _order_key(e[1], spe))]


def _newest_complete_by_name(folder: Path, output_name: str, spe: int) -> Path | None:
    for p in reversed(_numbered(folder, output_name, spe, states=True)):
        if is_complete(p)[0]:
            return p
    return None


def prune(
    checkpoints_dir: Path,
    output_name: str,
    keep_models: int,
    keep_states: int,
    steps_per_epoch: int,
    num_processes: int | None = None,
    log: Log | None = None,
) -> list[Path]:
    """Keep the last `keep_models` LoRA files and `keep_states` states in checkpoints_dir by TRUE step (epoch names
    count as epoch x steps_per_epoch, ordered with step names; at the same step an epoch name is newer, and a `~k`
    variant older than the canonical name); a negative count keeps all. Never deletes `NAME.safetensors`, any
    `NAME-state`, the newest complete state by name, nor (when num_processes is given) the state `newest_state`
    picks. Mirrors musubi's --save_last_n_* but on true numbers across segments. Returns the deleted paths.
    """
    folder = Path(checkpoints_dir)
    protected = {_newest_complete_by_name(folder, output_name, steps_per_epoch)}
    if num_processes is not None:
        chosen = newest_state(folder, output_name, num_processes, steps_per_epoch)
        protected.add(chosen.path if chosen else None)
    deleted = []
    for states, keep in ((False, keep_models), (True, keep_states)):
        items = _numbered(folder, output_name, steps_per_epoch, states=states)
        doomed = items[: max(len(items) - keep, 0)] if keep >= 0 else []
        for p in doomed:
            if p not in protected:
                _remove(p)
                deleted.append(p)
                if log:
                    log(f"pruned {p.name}")
    return deleted


# --- what to tell the user ---------------------------------------------------------------------------------------


def remaining(total_steps: int, state: StateInfo | None) -> int:
    """Optimizer steps still to train: total_steps minus the state's true step (all of them without a state),
    never below 0."""
    return max(total_steps - (state.true_step if state else 0), 0)


def describe_resume(run_dir: Path, state: StateInfo | None, total_steps: int, now: float) -> str:
    """One line for the console about where a run continues, e.g. "state of step 1300 of 2000 (saved 14 min ago);
    700 steps to go; steps after 1300 are lost; from checkpoints/lora-step00001300-state". `now`: unix seconds.
    Adds a note when the state is mid-epoch (the resumed segment re-runs a whole data epoch)."""
    if state is None:
        return f"no complete training state in {Path(run_dir).name}; training all {total_steps} steps"
    where = os.path.relpath(state.path, run_dir)
    head = f"state of step {state.true_step} of {total_steps} (saved {ago(now - state.saved_at)})"
    left = remaining(total_steps, state)
    if left == 0:
        return f"{head}; nothing left to train; from {where}"
    text = f"{head}; {left} steps to go; steps after {state.true_step} are lost; from {where}"
    if not state.epoch_boundary:
        text += f"; mid-epoch (epoch {state.true_epoch:.2f}): the next segment starts a fresh pass over the data"
    return text
