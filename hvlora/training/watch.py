"""Watching one training segment: musubi's output -> the status line, metrics.jsonl, summary.json's "progress",
GPU memory (NVML), the NaN guard, loss.png and samples.png.

Everything here runs in the runner's pump thread, driven by the child's output, and is throttled: the status line
at most twice a second, summary.json every 5 s, TensorBoard reads every 10 s, plots when a checkpoint or a sample
appears. A failure in here never stops training: the runner catches it and the run goes on with the raw output.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from ..core.console import ProgressConsole
from ..core.context import RunContext
from ..core.fsutil import GIB
from . import plots, progress, resume

NAN_LIMIT = 3  # consecutive steps with avr_loss=nan before the run is stopped (musubi's average stays NaN for good)
POST_TRAIN_S = 15.0  # the conversion and checks after training, for the run's ETA


class TrainWatch:
    """The console (for runner.run_logged), the abort hook and the bookkeeping of segment `seg`, whose TensorBoard
    files musubi writes under `tb_dir`. `sampler`: a gpu.PeakSampler (sampled here) or None; `gpu_total`: bytes of
    the GPU shown on the status line."""

    def __init__(self, ctx: RunContext, seg: resume.Segment, tb_dir: Path, sampler=None, gpu_total: int | None = None):
        s = ctx.settings
        self.ctx, self.seg, self.sampler, self.gpu_total = ctx, seg, sampler, gpu_total
        self.progress = progress.TrainProgress(
            seg.total_steps,
            seg.from_step,
            save_every_n_steps=s.save_every_n_steps or None,
            steps_per_epoch=seg.steps_per_epoch,
            save_every_n_epochs=s.save_every_n_epochs or None,
            post_train_s=POST_TRAIN_S,
        )
        self.metrics = progress.MetricsLog(ctx.paths.metrics)
        self.console = ProgressConsole(self._feed, self._status, tick=self._tick)
        self.abort_reason: str | None = None
        self.tb_state = None
        self.tb_dir = tb_dir
        self._last = {"summary": float("-inf"), "tb": float("-inf"), "samples": float("-inf")}
        self._plot_due = False
        self._samples_seen = 0
        self.nan_step: int | None = None

    # -- hooks ------------------------------------------------------------------------------------------------

    def abort(self) -> str | None:
        """The runner's abort hook: a reason once the loss has been NaN for NAN_LIMIT steps."""
        return self.abort_reason

    def _feed(self, line: str) -> bool:
        kind = self.progress.feed_line(line)
        if kind == "steps":
            self.metrics.log_progress(self.progress, self.seg.index)
            if self.progress.nan_streak:  # avr_loss is a moving average: NaN from the first NaN loss on
                self._mark_nan(self.progress.step - self.progress.nan_streak + 1)
            if self.progress.nan_stop(NAN_LIMIT) and self.abort_reason is None:
                self.abort_reason = progress.nan_stop_line(NAN_LIMIT, self.progress.step)
            return True
        if kind == "checkpoint":
            self._plot_due = True
        return kind == "bar"

    def _status(self) -> str:
        if not self.progress.bar_seen:
            return ""
        return self.progress.status_line(self._vram())

    def _vram(self) -> tuple[float, float] | None:
        if self.sampler is None or not self.sampler.latest_bytes or not self.gpu_total:
            return None
        return max(self.sampler.latest_bytes.values()) / GIB, self.gpu_total / GIB  # GiB, as the presets

    def _tick(self) -> None:
        now = time.monotonic()
        if self.sampler is not None:
            self.sampler.sample_once()
        if now - self._last["tb"] >= 10:
            self._last["tb"] = now
            self._read_scalars()
        if now - self._last["summary"] >= 5:
            self._last["summary"] = now
            self._write_summary()
        if now - self._last["samples"] >= 5:
            self._last["samples"] = now
            self._check_samples()
        if self._plot_due:
            self._plot_due = False
            self.draw_loss()

    # -- pieces ---------------------------------------------------------------------------------------------------

    def _read_scalars(self) -> None:
        try:
            rows, self.tb_state = progress.read_tb_scalars(self.tb_dir, state=self.tb_state)
        except ImportError:
            return
        nan_step = log_scalars(self.metrics, rows, self.seg, self.progress)
        if nan_step is not None:
            self._mark_nan(nan_step)

    def _mark_nan(self, step: int) -> None:
        """Record the segment's first NaN loss in segments.json (once per earlier step): what it saves from then on
        is set aside when adopted, so no resume picks poisoned weights."""
        if self.nan_step is None or step < self.nan_step:
            self.nan_step = step
            resume.SegmentLog.in_run(self.ctx.paths.root).mark_nan(self.seg.index, step)

    def _write_summary(self) -> None:
        snap = self.progress.snapshot()
        if self.sampler is not None:
            snap["vram_peak_bytes"] = dict(self.sampler.peak_bytes)
        self.ctx.summary.put("progress", snap)

    def _check_samples(self) -> None:
        folder = Path(self.seg.dir) / "sample"
        count = sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0
        if count != self._samples_seen:
            self._samples_seen = count
            self.draw_samples()

    def samples(self) -> list[tuple[int, int, Path]]:
        """(true step, prompt index, file) of this run's samples: adopted ones and this segment's."""
        out = []
        name = self.ctx.settings.output_name
        for path in sorted(self.ctx.paths.samples.glob("*")) if self.ctx.paths.samples.is_dir() else []:
            parsed = sample_step(path.name, name)
            if parsed:
                out.append((*parsed, path))
        folder = Path(self.seg.dir) / "sample"
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            true = true_sample_step(path.name, name, self.seg, self.ctx.settings.family.samples.parse_name)
            if true:
                out.append((*true, path))
        return out

    def draw_samples(self) -> None:
        found = self.samples()
        if found:
            plots.contact_sheet(found, self.ctx.paths.root / "samples.png")

    def draw_loss(self) -> None:
        rows = progress.MetricsLog.read(self.ctx.paths.metrics)
        checkpoints = sorted({step for step, _ in self.progress.checkpoints} | checkpoint_steps(self.ctx))
        resumes = [g.from_step for g in resume.SegmentLog.in_run(self.ctx.paths.root).all() if g.from_step > 0]
        plots.loss_plot(
            rows,
            self.ctx.paths.root / "loss.png",
            checkpoints=checkpoints,
            resumes=resumes,
            title=f"{self.ctx.settings.output_name}: loss per step",
        )

    def finish(self) -> dict:
        """After the process ended: the last scalars, plots and the progress snapshot (for summary.json)."""
        self.console.close()
        self._read_scalars()
        if self.tb_state is not None:
            self.tb_state.close()
        self._write_summary()
        return self.progress.snapshot()


