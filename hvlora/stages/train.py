"""Stage 6: train the LoRA with `accelerate launch -m` the family's musubi train script, in segments that survive
any interruption with true step counts.

Pick the newest complete state (resume.py), train the remaining steps in a new segment folder with the whole run's
LR schedule, watch it (watch.py: status line, metrics.jsonl, NaN guard, VRAM, plots), then move what it wrote into
RUN/checkpoints/ under true numbers, stamp every LoRA file with the true totals and this project's metadata, and
prune to the last N by true step. musubi restarts its counters at 0 on --resume (contract musubi-training.md §1):
that is why each segment gets its own folder and the remaining steps.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..core.context import RunContext
from ..core.errors import Interrupted, StageFailed, UserError
from ..core.fsutil import atomic_copy
from ..core.runner import run_logged
from ..training import gpu, lorainfo, lorameta, progress, resume, sampling, watch
from ..training.musubi import Command, TrainSegment, trained_lora

NAME = "train"
TITLE = "train LoRA"


def command(ctx: RunContext, seg: TrainSegment | None = None) -> Command:
    """The musubi command of a segment (the dry run shows the first one)."""
    seg = seg or segment_args(ctx, ctx.paths.segments / "00", ctx.paths.tensorboard / "segment-00", 0, None)
    scripts = ctx.settings.family.scripts
    return scripts.train(ctx.settings, ctx.dataset_toml, ctx.weights, seg, ctx.plan.memory, ctx.plan.launch)


def segment_args(ctx: RunContext, out: Path, tb: Path, done: int, state: Path | None) -> TrainSegment:
    s, plan = ctx.settings, ctx.plan
    prompts = sampling.prompt_file(ctx) if sampling.enabled(s, plan) else None
    return TrainSegment(
        output_dir=out,
        logging_dir=tb,
        max_train_steps=plan.total_steps - done,
        total_steps=plan.total_steps,
        resume=state,
        save_every_n_steps=s.save_every_n_steps,
        save_every_n_epochs=s.save_every_n_epochs,
        keep_models=s.keep_last_n_checkpoints,
        keep_states=s.keep_last_n_states,
        sample_prompts=prompts,
        sample_every_n_steps=s.sample_every_n_steps if prompts else 0,
        sample_every_n_epochs=sampling.every_n_epochs(s, plan) if prompts else 0,
        sample_at_first=bool(prompts) and s.sample_at_first and done == 0,
        metadata=metadata_flags(ctx),
    )


def metadata_flags(ctx: RunContext) -> dict[str, str]:
    """musubi's --metadata_* from output_name, the family, the trigger word and the task."""
    s = ctx.settings
    trigger = s.trigger_word.strip()
    desc = f"{s.family.title} {s.task} LoRA" + (f"; trigger word: {trigger}" if trigger else "")
    return {
        "title": s.output_name,
        "description": desc,
        "tags": ",".join(filter(None, [s.family.name, s.task, trigger])),
    }


def run(ctx: RunContext) -> dict:
    """Train the remaining steps (none if a complete state already holds them all); sets ctx.lora to the final
    musubi-format LoRA in RUN/checkpoints."""
    s, plan, log = ctx.settings, ctx.plan, ctx.log(NAME)
    seglog = resume.SegmentLog.in_run(ctx.paths.root)
    _adopt_leftovers(ctx, seglog)
    state = resume.newest_state(
        ctx.paths.checkpoints, s.output_name, plan.launch.num_processes, plan.steps_per_epoch, log
    )
    done = state.true_step if state else 0
    if state is not None:
        log("resuming: " + resume.describe_resume(ctx.paths.root, state, plan.total_steps, time.time()))
    info: dict = {}
    if done < plan.total_steps:
        info = _train_segment(ctx, seglog, state, done)
    else:
        log(f"the state of step {done} already holds all {plan.total_steps} steps: nothing to train")
    lora = _final_lora(ctx, max(done, plan.total_steps) if info else done)
    ctx.lora = lora
    ctx.summary.put("segments", [_segment_json(g) for g in seglog.all()])
    return {"lora": str(lora), "true_steps": plan.total_steps, **info}


def _train_segment(ctx: RunContext, seglog: resume.SegmentLog, state, done: int) -> dict:
    s, plan, log = ctx.settings, ctx.plan, ctx.log(NAME)
    seg = seglog.begin(
        from_step=done,
        from_epoch=done / plan.steps_per_epoch,
        resumed_from=state.path if state else None,
        num_processes=plan.launch.num_processes,
        steps_per_epoch=plan.steps_per_epoch,
        total_steps=plan.total_steps,
        output_name=s.output_name,
    )
    tb = ctx.paths.tensorboard / f"segment-{seg.index:02d}"
    cmd = command(ctx, segment_args(ctx, seg.dir, tb, done, state.path if state else None))
    sampler = _sampler(plan)
    watcher = watch.TrainWatch(ctx, seg, tb, sampler, _gpu_total(plan))
    log(f"segment {seg.index}: steps {done + 1}..{plan.total_steps} into {seg.dir}")
    status = "failed"
    try:
        run_logged(
            cmd.executable(),
            stage=NAME,
            log_path=ctx.paths.log(NAME),
            env=ctx.env,
            console=watcher.console,
            abort=watcher.abort,
        )
        status = "ok"
    except Interrupted:
        status = "interrupted"
        raise
    finally:
        # whatever happened, the segment is recorded and its files adopted; a failure in this bookkeeping is logged
        # and must not hide how training itself ended
        snapshot = _safely(log, "finish the progress record", watcher.finish) or {}
        peaks = dict(sampler.peak_bytes) if sampler else {}
        seglog.end(seg.index, status)
        _safely(log, "adopt the segment's files", _adopt, ctx, seg)
        _safely(log, "draw loss.png", watcher.draw_loss)
        _safely(log, "draw samples.png", watcher.draw_samples)
        ctx.summary.update("vram", {"peak_bytes_per_gpu": peaks, "measured_with": "NVML (all processes on the GPU)"})
        ctx.summary.put("progress", snapshot)
    return {"segment": seg.index, "from_step": done, "command": cmd.executable(), "vram_peak_bytes": peaks}


