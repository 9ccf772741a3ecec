"""The train stage's bookkeeping, called directly on real files: the final LoRA when musubi did not write it
(`_final_lora`) and what a killed segment left behind (`_adopt_leftovers`). States are written with torch.save as
accelerate writes them (model.safetensors, optimizer.bin, scheduler.bin with the LR scheduler's step count,
random_states_0.pkl); LoRA files carry musubi's key names and metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mediafactory import dataset_zip
from safetensors.torch import load_file, save_file

from hvlora.core import pipeline
from hvlora.core.errors import StageFailed, UserError
from hvlora.stages import train
from hvlora.training import lorameta, plan, resume

NAME = "lora"
MODULES = ("lora_unet_double_blocks_0_img_attn_q", "lora_unet_double_blocks_0_txt_mlp_fc1")


def lora_tensors(seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in MODULES:
        out[f"{m}.lora_down.weight"] = torch.randn(4, 32, generator=g).to(dtype)
        out[f"{m}.lora_up.weight"] = torch.randn(64, 4, generator=g).to(dtype)
        out[f"{m}.alpha"] = torch.tensor(4.0).to(dtype)
    return out


def write_state(folder: Path, true_step: int, seed: int, *, prefix: str = "") -> Path:
    """An accelerate state of the LoRA network at `true_step` (one process; epoch end: data loader step 0)."""
    folder.mkdir(parents=True)
    save_file({prefix + k: v for k, v in lora_tensors(seed).items()}, str(folder / "model.safetensors"))
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.bin")
    torch.save({"last_epoch": true_step, "_step_count": true_step + 1}, folder / "scheduler.bin")
    torch.save({"step": 0}, folder / "random_states_0.pkl")
    return folder


def write_lora(path: Path, steps: int, seed: int, **extra: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    md = {"ss_steps": str(steps), "ss_network_module": "networks.lora_hv_1_5", "ss_network_dim": "4"}
    md.update(ss_network_alpha="4.0", ss_seed="42", ss_base_model_version="hunyuan_video_1_5", **extra)
    save_file(lora_tensors(seed, torch.bfloat16), str(path), md)
    return path


@pytest.fixture
def ctx(tmp_path, make_settings, make_ctx):
    """A run context with 3 images (3 steps an epoch), 6 steps in all, CPU, bf16 saves."""
    z = dataset_zip(tmp_path / "src", tmp_path / "data" / "d.zip", images={f"{c}.png": c for c in "abc"})
    s = make_settings("--input_zip", str(z), "--device", "cpu", "--rank", "4", "--max_train_steps", "6")
    c = make_ctx(s)
    pipeline.check_data(c)
    c.plan = plan.make(s, c.data.buckets(), [], host_ram=64 * 2**30)
    assert (c.plan.steps_per_epoch, c.plan.total_steps) == (3, 6)
    return c


def newest(ctx):
    return resume.newest_state(ctx.paths.checkpoints, NAME, 1, ctx.plan.steps_per_epoch)


def test_a_missing_final_lora_is_built_from_the_final_state(ctx, capsys):
    ckpt = ctx.paths.checkpoints
    write_state(ckpt / "lora-000002-state", 6, seed=6)
    write_lora(ckpt / "lora-step00000004.safetensors", 4, seed=4, ss_session_id="77")
    lora = train._final_lora(ctx, newest(ctx))
    assert lora == ckpt / "lora.safetensors"
    built, weights = load_file(lora), load_file(ckpt / "lora-000002-state" / "model.safetensors")
    assert set(built) == set(weights) and all(torch.equal(built[k], weights[k].to(torch.bfloat16)) for k in built)
    md = lorameta.read_metadata(lora)
    assert (md["ss_steps"], md["ss_epoch"], md["hvlora.steps"], md["ss_session_id"]) == ("6", "2", "6", "77")
    assert md["ss_network_module"] == "networks.lora_hv_1_5" and md["hvlora.task"] == "t2v"
    assert md["sshs_model_hash"] == lorameta.musubi_hashes(built, md)[0]
    assert "built from the weights of the state of step 6 (lora-000002-state/model.safetensors) in bf16" in (
        capsys.readouterr().out
    )


def test_without_a_checkpoint_the_built_file_gets_musubis_minimum_metadata(ctx):
    # several GPUs: accelerate keeps the DDP wrapper's `module.` prefix in a state
    write_state(ctx.paths.checkpoints / "lora-step00000006-state", 6, seed=6, prefix="module.")
    lora = train._final_lora(ctx, newest(ctx))
    assert set(load_file(lora)) == set(lora_tensors(0))
    md = lorameta.read_metadata(lora)
    assert {k: md[k] for k in ("ss_base_model_version", "ss_network_module", "ss_network_dim", "ss_network_alpha")} == {
        "ss_base_model_version": "hunyuan_video_1_5",
        "ss_network_module": "networks.lora_hv_1_5",
        "ss_network_dim": "4",
        "ss_network_alpha": "4.0",
    }


def test_a_checkpoint_of_the_last_step_is_used_as_the_final_lora(ctx, capsys):
    ckpt = ctx.paths.checkpoints
    write_state(ckpt / "lora-000002-state", 6, seed=6)
    epoch_end = write_lora(ckpt / "lora-000002.safetensors", 6, seed=9)  # musubi named it by its epoch
    lora = train._final_lora(ctx, newest(ctx))
    assert all(torch.equal(a, b) for a, b in zip(load_file(lora).values(), load_file(epoch_end).values(), strict=True))
    assert lorameta.read_metadata(lora)["ss_steps"] == "6"
    assert "copied from lora-000002.safetensors, the checkpoint of step 6" in capsys.readouterr().out


def test_a_final_lora_of_another_step_count_is_kept_aside_not_used(ctx):
    ckpt = ctx.paths.checkpoints
    write_state(ckpt / "lora-000002-state", 6, seed=6)
    write_lora(ckpt / "lora.safetensors", 8, seed=8)
    lora = train._final_lora(ctx, newest(ctx))
    assert lorameta.read_metadata(lora)["ss_steps"] == "6"
    assert lorameta.read_metadata(ckpt / "lora~1.safetensors")["ss_steps"] == "8"


def test_a_final_lora_that_holds_the_steps_is_used_as_it_is(ctx):
    done = write_lora(ctx.paths.checkpoints / "lora.safetensors", 6, seed=1)
    before = done.read_bytes()
    assert train._final_lora(ctx, None) == done and done.read_bytes() == before


def test_a_state_past_the_steps_asked_for_is_refused_and_no_state_fails_the_stage(ctx):
    write_state(ctx.paths.checkpoints / "lora-step00000008-state", 8, seed=8)
    with pytest.raises(UserError, match="newest state is at step 8, past the 6 steps asked for"):
        train._final_lora(ctx, newest(ctx))
    with pytest.raises(StageFailed, match="training ended without writing"):
        train._final_lora(ctx, None)


def test_a_killed_segments_final_lora_is_stamped_with_its_own_steps_and_refused_for_fewer(ctx):
    """The killed segment trained 10 steps (its final LoRA says ss_steps 10, musubi's local count); this command
    asks for 6. Its file is what it is: stamped 10, and not taken as the 6-step LoRA."""
    seglog = resume.SegmentLog.in_run(ctx.paths.root)
    seg = seglog.begin(
        from_step=0, from_epoch=0, resumed_from=None, num_processes=1, steps_per_epoch=3, total_steps=10,
        output_name=NAME,
    )  # fmt: skip
    write_state(seg.dir / "lora-state", 10, seed=10)
    torch.save({"step": 1}, seg.dir / "lora-state" / "random_states_0.pkl")  # 10 is mid-epoch 4 (3 steps an epoch)
    write_lora(seg.dir / "lora-step00000006.safetensors", 6, seed=6)
    write_lora(seg.dir / "lora.safetensors", 10, seed=10)
    train._adopt_leftovers(ctx, seglog)
    ckpt = ctx.paths.checkpoints
    final = lorameta.read_metadata(ckpt / "lora.safetensors")
    assert (final["ss_steps"], final["hvlora.steps"], final["ss_max_train_steps"]) == ("10", "10", "10")
    assert lorameta.read_metadata(ckpt / "lora-step00000006.safetensors")["ss_steps"] == "6"
    assert seglog.all()[0].status == "killed"
    assert (ckpt / "lora-step00000010-state").is_dir()
    with pytest.raises(UserError, match="past the 6 steps asked for"):
        train._final_lora(ctx, newest(ctx))


def test_leftovers_of_a_segment_that_had_a_nan_loss_are_set_aside(ctx):
    seglog = resume.SegmentLog.in_run(ctx.paths.root)
    seg = seglog.begin(
        from_step=0, from_epoch=0, resumed_from=None, num_processes=1, steps_per_epoch=3, total_steps=6,
        output_name=NAME,
    )  # fmt: skip
    seglog.mark_nan(seg.index, 4)
    seglog.mark_nan(seg.index, 5)  # the earliest is kept
    write_state(seg.dir / "lora-step00000002-state", 2, seed=2)
    torch.save({"step": 2}, seg.dir / "lora-step00000002-state" / "random_states_0.pkl")
    write_state(seg.dir / "lora-step00000004-state", 4, seed=4)
    torch.save({"step": 1}, seg.dir / "lora-step00000004-state" / "random_states_0.pkl")
    write_lora(seg.dir / "lora-step00000004.safetensors", 4, seed=4)
    train._adopt_leftovers(ctx, seglog)
    names = sorted(p.name for p in ctx.paths.checkpoints.iterdir())
    assert names == ["lora-step00000002-state", "lora-step00000004-state~nan", "lora-step00000004~nan.safetensors"]
    assert newest(ctx).true_step == 2 and seglog.all()[0].nan_step == 4
