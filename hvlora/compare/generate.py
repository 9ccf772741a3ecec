"""`--generate`: the base model and the LoRA on the same prompts, seeds and settings, side by side.

Order: find the LoRA and its run (locate.py), refuse a file musubi's generator would not fully apply, plan the
inference (size and length from the run's buckets, the family's steps/guidance/flow shift, memory knobs and their
ESTIMATE: printed before anything loads), then in RUN/compare/<UTC time>/:
  [1/4] model files       the family's weight files, present and verified (downloaded if missing, as stage 1)
  [2/4] base model        the generator over every prompt line, without the LoRA         -> base/
  [3/4] with the LoRA     the same command plus the LoRA                                   -> lora/
  [4/4] side by side      NN_promptP_seedS.mp4 (or .png for one frame) and sheet.png
with `prompts.txt` (what both read), `logs/`, `summary.json` and `compare.json` (the record --push_to_hub reads).
A generator log that says "not all LoRA keys are used" fails the LoRA run: the comparison would show the base model
twice. Nothing of the training run is changed; each command writes a new folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shlex
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..core.config import Settings
from ..core.context import RunContext, RunPaths, Summary, child_env
from ..core.errors import Interrupted, StageFailed, UserError
from ..core.fsutil import atomic_write_json
from ..core.runner import log_tail, run_logged
from ..stages import download
from ..training import gpu, outputs, sampling
from . import compose, family, locate, prompts
from .job import GenerateJob, Inference

RECORD = "compare.json"
STAGES = ("model files", "base model", "with the LoRA", "side by side")
_OOM = ("CUDA out of memory", "OutOfMemoryError")


@dataclass(frozen=True)
class Plan:
    """Everything decided before a model loads."""

    trained: locate.Trained
    gen: ModuleType
    task: str
    dit_variant: str
    inference: Inference
    memory: Any
    lines: list[str]
    folder: Path
    image: Path | None
    items: list[prompts.Item]
    single: tuple[str, int] | None = None

    @property
    def labels(self) -> tuple[str, str]:
        m = self.inference.lora_multiplier
        return ("base model", f"LoRA x{m:.1f}" if float(m).is_integer() else f"LoRA x{m:g}")


def run(s: Settings) -> Plan:
    """Make the comparison (in plan.folder); returns its plan. Raises UserError (before any model loads),
    StageFailed (after its report was printed), Interrupted, or InternalError."""
    plan = prepare(s)
    print("\n[plan] generate", flush=True)
    for line in plan.lines:
        print(f"  {line}", flush=True)
    settings = _as_trained(s, plan.trained, plan.task, plan.dit_variant)
    paths = RunPaths(plan.folder)
    ctx = RunContext(settings, paths, Summary(paths.summary, settings), child_env())
    print(f"comparison folder: {plan.folder}", flush=True)
    with _guard(ctx):
        _stage(ctx, 1, "download", lambda: download.run(ctx))
        base = _stage(ctx, 2, "generate_base", lambda: _render(ctx, plan, lora=None))
        lora = _stage(ctx, 3, "generate_lora", lambda: _render(ctx, plan, lora=plan.trained.lora))
        record = _stage(ctx, 4, "compose", lambda: {"record": _compose(plan, base["videos"], lora["videos"])})["record"]
        ctx.summary.finish("succeeded")
    _report(plan, record)
    return plan


def prepare(s: Settings) -> Plan:
    """The LoRA, the inference settings, the memory plan and estimate, the prompt lines (written to prompts.txt)
    and, for i2v, the first frame. Raises UserError for anything that would fail later."""
    trained = locate.locate(s)
    gen = family.generator(trained.metadata)
    modules = gen.check_lora(trained.lora)
    task = str(trained.value("task", s.task))
    variant = str(trained.value("dit_variant", s.dit_variant))
    width, height, length = gen.default_shape(trained.buckets)
    width, height = s.video_size or (width, height)
    length = s.video_length or length
    inference = Inference(
        width,
        height,
        length,
        s.infer_steps or gen.INFER_STEPS,
        gen.GUIDANCE_SCALE if s.guidance_scale is None else s.guidance_scale,
        gen.FLOW_SHIFT if s.flow_shift is None else s.flow_shift,
        s.lora_multiplier,
    )
    found = prompts.gather(s, trained)
    folder = compare_folder(s, trained)
    try:
        image = _first_frame(trained, folder, found) if task == "i2v" else None
    except UserError:
        shutil.rmtree(folder, ignore_errors=True)  # nothing of it was made yet
        raise
    batch = prompts.items(found, s.seeds or (s.seed,), image)
    prompts.write(folder / "prompts.txt", batch)
    single = (batch[0].prompt.text, batch[0].seed) if len(batch) == 1 and not batch[0].prompt.options else None
    shape, several = (width, height, length), single is None
    gpu_total = _gpu_total(s)
    memory = gen.plan_memory(_as_trained(s, trained, task, variant), gpu_total, shape, task, several)
    estimate = gen.estimate(memory, shape, task, several)
    seeds = sorted({i.seed for i in batch})
    lines = [
        f"LoRA: {trained.lora} ({modules} modules; {task}, DiT {variant})",
        f"prompts: {len(found)} x seed(s) {', '.join(map(str, seeds))} = {len(batch)} video(s) per run"
        + (f"; from {_origin(found)}" if found else ""),
        f"settings: {inference.describe()}; LoRA multiplier {inference.lora_multiplier:g}; --cpu_noise (the same "
        "noise in both runs)",
        *gen.describe(memory, estimate, gpu_total, s.vram, s.device, several, _host_gib()),
        "two generator runs, each loading the models once: the base model, then with the LoRA",
    ]
    return Plan(trained, gen, task, variant, inference, memory, lines, folder, image, batch, single)


def _as_trained(s: Settings, trained: locate.Trained, task: str, variant: str) -> Settings:
    """The settings with the LoRA's model family, task and DiT variant (its weights and memory, whatever this
    command's --model_family says)."""
    return dataclasses.replace(s, model_family=family.of(trained.metadata).name, task=task, dit_variant=variant)