def _safely(log, what: str, fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - reported, the run's own outcome decides
        log(f"warning: could not {what}: {type(e).__name__}: {e}")
        return None


def _adopt_leftovers(ctx: RunContext, seglog: resume.SegmentLog) -> None:
    """A segment whose process (and ours) was killed left its files in its folder: adopt them first."""
    for seg in seglog.all():
        if seg.status is None:  # killed with us: its last scalars never reached metrics.jsonl
            _import_scalars(ctx, seg)
        if Path(seg.dir).is_dir() and any(Path(seg.dir).iterdir()):
            _adopt(ctx, seg)
        if seg.status is None:
            seglog.end(seg.index, "killed")


def _import_scalars(ctx: RunContext, seg: resume.Segment) -> None:
    """A killed segment's TensorBoard values (loss, LR per step) into metrics.jsonl under true steps."""
    try:
        rows, state = progress.read_tb_scalars(ctx.paths.tensorboard / f"segment-{seg.index:02d}")
    except ImportError:
        return
    state.close()
    watch.log_scalars(progress.MetricsLog(ctx.paths.metrics), rows, seg)


def _adopt(ctx: RunContext, seg: resume.Segment) -> None:
    s, plan, log = ctx.settings, ctx.plan, ctx.log(NAME)
    moved = resume.adopt(seg, ctx.paths.checkpoints, s.output_name, log=log)
    watch.adopt_samples(seg, ctx.paths.samples, s.output_name, s.family.samples.parse_name)
    base = _base_metadata(ctx)
    for path in moved:
        if path.suffix != ".safetensors":
            continue
        art = resume.parse_name(path.name, s.output_name)
        step = (
            plan.total_steps
            if art.kind == "final"
            else (art.number if art.kind == "step" else art.number * plan.steps_per_epoch)
        )
        lorainfo.stamp(path, base, step, plan.steps_per_epoch, plan.total_steps)
    resume.prune(
        ctx.paths.checkpoints,
        s.output_name,
        s.keep_last_n_checkpoints,
        s.keep_last_n_states,
        plan.steps_per_epoch,
        plan.launch.num_processes,
        log=log,
    )
    if not any(Path(seg.dir).rglob("*.safetensors")):
        shutil.rmtree(seg.dir, ignore_errors=True)


def _base_metadata(ctx: RunContext) -> dict[str, str]:
    from ..data.report import totals

    t = totals(ctx.data)
    return lorainfo.base_metadata(
        ctx.settings, t["items_per_bucket"], ctx.summary.data.get("run_identity", ""), ctx.settings.models_dir
    )


def _final_lora(ctx: RunContext, done: int) -> Path:
    """RUN/checkpoints/NAME.safetensors. A run killed between its last state and its final file has a checkpoint of
    the same step (with a step save on it): that becomes the final file."""
    s, plan = ctx.settings, ctx.plan
    lora = trained_lora(ctx.paths.checkpoints, s.output_name)
    if lora.is_file() and lorameta.read_metadata(lora).get("ss_steps") == str(plan.total_steps):
        return lora
    same_step = ctx.paths.checkpoints / resume.lora_name(s.output_name, "step", plan.total_steps)
    if done == plan.total_steps and same_step.is_file():
        atomic_copy(same_step, lora)
        lorainfo.stamp(lora, _base_metadata(ctx), plan.total_steps, plan.steps_per_epoch, plan.total_steps)
        return lora
    if done > plan.total_steps:
        raise UserError(
            f"this run's newest state is at step {done}, past the {plan.total_steps} steps asked for: pass "
            f"--max_train_steps {done} or more to finish it, --new_run to train afresh, or use a checkpoint from "
            f"{ctx.paths.checkpoints}"
        )
    raise StageFailed(NAME, f"training ended without writing {lora}", None, ctx.paths.log(NAME))


def _sampler(plan) -> gpu.PeakSampler | None:
    indices = [g.index for g in plan.gpus if g.index >= 0]
    return gpu.PeakSampler(indices) if indices else None


def _gpu_total(plan) -> int | None:
    return min(g.total_bytes for g in plan.gpus) if plan.gpus else None


def _segment_json(seg: resume.Segment) -> dict:
    return {
        "index": seg.index,
        "from_step": seg.from_step,
        "to_step": seg.total_steps,
        "resumed_from": str(seg.resumed_from) if seg.resumed_from else None,
        "started_at": seg.started_at,
        "ended_at": seg.ended_at,
        "status": seg.status,
        "num_processes": seg.num_processes,
    }
