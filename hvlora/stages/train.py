"""Stage 6: train the LoRA with `accelerate launch -m musubi_tuner.hv_1_5_train_network`.

Checkpoints and saved state go to RUN/checkpoints (musubi --output_dir), TensorBoard logs to RUN/tensorboard.
"""

from __future__ import annotations

from .. import musubi
from ..context import RunContext
from ..errors import StageFailed
from ..runner import run_logged

NAME = "train"
TITLE = "train LoRA"


def command(ctx: RunContext) -> musubi.Command:
    return musubi.train(ctx.settings, ctx.dataset_toml, ctx.weights, ctx.paths.checkpoints, ctx.paths.tensorboard)


def run(ctx: RunContext) -> dict:
    """Train; sets ctx.lora to the final musubi-format LoRA. Fails if musubi exits 0 without writing it."""
    cmd = command(ctx)
    run_logged(cmd.executable(), stage=NAME, log_path=ctx.paths.log(NAME), env=ctx.env)
    lora = musubi.trained_lora(ctx.paths.checkpoints, ctx.settings.output_name)
    if not lora.is_file():
        raise StageFailed(NAME, f"training ended without writing {lora}", cmd.executable(), ctx.paths.log(NAME))
    ctx.lora = lora
    return {"exit_code": 0, "command": cmd.executable(), "lora": str(lora)}
