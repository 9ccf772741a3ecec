"""Training and cache progress from musubi-tuner's console output: line splitting, tqdm bar parsing, ETAs, the
status line, metrics.jsonl and TensorBoard scalars. Pure parsing and formatting: no threads, clocks are injected.

What musubi-tuner v0.3.4 prints (training/trainer_base.py `NetworkTrainer.train`):

- a tqdm bar on stderr, `tqdm(range(max_train_steps), smoothing=0, desc="steps")`, updated in place with `\\r`;
  `progress_bar.reset()` right before the first `update(1)` (so the bar's clock starts after startup and the first
  step), and `set_postfix(avr_loss=...)` after every micro-batch (the moving average over the last epoch's steps);
- on stdout `\\nepoch {e}/{E}` per epoch, `\\nsaving checkpoint: <path>` per save, and the final
  `INFO:...:model saved.` on stderr;
- extra tqdm bars without the "steps" desc while sampling (`tqdm(timesteps)` in hv_1_5_train_network.do_inference,
  drawn one row below with `\\n` ... `\\x1b[A`), and bars without a total in the cache scripts.

Steps are run-local in musubi (a resumed segment counts from 0 again): here `step` is always the true global step,
local step + `step_offset`.
"""

from __future__ import annotations

import codecs
import io
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..core.timefmt import format_duration

NAN_STOP_MARK = "hvlora: stopped: loss is NaN"
STEPS_DESC = "steps"  # the desc of musubi's training bar (trainer_base.py)

_TERMINATOR = re.compile(r"\r\n|\r|\n")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TIME = r"\d+(?::\d\d){1,2}"
_BAR = re.compile(
    r"^(?:(?P<desc>.+?): ?)?\s*"
    r"(?:(?P<pct>\d+)%\|[^|]*\|\s*)?"
    r"(?P<n>\d+)(?:/(?P<total>\d+))?(?P<unit>[^\s\[\]]*) "
    rf"\[(?P<elapsed>{_TIME})(?:<(?P<remaining>\?|{_TIME}))?,\s*"
    r"(?P<rate>\?|inf|nan|\d+(?:\.\d+)?)(?P<scale>[kMGTPEZY]?)(?P<rate_unit>s/[^\s,\]]+|[^\s,\]]+/s)"
    r"(?:,\s*(?P<postfix>[^\]]*))?\]"
)
_EPOCH = re.compile(r"^epoch (\d+)/(\d+)\s*$")
_SAVING = re.compile(r"^saving checkpoint: (.+?)\s*$")
_SCALE = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}


# ---------------------------------------------------------------------------------------------------------------
# lines


class Line(str):
    """One decoded line of child output (a `str`); `.cr` is True when it ended with a lone `\\r`, i.e. it was a
    tqdm in-place update that the next write overwrites on a terminal."""

    cr: bool

    def __new__(cls, text: str, cr: bool = False) -> Line:
        obj = super().__new__(cls, text)
        obj.cr = cr
        return obj


