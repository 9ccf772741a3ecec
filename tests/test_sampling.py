"""Samples during training: when they are made (presets, flags, device), and the prompt file made from the data,
read back with musubi's prompt-line parser (the stand-in's mirror of sampling_prompts.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from mediafactory import dataset_zip

from hvlora.core import pipeline
from hvlora.families.hunyuan_video_1_5 import FAMILY
from hvlora.stages import extract
from hvlora.training import plan, sampling
from hvlora.training.gpu import GpuInfo

sys.path.insert(0, str(Path(__file__).resolve().parent / "standin"))
from musubi_tuner import _sampling  # noqa: E402

GIB = 1024**3


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
    prompts = [
        _sampling.line_to_prompt_dict(line)
        for line in sampling.prompt_file(ctx).read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert [p["prompt"] for p in prompts] == ["ohwx", "ohwx, a cat on a sofa", "ohwx, a dog"]
    p = prompts[0]
    assert (p["sample_steps"], p["discrete_flow_shift"], p["cfg_scale"]) == (20, 7.0, 6.0)
    assert p["frame_count"] == 5 and p["width"] % 16 == 0 and p["height"] % 16 == 0  # videos: 25 or the longest
    assert (p["width"], p["height"]) == sampling.size(ctx.data.buckets(), FAMILY.samples.area, FAMILY.frames.reso_step)
    assert sampling.size({(960, 544, 1): 3, (544, 960, 1): 1}, FAMILY.samples.area, FAMILY.frames.reso_step) == (
        832,
        480,
    )  # the common bucket, about 480p


def test_image_only_data_samples_one_frame_and_i2v_gets_the_first_frame(make_settings, make_ctx, tmp_path):
    ctx = planned(make_settings, make_ctx, tmp_path / "a", videos=False)
    line = sampling.prompt_file(ctx).read_text().splitlines()[1]
    assert _sampling.line_to_prompt_dict(line)["frame_count"] == 1
    ctx = planned(make_settings, make_ctx, tmp_path / "b", "--task", "i2v")
    lines = [x for x in sampling.prompt_file(ctx).read_text().splitlines() if not x.startswith("#")]
    images = {_sampling.line_to_prompt_dict(x)["image_path"] for x in lines}
    assert len(images) == 1 and Path(images.pop()).is_file()
