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
    plan, log = ctx.plan, ctx.log(NAME)
    seglog = resume.SegmentLog.in_run(ctx.paths.root)
    _adopt_leftovers(ctx, seglog)
    state = _newest_state(ctx, seglog)
    done = state.true_step if state else 0
    if state is not None:
        log("resuming: " + resume.describe_resume(ctx.paths.root, state, plan.total_steps, time.time()))
    info: dict = {}
    if done < plan.total_steps:
        info = _train_segment(ctx, seglog, state, done)
        state = _newest_state(ctx, seglog, quiet=True)
    else:
        log(f"the state of step {done} already holds all {plan.total_steps} steps: nothing to train")
    lora = _final_lora(ctx, state)
    ctx.lora = lora
    ctx.summary.put("segments", [_segment_json(g) for g in seglog.all()])
    return {"lora": str(lora), "true_steps": plan.total_steps, **info}


def _newest_state(ctx: RunContext, seglog: resume.SegmentLog, quiet: bool = False) -> resume.StateInfo | None:
    """The state to continue from; says which when a NaN loss set the newer ones aside (adopt gave them `~nan`
    names, so no resume can pick them)."""
    plan, log = ctx.plan, ctx.log(NAME)
    state = resume.newest_state(
        ctx.paths.checkpoints,
        ctx.settings.output_name,
        plan.launch.num_processes,
        plan.steps_per_epoch,
        None if quiet else log,
    )
    nan = [g for g in seglog.all() if g.nan_step is not None]
    if nan and not quiet:
        first = min(nan, key=lambda g: g.nan_step)
        used = f"the state of step {state.true_step}" if state else "no state (training starts again from step 0)"
        log(
            f"the loss became NaN at step {first.nan_step} (segment {first.index}): never resuming from a state "
            f"saved at or after it (set aside with `~nan` names); using {used}"
        )
    return state


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
    seglog.set_command(seg.index, cmd.plan_entry())  # machines 1.. of a multi-node run join this command
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
            on_start=ctx.on_child,
        )
        status = "ok"
    except Interrupted:
        status = "interrupted"
        raise
    finally:
        # whatever happened, the segment is recorded and its files adopted; a failure in this bookkeeping is logged
        # and must not hide how training itself ended. run_logged returned only after its output thread (which
        # drives the watcher) ended, so from here this thread alone writes the summary and the console.
        snapshot = _safely(log, "finish the progress record", watcher.finish) or {}
        peaks = dict(sampler.peak_bytes) if sampler else {}
        ended = seglog.end(seg.index, status)  # also carries a NaN step the watcher recorded
        _safely(log, "adopt the segment's files", _adopt, ctx, ended)
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
    """A segment whose process (and ours) was killed left its files in its folder: adopt them first, each stamped
    with the step it was saved at (a final LoRA with its own segment's total, not this command's)."""
    for seg in seglog.all():
        if seg.status is None:  # killed with us: its last scalars never reached metrics.jsonl
            nan_step = _import_scalars(ctx, seg)
            if nan_step is not None:
                seg = seglog.mark_nan(seg.index, nan_step)
        if Path(seg.dir).is_dir() and any(Path(seg.dir).iterdir()):
            _adopt(ctx, seg)
        if seg.status is None:
            seglog.end(seg.index, "killed")


def _import_scalars(ctx: RunContext, seg: resume.Segment) -> int | None:
    """A killed segment's TensorBoard values (loss, LR per step) into metrics.jsonl under true steps; returns the true
    step of its first NaN loss, if any."""
    try:
        rows, state = progress.read_tb_scalars(ctx.paths.tensorboard / f"segment-{seg.index:02d}")
    except ImportError:
        return None
    state.close()
    return watch.log_scalars(progress.MetricsLog(ctx.paths.metrics), rows, seg)