class LineSplitter:
    """Splits a child's raw output bytes into lines on `\\r`, `\\n` and `\\r\\n`, also across chunk borders.

    Decoding is UTF-8 with errors="replace", done incrementally (a character split between chunks is kept whole).
    A chunk that ends with `\\r` holds that line back until the next chunk shows whether a `\\n` follows (one
    `\\r\\n` is one line end). Empty lines are returned too (tqdm writes `\\r` after a `\\n`, which gives one).

    tqdm writes `\\r` + text and never ends its own write, so the newest bar state is the unterminated tail:
    `partial` shows it; `feed` returns it once the next write arrives, `flush` at the end.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""

    def feed(self, chunk: bytes) -> list[Line]:
        """The lines completed by `chunk` (bytes of any size, possibly empty)."""
        return self._split(self._held + self._decoder.decode(chunk), final=False)

    def flush(self) -> list[Line]:
        """The rest at end of output: the unterminated last line, if any (a trailing `\\r` makes it `.cr`)."""
        return self._split(self._held + self._decoder.decode(b"", final=True), final=True)

    @property
    def partial(self) -> str:
        """The text of the line not yet terminated (the current tqdm bar, mid-update), without a held `\\r`."""
        return self._held[:-1] if self._held.endswith("\r") else self._held

    def _split(self, text: str, final: bool) -> list[Line]:
        lines, start = [], 0
        for m in _TERMINATOR.finditer(text):
            if not final and m.group() == "\r" and m.end() == len(text):
                break  # maybe the first half of "\r\n": decide with the next chunk
            lines.append(Line(text[start : m.start()], cr=m.group() == "\r"))
            start = m.end()
        rest = text[start:]
        if final:
            if rest:
                lines.append(Line(rest))
            rest = ""
        self._held = rest
        return lines


def strip_ansi(text: str) -> str:
    """`text` without ANSI CSI escape sequences (tqdm moves the cursor with `\\x1b[A` for a second bar)."""
    return _ANSI.sub("", text)


# ---------------------------------------------------------------------------------------------------------------
# tqdm bars


@dataclass(frozen=True)
class Tqdm:
    """One parsed tqdm bar line.

    desc: the bar's description ("" when none; musubi's training bar is "steps"). n, total: items done and the
    total (None for bars without a total, `12it [00:03,  3.91it/s]`). elapsed_s, remaining_s: seconds (remaining
    None when tqdm prints `?` or the bar has no total). s_per_it: seconds per item from tqdm's rate (`5.00s/it` ->
    5.0, `2.00it/s` -> 0.5), None for `?it/s`; tqdm's rate is the average since the bar's start (musubi uses
    smoothing=0). postfix: `k=v` pairs after the rate, values as float where they parse (`nan` included), else str.
    """

    desc: str
    n: int
    total: int | None
    elapsed_s: float
    remaining_s: float | None
    s_per_it: float | None
    postfix: dict[str, float | str] = field(default_factory=dict)


def parse_time(text: str) -> float | None:
    """tqdm's `format_interval` text (`mm:ss` or `h:mm:ss`) in seconds; None for `?` or anything else."""
    if not re.fullmatch(_TIME, text or ""):
        return None
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return float(seconds)


def parse_tqdm(line: str) -> Tqdm | None:
    """Parse one tqdm bar line (tqdm 4.67's default format, as musubi pins it), else None.

    Accepts `steps:  12%|█▏        | 120/1000 [10:00<1:13:20,  5.00s/it, avr_loss=0.0912]`, bars without desc
    (`  5%|▌  | 1/20 [00:01<00:19,  1.02s/it]`), without total (`12it [00:03,  3.91it/s]`), ASCII bars, ANSI
    cursor moves and text glued after the closing `]` (a log line written while the bar was unterminated).
    """
    m = _BAR.match(strip_ansi(line).strip())
    if m is None:
        return None
    return Tqdm(
        desc=(m["desc"] or "").strip(),
        n=int(m["n"]),
        total=int(m["total"]) if m["total"] is not None else None,
        elapsed_s=parse_time(m["elapsed"]) or 0.0,
        remaining_s=parse_time(m["remaining"]) if m["remaining"] else None,
        s_per_it=_seconds_per_item(m["rate"], m["scale"], m["rate_unit"]),
        postfix=_parse_postfix(m["postfix"] or ""),
    )


def _seconds_per_item(rate: str, scale: str, unit: str) -> float | None:
    value = float(rate) * _SCALE[scale] if rate != "?" else math.nan
    if not math.isfinite(value) or value <= 0:  # `?`, or `inf` right after a (re)start
        return None
    return value if unit.startswith("s/") else 1.0 / value


def _parse_postfix(text: str) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for part in text.split(", "):
        key, sep, value = part.partition("=")
        if not sep:
            continue
        value = value.strip()
        try:
            out[key.strip()] = float(value)
        except ValueError:
            out[key.strip()] = value
    return out


# ---------------------------------------------------------------------------------------------------------------
# formatting


