"""Samples during training: when, and from which prompts (musubi's prompt-file format, contract §7).

Defaults that suit HV1.5 rather than musubi's generic ones (its sampler: 256x256, 1 frame, flow shift 14.5): flow
shift 7.0 (`--fs`, HV1.5's inference default), 20 steps, guidance 6.0, a size that is the most common training
bucket scaled to about 480p (multiples of 16), 1 frame for image-only data, else 25. With `--task i2v` every prompt
gets `--i`, the first frame of a training video, which musubi requires. Without `--sample_prompts` the prompts are
the trigger word and two of the dataset's captions (the log says which).

Sampling costs VRAM and time: with a memory preset of 24 GB or less it is off unless asked for (any sample flag).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from ..core.config import Settings
from ..core.context import RunContext
from . import prompts

AREA_480P = 848 * 480
STEPS, FLOW_SHIFT, GUIDANCE = 20, 7.0, 6.0
VIDEO_FRAMES = 25
SMALL_PRESET = 24


def asked(s: Settings) -> bool:
    """Whether the user asked for samples with any sample setting."""
    return bool(s.sample_prompts or s.sample_every_n_steps or s.sample_at_first or s.sample_every_n_epochs)


def auto_on(s: Settings, plan) -> bool:
    """Samples by default: only on a GPU with a preset above 24 GB (a big GPU) and no sample setting given (on
    the CPU a sample of 20 steps takes about half an hour)."""
    preset = plan.memory.preset
    return s.device == "cuda" and s.sample_every_n_epochs is None and preset is not None and preset > SMALL_PRESET


def enabled(s: Settings, plan) -> bool:
    if s.sample_every_n_epochs == 0 and not (s.sample_every_n_steps or s.sample_at_first):
        return False
    return asked(s) or auto_on(s, plan)


def off_flags(s: Settings) -> tuple[str, ...]:
    """The flags that turn samples off for these settings (`enabled` is False with them): the epoch trigger, which
    a preset above 24 GB turns on by default, and the step trigger and the baseline when they are set."""
    flags = ["--sample_every_n_epochs 0"]
    if s.sample_every_n_steps:
        flags.append("--sample_every_n_steps 0")
    if s.sample_at_first:
        flags.append("--no-sample_at_first")
    return tuple(flags)


def every_n_epochs(s: Settings, plan) -> int:
    if s.sample_every_n_epochs is not None:
        return s.sample_every_n_epochs
    if s.sample_every_n_steps and not auto_on(s, plan):
        return 0
    return s.save_every_n_epochs or 1


def describe(s: Settings, plan) -> str:
    """One line for the plan: when samples are made, or why not."""
    if not enabled(s, plan):
        if plan.memory.preset is not None and plan.memory.preset <= SMALL_PRESET:
            return (
                f"samples: off (they need VRAM and time; with --vram {plan.memory.preset} ask for them with "
                "--sample_every_n_epochs N or --sample_every_n_steps N)"
            )
        return "samples: off (--sample_every_n_epochs N or --sample_every_n_steps N makes them)"
    when = []
    if every_n_epochs(s, plan):
        when.append(f"every {every_n_epochs(s, plan)} epoch(s)")
    if s.sample_every_n_steps:
        when.append(f"every {s.sample_every_n_steps} steps")
    if s.sample_at_first:
        when.append("before training")
    source = str(s.sample_prompts) if s.sample_prompts else "the trigger word and two captions of the data"
    return f"samples: {', '.join(when) or 'at the end of training'}, prompts from {source}, into RUN/samples/"


def size(buckets: dict[tuple[int, int, int], int]) -> tuple[int, int]:
    """The most common training bucket's aspect at about 480p, in multiples of 16."""
    counts = Counter({(w, h): 0 for w, h, _ in buckets})
    for (w, h, _), n in buckets.items():
        counts[(w, h)] += n
    w, h = counts.most_common(1)[0][0]
    scale = min(1.0, math.sqrt(AREA_480P / (w * h)))
    return max(16, int(w * scale) // 16 * 16), max(16, int(h * scale) // 16 * 16)


def default_prompts(ctx: RunContext) -> list[str]:
    """The trigger word and the first two distinct captions of the planned files (by name)."""
    trigger = ctx.settings.trigger_word.strip()
    captions = []
    for f in sorted(ctx.data.planned, key=lambda r: r.name):
        if f.caption and f.caption not in captions and f.caption != trigger:
            captions.append(f.caption)
        if len(captions) == 2:
            break
    return ([trigger] if trigger else []) + captions or ["a video"]


def sample_prompts(ctx: RunContext) -> list[dict]:
    """The prompts made from the data, as musubi's prompt dicts (keys of sampling_prompts.line_to_prompt_dict)."""
    s = ctx.settings
    buckets = ctx.data.buckets()
    w, h = size(buckets)
    has_video = any(f.kind == "video" for f in ctx.data.planned)
    frames = min(VIDEO_FRAMES, max(s.target_frames)) if has_video else 1
    image = _first_frame(ctx) if s.task == "i2v" else None
    out = []
    for i, prompt in enumerate(default_prompts(ctx)):
        p = {"prompt": prompt, "width": w, "height": h, "frame_count": frames, "sample_steps": STEPS}
        p.update(discrete_flow_shift=FLOW_SHIFT, cfg_scale=GUIDANCE, seed=s.seed + i)
        if image is not None:
            p["image_path"] = str(image)
        out.append(p)
    return out


def prompt_file(ctx: RunContext) -> Path:
    """The prompt file musubi gets: the user's, or RUN/sample_prompts.json made from the data (written here; JSON,
    so that a caption with line breaks or " --" is exactly one prompt: see prompts.py)."""
    if ctx.settings.sample_prompts is not None:
        return ctx.settings.sample_prompts
    return prompts.write(ctx.paths.root / "sample_prompts.json", sample_prompts(ctx))


def _first_frame(ctx: RunContext) -> Path:
    """The first frame of the first training video as a PNG (musubi's i2v sampling needs an image per prompt); the
    first image itself for data without videos."""
    import av

    planned = sorted(ctx.data.planned, key=lambda r: r.name)
    video = next((f for f in planned if f.kind == "video"), None)
    if video is None:
        return planned[0].path
    out = ctx.paths.samples / "inputs" / (Path(video.flat).stem + "_first.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(video.path)) as container:
        frame = next(container.decode(video=0))
        frame.to_image().save(out)
    return out
