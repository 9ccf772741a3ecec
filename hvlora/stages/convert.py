"""Stage 7: convert the LoRA with the family's converter (ComfyUI for HunyuanVideo 1.5), verify every module is
there, and publish both files; a family without a converter has its musubi file checked key by key (its LoraCheck,
e.g. Kandinsky 5's, whose file ComfyUI loads as it is) and publishes that file only.

A missing module fails the run (the system we replace only warned, and users published LoRAs that load with "lora key
not loaded"); a converted file that is not checked is never published.
"""

from __future__ import annotations

from pathlib import Path

from ..core.context import RunContext
from ..core.errors import StageFailed
from ..core.runner import run_logged
from ..families import LoraCheckError
from ..training import lorainfo, lorameta, outputs
from ..training.musubi import Command, trained_lora

NAME = "convert"
TITLE = "convert to ComfyUI"


def title(ctx: RunContext) -> str:
    """The stage's name for this run's family: what it converts to, or that it checks the musubi file."""
    converter = ctx.settings.family.converter
    return f"convert to {converter.label}" if converter is not None else "check the LoRA"


def converted_path(ctx: RunContext) -> Path:
    """RUN/checkpoints/<output_name><the converter's suffix>.safetensors, e.g. lora_comfyui.safetensors."""
    suffix = ctx.settings.family.converter.suffix
    return ctx.paths.checkpoints / f"{ctx.settings.output_name}{suffix}.safetensors"


def command(ctx: RunContext) -> Command | None:
    """The family's converter on the final LoRA; None when the family has none."""
    converter = ctx.settings.family.converter
    if converter is None:
        return None
    return converter.command(trained_lora(ctx.paths.checkpoints, ctx.settings.output_name), converted_path(ctx))


def run(ctx: RunContext) -> dict:
    """Convert, check both files' keys, then copy them atomically to OUTPUT_DIR (keeping any earlier LoRA)."""
    s, log = ctx.settings, ctx.log(NAME)
    src = trained_lora(ctx.paths.checkpoints, s.output_name)
    converter = s.family.converter
    if converter is None:
        report = _check_alone(ctx, src, log)
        log(f"{s.family.title} needs no conversion: only the musubi-format LoRA is published")
        ctx.summary.update("outputs", outputs.publish({src.name: src}, s.output_dir, log))
        return report if report else {"skipped": True}
    cmd, dst = command(ctx), converted_path(ctx)
    run_logged(cmd.executable(), stage=NAME, log_path=ctx.paths.log(NAME), env=ctx.env, on_start=ctx.on_child)
    try:
        report = converter.verify(src, dst)
    except LoraCheckError as e:
        raise StageFailed(NAME, str(e), cmd.executable(), ctx.paths.log(NAME)) from None
    log(
        f"{converter.label} check: {report['musubi_modules']} musubi modules -> {report['comfyui_modules']} "
        f"{converter.label} modules ({report['comfyui_keys']} keys), rank {report['rank']}, none missing"
    )
    added = _carry_metadata(src, dst)
    if added:
        log(f"the converter did not keep {', '.join(added)}: added to {dst.name}")
    ctx.lora_comfyui = dst
    published = outputs.publish({src.name: src, dst.name: dst}, s.output_dir, log)
    ctx.summary.update("outputs", published)
    return {"command": cmd.executable(), "metadata_added": added, **report}


def _check_alone(ctx: RunContext, src: Path, log) -> dict:
    """The family's key check of the musubi LoRA (none: {}); a missing or misshapen module fails the stage."""
    check = ctx.settings.family.lora_check
    if check is None:
        return {}
    try:
        report = check.verify(src, ctx.settings.dit_variant)
    except LoraCheckError as e:
        raise StageFailed(NAME, str(e), None, ctx.paths.log(NAME)) from None
    log(
        f"key check: {report['musubi_modules']} modules ({report['musubi_keys']} keys), rank {report['rank']}, "
        "none missing" + (f"; {check.loads_in}" if check.loads_in else "")
    )
    return {**report, **({"loads_in": check.loads_in} if check.loads_in else {})}


def _carry_metadata(src: Path, dst: Path) -> list[str]:
    """musubi's converter copies the metadata (contract §5) and recomputes the sshs hashes; whatever of ours it
    did not keep (the trigger word, true step counts, ...) is written into the converted file too."""
    ours = {
        k: v
        for k, v in lorameta.read_metadata(src).items()
        if k.startswith(("hvlora.", "modelspec.trigger_phrase", "ss_steps", "ss_epoch", "ss_max_train_steps"))
    }
    missing = lorainfo.missing_keys(dst, ours)
    if missing:
        lorameta.rewrite_metadata(dst, {k: ours[k] for k in missing})
    return missing