def _fmt_loss(v: float) -> str:
    if math.isnan(v):
        return "nan"
    return f"{v:.3f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"


def _fmt_s_per_step(v: float) -> str:
    return f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _json_float(v: float | None) -> float | None:
    """NaN/inf -> None: summary.json and metrics.jsonl stay strict JSON."""
    return v if v is not None and math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------------------------
# training progress


class TrainProgress:
    """Progress of one training segment (one musubi process), fed its output lines.

    total_steps: the planned true total (replaced by step_offset + the bar's total once the bar shows).
    step_offset: true steps done before this segment (0, or the resume point). started_at: clock time the stage
    started (for `elapsed_s`; None: now). clock: seconds, monotonic. save_every_n_steps / steps_per_epoch +
    save_every_n_epochs: musubi's save flags, for `next_checkpoint_step` (musubi counts them run-locally:
    trainer_base.py saves when local step % n == 0, and at the end of local epoch e when e % n == 0 and e is not
    the last). post_train_s: expected seconds after training (conversion), added to `eta_run_s`.

    `feed_line` may see the same bar state twice (harmless: every value is set, not accumulated, except
    `bar_resets`, counted per `steps` line that shows n == 0 after the first one: musubi's `reset()`).
    """

    def __init__(
        self,
        total_steps: int,
        step_offset: int = 0,
        started_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        save_every_n_steps: int | None = None,
        steps_per_epoch: int | None = None,
        save_every_n_epochs: int | None = None,
        post_train_s: float = 0.0,
    ):
        self.clock = clock
        self.step_offset = step_offset
        self.started_at = clock() if started_at is None else started_at
        self.local_total = max(total_steps - step_offset, 0)
        self.local_step = 0
        self.save_every_n_steps = save_every_n_steps
        self.steps_per_epoch = steps_per_epoch
        self.save_every_n_epochs = save_every_n_epochs
        self.post_train_s = post_train_s
        self.epoch: int | None = None
        self.epochs: int | None = None
        self.avg_loss: float | None = None
        self.loss: float | None = None
        self.lr: float | None = None
        self.scalars_step: int | None = None
        self.bar_resets = 0
        self.bar_seen = False
        self.checkpoints: list[tuple[int, str]] = []
        self.finished = False
        self.nan_streak = 0
        self._nan_base = 0  # streak up to the previous step
        self._tqdm_s_per_step: float | None = None
        self._anchor: tuple[float, int] | None = None  # (clock, local step) at the first step seen
        self._measured: float | None = None

    # -- feeding

    def feed_line(self, line: str) -> str | None:
        """Consume one output line; returns what it was: "steps" (the training bar), "bar" (another tqdm bar,
        e.g. sampling: not counted), "epoch", "checkpoint", "saved" (`model saved.`) or None."""
        text = strip_ansi(line).strip()
        bar = parse_tqdm(text)
        if bar is not None:
            if bar.desc != STEPS_DESC or bar.total is None:
                return "bar"
            self._on_steps_bar(bar)
            return "steps"
        if m := _EPOCH.match(text):
            self.epoch, self.epochs = int(m[1]), int(m[2])
            return "epoch"
        if m := _SAVING.match(text):
            self.checkpoints.append((self.step, m[1]))
            return "checkpoint"
        if text.endswith(":model saved."):
            self.finished = True
            return "saved"
        return None

    def feed_lines(self, lines: Iterable[str]) -> None:
        """`feed_line` for each of `lines`."""
        for line in lines:
            self.feed_line(line)

    def update_scalars(
        self, step: int, loss: float | None = None, lr: float | None = None, avg_loss: float | None = None
    ) -> None:
        """Values from TensorBoard (`loss/current`, `lr/unet`, `loss/average`) at true global `step`
        (TensorBoard's run-local step + step_offset). Values of a step older than the newest given are ignored."""
        if self.scalars_step is not None and step < self.scalars_step:
            return
        self.scalars_step = step
        if loss is not None:
            self.loss = loss
        if lr is not None:
            self.lr = lr
        if avg_loss is not None:
            self.avg_loss = avg_loss

    def _on_steps_bar(self, bar: Tqdm) -> None:
        if self.bar_seen and bar.n == 0:
            self.bar_resets += 1
        self.bar_seen = True
        self.local_total = bar.total
        new_step = bar.n != self.local_step
        if new_step:
            self._nan_base = self.nan_streak
        self.local_step = bar.n
        self._measure(bar)
        avr = bar.postfix.get("avr_loss")
        if isinstance(avr, float):
            self.avg_loss = avr
            self.nan_streak = self._nan_base + 1 if math.isnan(avr) else 0

    def _measure(self, bar: Tqdm) -> None:
        # After musubi's reset() the first update(1) comes at once, so at n the bar's clock covers n - 1 steps:
        # tqdm's rate n/elapsed is off by n/(n-1).
        if bar.n >= 2 and bar.s_per_it is not None:
            self._tqdm_s_per_step = bar.s_per_it * bar.n / (bar.n - 1)
        if bar.n >= 1:
            now = self.clock()
            if self._anchor is None or bar.n < self._anchor[1]:
                self._anchor = (now, bar.n)
            elif bar.n > self._anchor[1]:
                self._measured = (now - self._anchor[0]) / (bar.n - self._anchor[1])

    # -- derived values

    @property
    def step(self) -> int:
        """The true global step (local step + step_offset)."""
        return self.step_offset + self.local_step

    @property
    def total(self) -> int:
        """The true total steps (step_offset + the bar's total)."""
        return self.step_offset + self.local_total

    @property
    def s_per_step(self) -> float | None:
        """Seconds per optimizer step: from tqdm's rate (corrected for musubi's reset), else measured with the
        clock between bar updates, else None."""
        return self._tqdm_s_per_step if self._tqdm_s_per_step is not None else self._measured

    @property
    def eta_train_s(self) -> float | None:
        """Seconds until training ends: remaining steps x s_per_step (None while unknown)."""
        if self.s_per_step is None:
            return None
        return max(self.total - self.step, 0) * self.s_per_step

    @property
    def eta_run_s(self) -> float | None:
        """eta_train_s + post_train_s (the stages after training)."""
        eta = self.eta_train_s
        return None if eta is None else eta + self.post_train_s

    @property
    def next_checkpoint_step(self) -> int | None:
        """The true step of the next save musubi will make: a step save, an epoch save (never after the last
        epoch) or the final LoRA at the last step; None once training is done."""
        local, total = self.local_step, self.local_total
        if local >= total:
            return None
        candidates = [total]
        n = self.save_every_n_steps
        if n:
            candidates.append((local // n + 1) * n)
        spe, ne = self.steps_per_epoch, self.save_every_n_epochs
        if spe and ne:
            epochs = math.ceil(total / spe)
            e = (local // spe // ne + 1) * ne
            if e < epochs:
                candidates.append(e * spe)
        return self.step_offset + min(c for c in candidates if c > local)

    def nan_stop(self, limit: int = 3) -> bool:
        """True once `limit` consecutive steps showed avr_loss=nan (log `nan_stop_line`, then stop the child)."""
        return self.nan_streak >= limit

    def status_line(self, vram: tuple[float, float] | None = None) -> str:
        """One line: `step 340/2000  4.8 s/step  loss 0.091 (avg 0.094)  lr 1.0e-04  VRAM 21.3/24.0 GB  ETA train
        2h12m, run 2h13m  next checkpoint step 400`; unknown parts are left out. vram: (used, total) in GB."""
        parts = [f"step {self.step}/{self.total}"]
        if self.s_per_step is not None:
            parts.append(f"{_fmt_s_per_step(self.s_per_step)} s/step")
        if self.loss is not None and self.avg_loss is not None:
            parts.append(f"loss {_fmt_loss(self.loss)} (avg {_fmt_loss(self.avg_loss)})")
        elif self.loss is not None:
            parts.append(f"loss {_fmt_loss(self.loss)}")
        elif self.avg_loss is not None:
            parts.append(f"avg loss {_fmt_loss(self.avg_loss)}")
        if self.lr is not None:
            parts.append(f"lr {self.lr:.1e}")
        if vram is not None:
            parts.append(f"VRAM {vram[0]:.1f}/{vram[1]:.1f} GB")
        if self.eta_train_s is not None:
            parts.append(f"ETA train {format_duration(self.eta_train_s)}, run {format_duration(self.eta_run_s)}")
        if self.next_checkpoint_step is not None:
            parts.append(f"next checkpoint step {self.next_checkpoint_step}")
        return "  ".join(parts)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready dict for summary.json's "progress" (NaN/inf written as null; steps are true steps)."""
        return {
            "step": self.step,
            "total": self.total,
            "step_offset": self.step_offset,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "s_per_step": _json_float(self.s_per_step),
            "loss": _json_float(self.loss),
            "avg_loss": _json_float(self.avg_loss),
            "lr": _json_float(self.lr),
            "eta_train_s": _json_float(self.eta_train_s),
            "eta_run_s": _json_float(self.eta_run_s),
            "next_checkpoint_step": self.next_checkpoint_step,
            "checkpoints": [{"step": s, "path": p} for s, p in self.checkpoints],
            "bar_resets": self.bar_resets,
            "nan_streak": self.nan_streak,
            "finished": self.finished,
            "elapsed_s": self.clock() - self.started_at,
        }


def nan_stop_line(steps: int, step: int) -> str:
    """The log line written when the NaN guard stops training (a failure classifier matches NAN_STOP_MARK)."""
    return f"{NAN_STOP_MARK} for {steps} consecutive steps (step {step})"


# ---------------------------------------------------------------------------------------------------------------
# metrics.jsonl

_METRIC_KEYS = ("loss", "avg_loss", "lr", "s_per_step")


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl: {"step" (true global), "loss", "avg_loss", "lr",
    "s_per_step", "wall_time" (unix seconds), "segment"}; unknown or NaN values are null.

    A file left by a killed process may end in a cut line: a newline is written before the first append so that
    fragment stays a line of its own, which `read` skips.
    """

    def __init__(self, path: Path, wall_clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.wall_clock = wall_clock
        self._last: tuple | None = None
        self._checked_end = False

    def log(
        self,
        step: int,
        *,
        loss: float | None = None,
        avg_loss: float | None = None,
        lr: float | None = None,
        s_per_step: float | None = None,
        segment: int = 0,
        wall_time: float | None = None,
    ) -> dict[str, Any]:
        """Append one row and return it (OSError from the file system propagates)."""
        row = {
            "step": step,
            "loss": _json_float(loss),
            "avg_loss": _json_float(avg_loss),
            "lr": _json_float(lr),
            "s_per_step": _json_float(s_per_step),
            "wall_time": self.wall_clock() if wall_time is None else wall_time,
            "segment": segment,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            if not self._checked_end:
                self._checked_end = True
                if f.tell() > 0 and not _ends_with_newline(self.path):
                    f.write(b"\n")
            f.write(json.dumps(row, allow_nan=False).encode() + b"\n")
        self._last = (step, row["loss"], row["avg_loss"], row["lr"], segment)
        return row

    def log_progress(self, progress: TrainProgress, segment: int = 0) -> dict[str, Any] | None:
        """Log `progress`'s current values unless they equal the last row written (same step, losses, lr and
        segment); returns the row written or None. Nothing is logged before the first step."""
        if progress.local_step == 0:
            return None
        key = (
            progress.step,
            _json_float(progress.loss),
            _json_float(progress.avg_loss),
            _json_float(progress.lr),
            segment,
        )
        if key == self._last:
            return None
        return self.log(
            progress.step,
            loss=progress.loss,
            avg_loss=progress.avg_loss,
            lr=progress.lr,
            s_per_step=progress.s_per_step,
            segment=segment,
        )

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl by ascending step, one per step ([] if the file does not exist).

        Lines that are not JSON objects with an int "step" (a cut last line) are skipped. Later lines win: a
        line for the same step and segment as the row before fills in its non-null values; a line for an older
        (or the same) step from another segment, or an older step of the same one, drops every row from that
        step on (the abandoned tail of a resumed run), so the steps stay increasing.
        """
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return []
        rows: list[dict[str, Any]] = []
        for raw in data.splitlines():
            row = _parse_row(raw)
            if row is None:
                continue
            if rows and row["step"] <= rows[-1]["step"]:
                last = rows[-1]
                if row["step"] == last["step"] and row.get("segment") == last.get("segment"):
                    last.update({k: v for k, v in row.items() if v is not None})
                    continue
                rows = [r for r in rows if r["step"] < row["step"]]
            rows.append(row)
        return rows


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """MetricsLog.read(path)."""
    return MetricsLog.read(path)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _parse_row(raw: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(row, dict) or not isinstance(row.get("step"), int):
        return None
    return row


# ---------------------------------------------------------------------------------------------------------------
# console


class StatusPrinter:
    """Shows a status line: on a terminal rewritten in place (`\\r` + line + clear to end of line, cut to the
    terminal width so it never wraps), otherwise as a plain line at most every `plain_every_s` seconds (and
    always on `final`). stream: a text stream, or a binary one (written UTF-8). width: columns for the TTY cut
    (None: the terminal's, via shutil.get_terminal_size)."""

    def __init__(
        self,
        stream: TextIO | io.BufferedIOBase,
        is_tty: bool,
        clock: Callable[[], float] = time.monotonic,
        plain_every_s: float = 30.0,
        width: int | None = None,
    ):
        self.stream, self.is_tty, self.clock = stream, is_tty, clock
        self.plain_every_s = plain_every_s
        self.width = width
        self._last_plain: float | None = None
        self._shown = False

    def show(self, line: str) -> None:
        """Update the status (on a non-TTY: printed only if `plain_every_s` passed since the last print)."""
        if self.is_tty:
            self._write(f"\r{self._fit(line)}\x1b[K")
            self._shown = True
            return
        now = self.clock()
        if self._last_plain is None or now - self._last_plain >= self.plain_every_s:
            self._last_plain = now
            self._write(line + "\n")

    def final(self, line: str) -> None:
        """Print `line` as the last status, ending the line (always printed)."""
        if self.is_tty:
            self._write(f"\r{self._fit(line)}\x1b[K\n")
            self._shown = False
        else:
            self._write(line + "\n")
        self._last_plain = self.clock()

    def clear(self) -> None:
        """On a TTY, erase a shown status line so other output can be printed; nothing otherwise."""
        if self.is_tty and self._shown:
            self._write("\r\x1b[K")
            self._shown = False

    def _fit(self, line: str) -> str:
        width = self.width if self.width is not None else shutil.get_terminal_size((120, 24)).columns
        return line if len(line) < width else line[: max(width - 1, 0)]

    def _write(self, text: str) -> None:
        if hasattr(self.stream, "encoding"):
            self.stream.write(text)
        else:
            self.stream.write(text.encode("utf-8"))
        self.stream.flush()


# ---------------------------------------------------------------------------------------------------------------
# cache stages


class CacheProgress:
    """Progress of a cache stage from the count of finished cache files (the caller counts and calls `update`).

    The rate is measured from the first update that shows items done (so model loading does not count) to the
    newest one; status: `cache latents: 12/48 items  3.1 items/s  ETA 12s` (`s/item` below 1 item/s)."""

    def __init__(self, total_items: int, clock: Callable[[], float] = time.monotonic, label: str = "cache latents"):
        self.total_items, self.clock, self.label = total_items, clock, label
        self.done = 0
        self._anchor: tuple[float, int] | None = None
        self._latest: tuple[float, int] | None = None

    def update(self, done: int) -> None:
        """Record `done` finished items (counts never go down: a smaller value is ignored)."""
        if done < self.done:
            return
        now = self.clock()
        self.done = done
        if done > 0 and self._anchor is None:
            self._anchor = (now, done)
        self._latest = (now, done)

    @property
    def items_per_s(self) -> float | None:
        """Items per second since the first items showed, None until two different counts were seen."""
        if self._anchor is None or self._latest is None:
            return None
        dt, dn = self._latest[0] - self._anchor[0], self._latest[1] - self._anchor[1]
        return dn / dt if dn > 0 and dt > 0 else None

    @property
    def eta_s(self) -> float | None:
        """Seconds until all items are done at the measured rate; 0 when done; None while unknown."""
        if self.done >= self.total_items:
            return 0.0
        rate = self.items_per_s
        return None if rate is None else (self.total_items - self.done) / rate

    def status_line(self) -> str:
        """`cache latents: 12/48 items  3.1 items/s  ETA 12s` (unknown parts left out)."""
        parts = [f"{self.label}: {self.done}/{self.total_items} items"]
        rate = self.items_per_s
        if rate is not None:
            parts.append(f"{rate:.1f} items/s" if rate >= 1 else f"{1 / rate:.1f} s/item")
        if self.eta_s is not None and self.done < self.total_items:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        return "  ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# TensorBoard

TB_TAGS = ("loss/current", "loss/average", "lr/unet")


@dataclass
class TbState:
    """Open readers of `read_tb_scalars`, one per event file (each remembers its offset, and retries a record
    cut by a writer that is still writing)."""

    loaders: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Drop the readers (their files close with them)."""
        self.loaders.clear()


def read_tb_scalars(
    event_dir: Path, tags: Iterable[str] = TB_TAGS, state: TbState | None = None
) -> tuple[list[dict[str, Any]], TbState]:
    """New scalar values from the TensorBoard event files under `event_dir` since the last call with `state`.

    musubi logs through accelerate's TensorBoard tracker (torch's SummaryWriter): files `events.out.tfevents.*`
    in `{logging_dir}/{log_prefix}{YYYYmmddHHMMSS}/network_train/` (a resumed segment gets a new timestamped
    folder, with steps from 0 again). Every file below `event_dir` is read, in path order, with tensorboard's
    `EventFileLoader`. Returns (rows, state): rows are {"run": folder of the file relative to event_dir, "step"
    (TensorBoard's run-local step), "wall_time", <tag>: float, ...} for the given tags, one per run and step and
    call, in file order. musubi writes one event per tag, so a step read while its events are being written
    can come back in the next call with its other tags: merge rows by (run, step). Raises ImportError without
    tensorboard installed.
    """
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading TensorBoard files needs the tensorboard package") from e
    state = state if state is not None else TbState()
    wanted = set(tags)
    event_dir = Path(event_dir)
    files = sorted(event_dir.rglob("events.out.tfevents.*")) if event_dir.is_dir() else []
    for gone in set(state.loaders) - {str(p) for p in files}:
        del state.loaders[gone]
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for path in files:
        loader = state.loaders.get(str(path))
        if loader is None:
            loader = state.loaders[str(path)] = EventFileLoader(str(path))
        run = path.parent.relative_to(event_dir).as_posix()
        for event in loader.Load():
            _collect(event, run, wanted, rows)
    return list(rows.values()), state


def _collect(event, run: str, wanted: set[str], rows: dict[tuple[str, int], dict[str, Any]]) -> None:
    if not event.HasField("summary"):
        return
    for value in event.summary.value:
        if value.tag not in wanted:
            continue
        number = _tb_value(value)
        if number is None:
            continue
        row = rows.setdefault((run, event.step), {"run": run, "step": event.step, "wall_time": event.wall_time})
        row[value.tag] = number


def _tb_value(value) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":  # EventFileLoader migrates simple_value to a scalar tensor
        from tensorboard.util import tensor_util

        array = tensor_util.make_ndarray(value.tensor)
        return float(array.reshape(-1)[0]) if array.size == 1 else None
    return None
