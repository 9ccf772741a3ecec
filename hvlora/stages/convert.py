"""Stage 7: convert the LoRA to ComfyUI's format, verify every module is there, and publish both files.

musubi's converter fuses attn_q/k/v into attn_qkv and renames mlp/mod layers (contract §5). A missing module fails
the run (the system we replace only warned, and users published LoRAs that load with "lora key not loaded").
"""

from __future__ import annotations

from pathlib import Path

from ..core.context import RunContext
from ..core.errors import StageFailed
from ..core.runner import run_logged
from ..families.hunyuan_video_1_5 import comfyui, musubi
from ..training import lorainfo, lorameta, outputs

NAME = "convert"
TITLE = "convert to ComfyUI"


def comfy_path(ctx: RunContext) -> Path:
    """RUN/checkpoints/<output_name>_comfyui.safetensors."""
    return ctx.paths.checkpoints / f"{ctx.settings.output_name}_comfyui.safetensors"


def command(ctx: RunContext) -> musubi.Command:
    src = musubi.trained_lora(ctx.paths.checkpoints, ctx.settings.output_name)
    return musubi.convert(src, comfy_path(ctx))


def run(ctx: RunContext) -> dict:
    """Convert, check both files' keys, then copy them atomically to OUTPUT_DIR (keeping any earlier LoRA)."""
    cmd = command(ctx)
    log = ctx.log(NAME)
    run_logged(cmd.executable(), stage=NAME, log_path=ctx.paths.log(NAME), env=ctx.env, on_start=ctx.on_child)
    src, dst = Path(cmd.argv[0]), Path(cmd.argv[1])
    try:
        report = comfyui.verify(src, dst)
    except comfyui.LoraCheckError as e:
        raise StageFailed(NAME, str(e), cmd.executable(), ctx.paths.log(NAME)) from None
    log(
        f"ComfyUI check: {report['musubi_modules']} musubi modules -> {report['comfyui_modules']} ComfyUI modules "
        f"({report['comfyui_keys']} keys), rank {report['rank']}, none missing"
    )
    added = _carry_metadata(src, dst)
    if added:
        log(f"the converter did not keep {', '.join(added)}: added to {dst.name}")
    ctx.lora_comfyui = dst
    name = ctx.settings.output_name
    published = outputs.publish(
        {f"{name}.safetensors": src, f"{name}_comfyui.safetensors": dst}, ctx.settings.output_dir, log
    )
    ctx.summary.update("outputs", published)
    return {"command": cmd.executable(), "metadata_added": added, **report}


def _carry_metadata(src: Path, dst: Path) -> list[str]:
    """musubi's converter copies the metadata (contract §5) and recomputes the sshs hashes; whatever of ours it
    did not keep (the trigger word, true step counts, ...) is written into the ComfyUI file too."""
    ours = {
        k: v
        for k, v in lorameta.read_metadata(src).items()
        if k.startswith(("hvlora.", "modelspec.trigger_phrase", "ss_steps", "ss_epoch", "ss_max_train_steps"))
    }
    missing = lorainfo.missing_keys(dst, ours)
    if missing:
        lorameta.rewrite_metadata(dst, {k: ours[k] for k in missing})
    return missing