def _adopt(ctx: RunContext, seg: resume.Segment) -> None:
    s, plan, log = ctx.settings, ctx.plan, ctx.log(NAME)
    moved = resume.adopt(seg, ctx.paths.checkpoints, s.output_name, log=log)
    watch.adopt_samples(seg, ctx.paths.samples, s.output_name, s.family.samples.parse_name)
    base = _base_metadata(ctx)
    for path, step in moved.items():
        art = resume.parse_name(path.name, s.output_name)
        if art is not None and not art.is_state:  # `~nan` files are left as musubi wrote them
            lorainfo.stamp(path, base, step, seg.steps_per_epoch, seg.total_steps)
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


def _final_lora(ctx: RunContext, state: resume.StateInfo | None) -> Path:
    """RUN/checkpoints/NAME.safetensors holding all plan.total_steps steps (its ss_steps says so).

    musubi v0.3.4 writes the final state first and the final LoRA second, so a run stopped between the two (a full
    disk, `docker stop`, a failed metadata stamp) has the state of the last step but no final file. Then the final
    file is made from a LoRA checkpoint of that step, else from the state's own weights (`lorainfo.from_state`:
    musubi's key names, the --save_precision dtype, this run's metadata); the console says which. A final file of
    another step count is kept aside, never used. Raises UserError when the newest state is past the steps asked
    for, StageFailed when no file or state holds the last step.
    """
    s, plan, log = ctx.settings, ctx.plan, ctx.log(NAME)
    total, ckpt = plan.total_steps, ctx.paths.checkpoints
    lora = trained_lora(ckpt, s.output_name)
    if lora.is_file() and lorameta.read_metadata(lora).get("ss_steps") == str(total):
        return lora
    done = state.true_step if state else 0
    if done > total:
        raise UserError(
            f"this run's newest state is at step {done}, past the {total} steps asked for: pass "
            f"--max_train_steps {done} or more to finish it, --new_run to train afresh, or use a checkpoint from {ckpt}"
        )
    if done < total:
        raise StageFailed(NAME, f"training ended without writing {lora}", None, ctx.paths.log(NAME))
    if lora.is_file():
        resume.keep_aside(lora, log)
    same_step = _checkpoint_at(ctx, total)
    if same_step is not None:
        atomic_copy(same_step, lora)
        lorainfo.stamp(lora, _base_metadata(ctx), total, plan.steps_per_epoch, total)
        log(f"the final LoRA was missing: copied from {same_step.name}, the checkpoint of step {total}")
        return lora
    meta = {
        **_musubi_metadata(ctx),
        **_base_metadata(ctx),
        **lorainfo.step_metadata(total, plan.steps_per_epoch, total),
    }
    lorainfo.from_state(state.path, lora, s.save_precision, meta)
    log(
        f"the final LoRA was missing (training stopped between musubi's final state and its final file): built from "
        f"the weights of the state of step {total} ({state.path.name}/model.safetensors) in {s.save_precision}"
    )
    return lora


def _checkpoints(ctx: RunContext) -> list[tuple[int, Path]]:
    """(true step, path) of the run's whole LoRA checkpoints (step- or epoch-named, canonical names), oldest first."""
    name, spe = ctx.settings.output_name, ctx.plan.steps_per_epoch
    found = []
    for path in ctx.paths.checkpoints.glob("*.safetensors"):
        art = resume.parse_name(path.name, name)
        if art is not None and art.kind != "final" and art.aside is None and not lorameta.safetensors_problem(path):
            found.append((resume.end_step(art.kind, art.number, spe), path))
    return sorted(found)


def _checkpoint_at(ctx: RunContext, step: int) -> Path | None:
    """A LoRA checkpoint saved at true step `step`, or None."""
    return next((path for at, path in _checkpoints(ctx) if at == step), None)


def _musubi_metadata(ctx: RunContext) -> dict[str, str]:
    """musubi's ss_* keys for a file made from a state: those of this run's newest LoRA checkpoint (the same musubi
    arguments wrote them), else musubi's minimum set; step counts and hashes are set by the caller."""
    keys = ctx.settings.family.scripts.minimum_metadata(ctx.settings)
    found = _checkpoints(ctx)
    if found:
        md = lorameta.read_metadata(found[-1][1])
        keys.update(
            {k: v for k, v in md.items() if k.startswith(("ss_", "modelspec.")) and k not in lorameta.HASH_KEYS}
        )
    return keys


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