def _origin(found: list[prompts.Prompt]) -> str:
    kinds = {p.source for p in found}
    if kinds <= {"trigger", "caption", "fallback"}:
        return "the run's data (the trigger word and captions, as the samples)"
    return "--prompt" if kinds == {"prompt"} else "the prompt file"


def _host_gib() -> float | None:
    try:
        return gpu.host_available_bytes() / 2**30
    except (OSError, ValueError):
        return None


def _gpu_total(s: Settings) -> float | None:
    """The memory (GiB) of the GPU musubi's generator uses (the first visible one), or None (CPU, none seen)."""
    if s.device != "cuda":
        return None
    gpus = gpu.detect_gpus()
    return gpus[0].total_gib if gpus else None


def compare_folder(s: Settings, trained: locate.Trained) -> Path:
    """RUN/compare/<UTC time>/ for a run's LoRA, else OUTPUT_DIR/compare/<file stem>-<UTC time>/ (created; never
    an existing one)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    if trained.run_dir is not None:
        parent, name = trained.run_dir / "compare", stamp
    else:
        parent, name = s.output_dir / "compare", f"{trained.lora.stem}-{stamp}"
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        folder = parent / (name + (f"-{n}" if n else ""))
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise UserError(f"{parent} has no room for another comparison folder")


def _first_frame(trained: locate.Trained, folder: Path, found: list[prompts.Prompt]) -> Path | None:
    """i2v: the first frame of the run's first training video (the samples' choice), the same for both runs; None
    when every prompt line brings its own `--i`. Raises UserError when there is neither."""
    entries = locate.trained_files(trained.run_dir) if trained.run_dir else []
    media = next((e for e in entries if e.get("kind") == "video"), entries[0] if entries else None)
    if media is not None:
        source = locate.dataset_media(trained.run_dir, media)
        return sampling.save_first_frame(source, folder / "inputs" / f"{Path(media['dataset_name']).stem}_first.png")
    if found and all(re.search(r"(?:^| )--i ", p.options) for p in found):
        return None
    raise UserError(
        "an i2v LoRA needs a first frame: compare a run's LoRA (its first training video is used), or give "
        "--sample_prompts FILE whose every line has --i IMAGE"
    )


def _stage(ctx: RunContext, index: int, name: str, work) -> dict:
    label = f"[{index}/{len(STAGES)}] {STAGES[index - 1]}"
    print(f"\n{label}", flush=True)
    t0 = time.monotonic()
    try:
        info = work() or {}
    except BaseException as e:
        status = "interrupted" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "failed"
        ctx.summary.stage(name, status, time.monotonic() - t0, error=str(e) or type(e).__name__)
        raise
    wall = time.monotonic() - t0
    ctx.summary.stage(name, "ok", wall, **{k: v for k, v in info.items() if k not in ("videos", "record")})
    print(f"{label}: done in {wall:.1f} s", flush=True)
    return info


def _render(ctx: RunContext, plan: Plan, lora: Path | None) -> dict:
    """The generator over every prompt line (one process, or one per line: the family's `commands`); returns the
    command (the last one) and the videos in line order. Raises StageFailed for a failed process, a LoRA it did not
    fully apply, or a video count that does not match."""
    save = plan.folder / ("lora" if lora is not None else "base")
    job = GenerateJob(
        plan.task,
        ctx.settings.device,
        plan.folder / "prompts.txt",
        save,
        plan.inference,
        plan.image,
        plan.memory,
        plan.single,
        plan.dit_variant,
    )
    cmds = plan.gen.commands(job, ctx.weights, lora)  # one process, or one per prompt line (the family's generator)
    cmd, log_path = cmds[0], ctx.paths.log(cmds[0].name)
    for cmd in cmds:  # each appends to the run's one log
        try:
            run_logged(cmd.executable(), stage=cmd.name, log_path=log_path, env=ctx.env)
        except StageFailed as e:
            raise StageFailed(cmd.name, _why(plan.gen, log_path, str(e)), e.command, log_path, e.returncode) from None
    text = log_path.read_text(encoding="utf-8", errors="replace")
    unused = plan.gen.unused_keys_line(text) if lora is not None else None
    if unused:
        raise StageFailed(
            cmd.name,
            f"musubi did not apply the whole LoRA ({unused}): the comparison would show the base model. Use the "
            "musubi-format file a training run wrote (NAME.safetensors, not NAME_comfyui.safetensors).",
            cmd.executable(),
            log_path,
        )
    videos = [v for v in plan.gen.saved_videos(text) if v.parent.resolve() == save.resolve() and v.is_file()]
    if len(videos) != len(plan.items) or len(set(videos)) != len(videos):
        raise StageFailed(
            cmd.name,
            f"musubi saved {len(set(videos))} video(s) for {len(plan.items)} prompt line(s) in {save}",
            cmd.executable(),
            log_path,
        )
    return {"command": cmd.executable(), "videos": videos}


def _why(gen: ModuleType, log_path: Path, message: str) -> str:
    text = "\n".join(log_tail(log_path, 400))
    if gen.needs_cuda(text):
        return (
            f"{message}. musubi v0.3.4's generator cannot start without a CUDA GPU, even with --device cpu: "
            f"{gen.NEEDS_CUDA_WHY}. Run --generate on a machine with an NVIDIA GPU visible."
        )
    if any(marker in text for marker in _OOM):
        return (
            f"{message}: the GPU ran out of memory. Try a smaller --vram preset, --fp8, more --blocks_to_swap, or a "
            "smaller --video_size / --video_length"
        )
    return message


def _compose(plan: Plan, base: list[Path], lora: list[Path]) -> dict:
    """The side-by-side files, the contact sheet and compare.json."""
    pairs, rows = [], []
    for n, (item, b, lo) in enumerate(zip(plan.items, base, lora)):
        pair = compose.Pair(f'"{item.prompt.text}" seed {item.seed}', b, lo)
        out = compose.side_by_side(pair, plan.folder / f"{n:02d}_prompt{item.index}_seed{item.seed}", plan.labels)
        pairs.append(pair)
        rows.append(
            {
                "prompt": item.prompt.text,
                "source": item.prompt.source,
                "seed": item.seed,
                "line": item.line,
                "base": str(b.relative_to(plan.folder)),
                "lora": str(lo.relative_to(plan.folder)),
                "side_by_side": out.name,
                "difference": round(compose.difference(b, lo), 3),
            }
        )
    sheet = compose.contact_sheet(pairs, plan.folder / "sheet.png", plan.labels)
    record = {
        "status": "done",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "lora": {"path": str(plan.trained.lora), "sha256": outputs.sha256_file(plan.trained.lora)},
        "run_dir": str(plan.trained.run_dir) if plan.trained.run_dir else None,
        "task": plan.task,
        "inference": dataclasses.asdict(plan.inference),
        "memory": {k: v for k, v in dataclasses.asdict(plan.memory).items() if k != "sources"},
        "labels": list(plan.labels),
        "sheet": sheet.name,
        "items": rows,
    }
    atomic_write_json(plan.folder / RECORD, record)
    return record


def _report(plan: Plan, record: dict) -> None:
    print(f"\nComparison of {plan.trained.lora.name} (base model | LoRA) in {plan.folder}:", flush=True)
    for row in record["items"]:
        print(f"  {row['side_by_side']}  seed {row['seed']}: {row['prompt'][:80]}", flush=True)
    print(f"  {record['sheet']}  (middle frames, one row per video)", flush=True)
    if all(row["difference"] == 0 for row in record["items"]):
        print(
            f"warning: the LoRA's videos are identical to the base model's: at multiplier "
            f"{plan.inference.lora_multiplier:g} it changes nothing (an untrained LoRA, or --lora_multiplier 0)",
            flush=True,
        )


@contextmanager
def _guard(ctx: RunContext):
    """A failed or stopped comparison: the summary says how, the console what happened and what to do."""
    try:
        yield
    except (KeyboardInterrupt, Interrupted) as e:
        err = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        ctx.summary.finish("interrupted")
        print(
            f"\nStopped ({signal.Signals(err.signum).name}); every process it started has exited. The training run "
            "is unchanged; run the same command again for a new comparison.",
            file=sys.stderr,
            flush=True,
        )
        raise err from None
    except StageFailed as e:
        ctx.summary.finish("failed")
        _report_failure(e)
        raise
    except UserError:
        ctx.summary.finish("failed")
        raise
    except Exception as e:  # a bug: one line for the user, the traceback in the folder's logs
        from ..core.pipeline import internal_error

        ctx.summary.finish("failed")
        raise internal_error(e, ctx.paths.logs / "internal_error.log") from None


def _report_failure(e: StageFailed) -> None:
    lines = [f"\n{e.stage} FAILED: {e}"]
    if e.command:
        lines.append(f"command: {shlex.join(e.command)}")
    if e.log_path:
        lines.append(f"log: {e.log_path}")
        tail = log_tail(Path(e.log_path))
        if tail:
            lines.append(f"last {len(tail)} lines of the log:")
            lines += [f"  | {ln}" for ln in tail]
    print("\n".join(lines), file=sys.stderr, flush=True)
