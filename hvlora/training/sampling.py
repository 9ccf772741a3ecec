"""Samples during training: when, and from which prompts (musubi's prompt-file format, contract §7).

The family's defaults rather than musubi's generic ones (its sampler: 256x256, 1 frame, flow shift 14.5; see
SampleDefaults): its flow shift (`--fs`), steps, guidance, a size that is the most common training bucket scaled to
the family's area (multiples of its bucket step), 1 frame for image-only data, else its video length (as latent
frames for a family whose sampler counts them: Kandinsky 5's reads --f 5 as 17 frames). For a task
that needs an init image (i2v) every prompt gets `--i`, the first frame of a training video, which musubi requires.
Without `--sample_prompts` the prompts are the trigger word and two of the dataset's captions (the log says which).

Sampling costs VRAM and time: with a memory preset at or below the family's threshold it is off unless asked for
(any sample flag).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from ..core.config import Settings
from ..core.context import RunContext
from . import prompts


def asked(s: Settings) -> bool:
    """Whether the user asked for samples with any sample setting."""
    return bool(s.sample_prompts or s.sample_every_n_steps or s.sample_at_first or s.sample_every_n_epochs)


def auto_on(s: Settings, plan) -> bool:
    """Samples by default: only on a GPU with a preset above the family's threshold (a big GPU) and no sample setting
    given (on the CPU a sample of 20 steps takes about half an hour)."""
    preset = plan.memory.preset
    small = s.family.samples.auto_above_preset
    return s.device == "cuda" and s.sample_every_n_epochs is None and preset is not None and preset > small


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
        if plan.memory.preset is not None and plan.memory.preset <= s.family.samples.auto_above_preset:
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


def size(buckets: dict[tuple[int, int, int], int], area: int, step: int) -> tuple[int, int]:
    """The most common training bucket's aspect at about `area` pixels (a family's SampleDefaults.area; never
    larger), in multiples of `step` (its bucket step)."""
    counts = Counter({(w, h): 0 for w, h, _ in buckets})
    for (w, h, _), n in buckets.items():
        counts[(w, h)] += n
    w, h = counts.most_common(1)[0][0]
    scale = min(1.0, math.sqrt(area / (w * h)))
    return max(step, int(w * scale) // step * step), max(step, int(h * scale) // step * step)


def default_prompts(ctx: RunContext) -> list[str]:
    """The trigger word and the first two distinct captions of the planned files (by name)."""
    planned = sorted(ctx.data.planned, key=lambda r: r.name)
    return prompts_from(ctx.settings.trigger_word, [f.caption for f in planned])


def prompts_from(trigger_word: str, captions: list[str | None]) -> list[str]:
    """The trigger word and the first two distinct captions (in the given order; empty ones and the bare trigger
    word skipped), or ["a video"] when there is nothing. --generate uses the same rule on a finished run."""
    trigger = trigger_word.strip()
    chosen: list[str] = []
    for caption in captions:
        if caption and caption not in chosen and caption != trigger:
            chosen.append(caption)
        if len(chosen) == 2:
            break
    return ([trigger] if trigger else []) + chosen or ["a video"]


def sample_prompts(ctx: RunContext) -> list[dict]:
    """The prompts made from the data, as musubi's prompt dicts (keys of sampling_prompts.line_to_prompt_dict)."""
    s = ctx.settings
    d = s.family.samples
    w, h = size(ctx.data.buckets(), d.area, s.family.frames.reso_step)
    has_video = any(f.kind == "video" for f in ctx.data.planned)
    frames = min(d.video_frames, max(s.target_frames)) if has_video else 1
    if d.latent_frames:  # the family's sampler counts latent frames: 4n+1 video frames are n+1 latents
        frames = (frames - 1) // s.family.frames.frame_step + 1
    image = _first_frame(ctx) if s.task in d.image_tasks else None
    out = []
    for i, prompt in enumerate(default_prompts(ctx)):
        p = {"prompt": prompt, "width": w, "height": h, "frame_count": frames, "sample_steps": d.steps}
        if d.flow_shift is not None:  # a family without it samples with its scheduler's own shift
            p["discrete_flow_shift"] = d.flow_shift
        p.update({d.guidance_key: d.guidance, "seed": s.seed + i})
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
    planned = sorted(ctx.data.planned, key=lambda r: r.name)
    video = next((f for f in planned if f.kind == "video"), None)
    if video is None:
        return planned[0].path
    return save_first_frame(video.path, ctx.paths.samples / "inputs" / (Path(video.flat).stem + "_first.png"))


def save_first_frame(media: Path, out: Path) -> Path:
    """The first frame of a video (or an image) decoded with PyAV, saved as the PNG `out`; returns `out`."""
    import av

    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(media)) as container:
        frame = next(container.decode(video=0))
        frame.to_image().save(out)
    return out