def log_scalars(metrics: progress.MetricsLog, rows: list[dict], seg: resume.Segment, live=None) -> int | None:
    """TensorBoard rows of segment `seg` (its run-local steps) into metrics.jsonl under true steps, and into the
    live progress when given. Returns the true step of the first NaN loss among them (TensorBoard has every step's
    loss, where the progress bar may skip some), or None."""
    first_nan = None
    for row in sorted(rows, key=lambda r: r["step"]):
        true = seg.from_step + row["step"]
        loss, lr, avg = row.get("loss/current"), row.get("lr/unet"), row.get("loss/average")
        if first_nan is None and loss is not None and math.isnan(loss):
            first_nan = true
        if live is not None:
            live.update_scalars(true, loss=loss, lr=lr, avg_loss=avg)
        if loss is not None or lr is not None:
            metrics.log(true, loss=loss, avg_loss=avg, lr=lr, segment=seg.index, wall_time=row.get("wall_time"))
    return first_nan


def checkpoint_steps(ctx: RunContext) -> set[int]:
    """True steps of the LoRA checkpoints already in RUN/checkpoints (for the plot's markers)."""
    steps = set()
    spe = ctx.plan.steps_per_epoch or 1
    for path in ctx.paths.checkpoints.glob("*.safetensors") if ctx.paths.checkpoints.is_dir() else []:
        art = resume.parse_name(path.name, ctx.settings.output_name)
        if art is None or art.is_state or art.kind == "final":
            continue
        steps.add(resume.end_step(art.kind, art.number, spe))
    return steps


SAMPLE_NAME = "{name}_step{step:08d}_{prompt:02d}{ext}"


def sample_step(filename: str, output_name: str) -> tuple[int, int] | None:
    """(true step, prompt index) of an adopted sample file (SAMPLE_NAME), else None."""
    prefix = f"{output_name}_step"
    if not filename.startswith(prefix):
        return None
    rest = filename[len(prefix) :].split("_")
    try:
        return int(rest[0]), int(rest[1][:2])
    except (IndexError, ValueError):
        return None


def true_sample_step(filename: str, output_name: str, seg: resume.Segment, parse=None) -> tuple[int, int] | None:
    """(true step, prompt index) of a sample musubi wrote in a segment (its numbers are the segment's own: an
    epoch-triggered `e000002` ends local epoch 2, a step-triggered `000100` local step 100). musubi samples twice
    when an epoch ends on a step multiple (once per trigger): both map to the same true step. `parse`: the family's
    reader of its trainer's sample names (None: musubi's common ones, plots.parse_sample_name)."""
    parsed = (parse or plots.parse_sample_name)(filename, output_name)
    if parsed is None:
        return None
    kind, number, prompt = parsed
    return seg.from_step + resume.end_step(kind, number, seg.steps_per_epoch, seg.max_train_steps), prompt


def adopt_samples(seg: resume.Segment, samples_dir: Path, output_name: str, parse=None) -> list[Path]:
    """Move a segment's samples into RUN/samples/ named by true global step (never overwriting: musubi may sample
    one step twice, for the step and the epoch trigger). `parse` as for true_sample_step."""
    folder = Path(seg.dir) / "sample"
    moved = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        parsed = true_sample_step(path.name, output_name, seg, parse)
        if parsed is None:
            continue
        step, prompt = parsed
        ext = ".png" if path.name.endswith(".png") else path.suffix
        target = samples_dir / SAMPLE_NAME.format(name=output_name, step=step, prompt=prompt, ext=ext)
        n = 1
        while target.exists():
            n += 1
            target = target.with_name(f"{target.stem.split('~')[0]}~{n}{ext}")
        samples_dir.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        moved.append(target)
    return moved
