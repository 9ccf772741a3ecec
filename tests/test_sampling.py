"""Samples during training: when they are made (presets, flags, device), the flags that turn them off, and the
prompt file made from the data, read back as musubi reads it (prompts.read; captions of every shape: test_prompts)."""

from __future__ import annotations

from pathlib import Path

from mediafactory import dataset_zip

from hvlora.core import pipeline
from hvlora.core.fsutil import GIB
from hvlora.families.hunyuan_video_1_5 import FAMILY
from hvlora.stages import extract
from hvlora.training import plan, prompts, sampling
from hvlora.training.gpu import GpuInfo


def planned(make_settings, make_ctx, tmp_path, *flags, videos=True, gpu_gib=80.0):
    dataset_zip(
        tmp_path / "src",
        tmp_path / "data" / "d.zip",
        images={"a.png": "a cat on a sofa", "b.png": "a dog"},
        videos={"v.mp4": ("a walk", 9)} if videos else None,
    )
    s = make_settings(
        "--target_frames", "1,5", "--trigger_word", "ohwx", "--input_zip", str(tmp_path / "data" / "d.zip"), *flags
    )
    ctx = make_ctx(s)
    pipeline.check_data(ctx)
    extract.run(ctx)
    gpus = [GpuInfo(0, "GPU", int(gpu_gib * GIB), "GPU-0")] if gpu_gib else []
    ctx.plan = plan.make(s, ctx.data.buckets(), gpus, host_ram=64 * GIB)
    return ctx


def test_samples_are_on_by_default_only_on_a_big_gpu(make_settings, make_ctx, tmp_path):
    big = planned(make_settings, make_ctx, tmp_path / "a", gpu_gib=79.6)
    assert sampling.enabled(big.settings, big.plan) and sampling.every_n_epochs(big.settings, big.plan) == 1
    small = planned(make_settings, make_ctx, tmp_path / "b", gpu_gib=23.99)
    assert not sampling.enabled(small.settings, small.plan)
    assert "off (they need VRAM and time; with --vram 24 ask for them" in sampling.describe(small.settings, small.plan)
    asked = planned(make_settings, make_ctx, tmp_path / "c", "--sample_every_n_steps", "100", gpu_gib=23.99)
    assert sampling.enabled(asked.settings, asked.plan) and sampling.every_n_epochs(asked.settings, asked.plan) == 0
    cpu = planned(make_settings, make_ctx, tmp_path / "d", "--device", "cpu", "--vram", "80", gpu_gib=None)
    assert not sampling.enabled(cpu.settings, cpu.plan)  # a CPU smoke run never samples unless asked
    off = planned(make_settings, make_ctx, tmp_path / "e", "--sample_every_n_epochs", "0", gpu_gib=79.6)
    assert not sampling.enabled(off.settings, off.plan)


def test_prompts_from_the_data_with_hv15_defaults(make_settings, make_ctx, tmp_path):
    ctx = planned(make_settings, make_ctx, tmp_path)
    read = prompts.read(sampling.prompt_file(ctx))  # as musubi's load_prompts reads the file (test_prompts.py)
    assert [p["prompt"] for p in read] == ["ohwx", "ohwx, a cat on a sofa", "ohwx, a dog"]
    p = read[0]
    assert (p["sample_steps"], p["discrete_flow_shift"], p["cfg_scale"]) == (20, 7.0, 6.0)
    assert p["frame_count"] == 5 and p["width"] % 16 == 0 and p["height"] % 16 == 0  # videos: 25 or the longest
    assert (p["width"], p["height"]) == sampling.size(ctx.data.buckets(), FAMILY.samples.area, FAMILY.frames.reso_step)
    assert [q["seed"] for q in read] == [42, 43, 44]
    assert sampling.size({(960, 544, 1): 3, (544, 960, 1): 1}, FAMILY.samples.area, FAMILY.frames.reso_step) == (
        832,
        480,
    )  # the common bucket, about 480p


def test_image_only_data_samples_one_frame_and_i2v_gets_the_first_frame(make_settings, make_ctx, tmp_path):
    ctx = planned(make_settings, make_ctx, tmp_path / "a", videos=False)
    assert {p["frame_count"] for p in prompts.read(sampling.prompt_file(ctx))} == {1}
    ctx = planned(make_settings, make_ctx, tmp_path / "b", "--task", "i2v")
    images = {p["image_path"] for p in prompts.read(sampling.prompt_file(ctx))}
    assert len(images) == 1 and Path(images.pop()).is_file()


def test_the_flags_that_turn_samples_off_turn_them_off(make_settings, make_ctx, tmp_path):
    for i, flags in enumerate(((), ("--sample_every_n_steps", "5"), ("--sample_at_first", "--sample_prompts", "p"))):
        if "p" in flags:
            (tmp_path / "p").write_text("a cat\n")
        ctx = planned(make_settings, make_ctx, tmp_path / str(i), *flags, gpu_gib=79.6)
        assert sampling.enabled(ctx.settings, ctx.plan)
        off = [tok for flag in sampling.off_flags(ctx.settings) for tok in flag.split()]
        s2 = make_settings(*_flags(ctx), *flags, *off)
        assert not sampling.enabled(s2, ctx.plan), (flags, off)


def _flags(ctx) -> list[str]:
    return ["--target_frames", "1,5", "--trigger_word", "ohwx", "--input_zip", str(ctx.settings.input_zip)]
