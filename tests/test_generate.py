"""--generate's parts: the generator argv (parsed with musubi v0.3.4's own hv_1_5_generate_video parser, captured in
tests/standin/musubi_flags.json), HV1.5's inference memory presets and estimate, the LoRA format check, the prompt
file, finding a run, and the side-by-side video and contact sheet (read back with PyAV and Pillow).
The whole command against a trained run is in test_after_training.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mediafactory import make_image, make_video
from PIL import Image
from safetensors.torch import load_file, save_file

from hvlora.compare import compose, locate, prompts
from hvlora.compare.generate import compare_folder
from hvlora.compare.job import GenerateJob, Inference
from hvlora.core.errors import ConfigError, UserError
from hvlora.families.hunyuan_video_1_5 import catalog, comfyui
from hvlora.families.hunyuan_video_1_5 import generate as gen

STANDIN = Path(__file__).resolve().parent / "standin"
sys.path.insert(0, str(STANDIN))
from musubi_tuner import _flags  # noqa: E402  (musubi's real parsers, rebuilt)

INF = Inference(96, 64, 5, 2, 6.0, 7.0, 0.8)


def files(s, task="t2v"):
    return {c: w.local_path(s.models_dir) for c, w in catalog.weights_for(task).items()}


def job(s, memory, task="t2v", image=None) -> GenerateJob:
    return GenerateJob(task, s.device, Path("/c/prompts.txt"), Path("/c/base"), INF, image, memory)


def parsed(cmd):
    return _flags.build_parser(cmd.module).parse_args(list(cmd.argv))


# --- the generator's argv -----------------------------------------------------------------------------------------


def test_base_and_lora_commands_differ_only_by_the_lora(make_settings):
    s = make_settings("--device", "cpu")
    memory = gen.plan_memory(s, None, (96, 64, 5), "t2v")
    base = gen.command(job(s, memory), files(s), None)
    lora = gen.command(job(s, memory), files(s), Path("/r/lora.safetensors"))
    assert base.module == lora.module == "musubi_tuner.hv_1_5_generate_video"
    assert list(lora.argv[: len(base.argv)]) == list(base.argv)
    assert list(lora.argv[len(base.argv) :]) == ["--lora_weight", "/r/lora.safetensors", "--lora_multiplier", "0.8"]
    a, b = parsed(base), parsed(lora)
    assert a.video_size == [64, 96]  # musubi's order: HEIGHT WIDTH
    assert (a.video_length, a.infer_steps, a.guidance_scale, a.flow_shift) == (5, 2, 6.0, 7.0)
    assert a.cpu_noise and a.from_file == "/c/prompts.txt" and a.save_path == "/c/base"
    assert a.device == "cpu" and a.vae_dtype == "bfloat16" and a.output_type == "video"
    assert a.lora_weight is None and b.lora_weight == ["/r/lora.safetensors"] and b.lora_multiplier == [0.8]
    assert a.image_path is None and a.image_encoder is None


def test_i2v_command_gives_both_runs_the_first_frame(make_settings):
    s = make_settings("--task", "i2v")
    memory = gen.plan_memory(s, None, (96, 64, 5), "i2v")
    image = Path("/c/inputs/walk_first.png")
    for lora in (None, Path("/r/lora.safetensors")):
        a = parsed(gen.command(job(s, memory, "i2v", image), files(s, "i2v"), lora))
        assert a.image_path == str(image) and a.image_encoder.endswith("sigclip_vision_patch14_384.safetensors")
        assert "720p_i2v" in a.dit


@pytest.mark.parametrize("preset", gen.PRESET_TABLE)
def test_every_inference_preset_gives_flags_musubi_accepts(make_settings, preset):
    s = make_settings("--vram", str(preset))
    memory = gen.plan_memory(s, None, (848, 480, 25), "t2v")
    a = parsed(gen.command(job(s, memory), files(s), None))
    assert (a.fp8, a.fp8_scaled) == (memory.fp8, memory.fp8)
    assert a.blocks_to_swap == memory.blocks_to_swap and a.text_encoder_cpu == memory.text_encoder_cpu
    assert (
        a.vae_sample_size == (memory.vae_sample_size or 128) and a.vae_enable_patch_conv == memory.vae_enable_patch_conv
    )


def test_unknown_generator_flags_are_rejected_like_musubi():
    with pytest.raises(SystemExit):
        _flags.build_parser(gen.GENERATE).parse_args(["--save_path", "x", "--video_size", "480x848"])
    with pytest.raises(SystemExit):
        _flags.build_parser(gen.GENERATE).parse_args(["--prompt", "a", "--sample_prompts", "p.txt"])


# --- memory: presets, block swap for what does not fit, the estimate ----------------------------------------------


def test_presets_pick_fp8_and_the_text_encoder_place(make_settings):
    def plan(*flags, shape=(848, 480, 25), gpu=None):
        return gen.plan_memory(make_settings(*flags), gpu, shape, "t2v")

    assert (plan("--vram", "80").fp8, plan("--vram", "32").fp8, plan("--vram", "24").fp8) == (False, False, True)
    assert plan("--vram", "32").text_encoder_cpu and not plan("--vram", "48").text_encoder_cpu
    assert plan(gpu=23.6).preset == 24 and plan(gpu=79.6).preset == 80  # auto: the GPU's memory
    assert plan("--device", "cpu", gpu=23.6).preset is None  # a CPU run plans no GPU
    assert plan("--vram", "24", "--no-fp8").fp8 is False  # the user's knob wins
    assert plan("--vram", "24", "--no-fp8").sources["fp8"] == "--fp8"


def test_block_swap_is_added_only_when_denoising_does_not_fit(make_settings):
    small = gen.plan_memory(make_settings("--vram", "16"), None, (848, 480, 25), "t2v")
    huge = gen.plan_memory(make_settings("--vram", "16"), None, (1280, 720, 121), "t2v")
    assert gen.plan_memory(make_settings("--vram", "80"), None, (1280, 720, 121), "t2v").blocks_to_swap == 0
    assert small.blocks_to_swap == 0
    assert huge.blocks_to_swap > 0 and huge.sources["blocks_to_swap"].startswith("auto")
    budget = 0.9 * 16 * (1 - 0.04)
    assert gen.estimate(huge, (1280, 720, 121), "t2v").moments["denoising"] <= budget
    user = gen.plan_memory(make_settings("--vram", "16", "--blocks_to_swap", "0"), None, (1280, 720, 121), "t2v")
    assert user.blocks_to_swap == 0  # set by the user: kept, and the plan warns instead
    lines = gen.describe(user, gen.estimate(user, (1280, 720, 121), "t2v"), None, "16")
    assert any(line.startswith("warning:") and "--blocks_to_swap" in line for line in lines)


def test_estimate_follows_the_knobs(make_settings):
    shape = (848, 480, 25)
    bf16 = gen.plan_memory(make_settings("--vram", "80"), None, shape, "t2v")
    cpu_te = gen.plan_memory(make_settings("--vram", "24"), None, shape, "t2v")
    several, one = gen.estimate(bf16, shape, "t2v", batch=True), gen.estimate(bf16, shape, "t2v", batch=False)
    assert 15 < one.moments["encoding the prompts"] < 20  # Qwen2.5-VL in bf16 alone is 15.4 GiB
    # several prompts: musubi keeps Qwen2.5-VL on the GPU beside the DiT (process_batch_prompts' shared_models)
    assert several.moments["denoising"] - one.moments["denoising"] > 15 and several.peak_at == "denoising"
    b = gen.estimate(cpu_te, shape, "t2v")
    assert b.moments["encoding the prompts"] < 3 and b.moments["denoising"] < one.moments["denoising"] - 6  # fp8
    longer = gen.estimate(bf16, (848, 480, 61), "t2v")
    assert (
        longer.moments["denoising"] > several.moments["denoising"]
        and longer.moments["decoding"] > several.moments["decoding"]
    )


def test_host_ram_on_the_cpu_holds_both_models_for_several_prompts(make_settings):
    m = gen.plan_memory(make_settings("--device", "cpu"), None, (64, 64, 5), "t2v")
    several, one = gen.host_ram(m, batch=True, on_gpu=False), gen.host_ram(m, batch=False, on_gpu=False)
    assert several > 33 and 17 < one < 20  # Qwen2.5-VL 16.6 GB + DiT 16.7 GB, or one after the other
    lines = gen.describe(m, gen.estimate(m, (64, 64, 5), "t2v"), None, "auto", "cpu", True, host_available_gib=22.0)
    assert lines[0].startswith("device cpu: no memory preset") and "one prompt and seed per command" in lines[-1]
    assert gen.describe(m, gen.estimate(m, (64, 64, 5), "t2v", False), None, "auto", "cpu", False, 22.0)[1:] == []


def test_default_shape_is_the_samples_choice():
    assert gen.default_shape({(960, 544, 1): 3, (960, 544, 13): 2, (544, 960, 1): 1}) == (832, 480, 13)
    assert gen.default_shape({(960, 544, 1): 4}) == (832, 480, 1)  # images only: one frame
    assert gen.default_shape({(64, 64, 5): 1, (64, 64, 1): 2}) == (64, 64, 5)  # small training: kept small
    assert gen.default_shape({}) == (848, 480, 25)


# --- the LoRA file ------------------------------------------------------------------------------------------------


def _lora(path: Path, names: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {}
    for n in names:
        sd[f"{n}.lora_down.weight"] = torch.zeros(4, 2048)
        sd[f"{n}.lora_up.weight"] = torch.zeros(2048, 4)
        sd[f"{n}.alpha"] = torch.tensor(4.0)
    save_file(sd, path)
    return path


def test_check_lora_refuses_the_comfyui_file_and_foreign_keys(tmp_path):
    musubi_names = comfyui.module_names(comfyui.MUSUBI_MODULES)
    assert gen.check_lora(_lora(tmp_path / "lora.safetensors", musubi_names[:10])) == 10
    comfy = _lora(tmp_path / "lora_comfyui.safetensors", comfyui.module_names(comfyui.COMFY_MODULES)[:5])
    with pytest.raises(UserError, match="ComfyUI-format LoRA.*NAME_comfyui"):
        gen.check_lora(comfy)
    other = _lora(tmp_path / "wan.safetensors", ["lora_unet_blocks_0_self_attn_q"])
    with pytest.raises(UserError, match="not a HunyuanVideo 1.5 LoRA.*blocks_0_self_attn_q"):
        gen.check_lora(other)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="junk.safetensors"):
        gen.check_lora(tmp_path / "junk.safetensors")


def test_generator_log_is_read_in_prompt_order(tmp_path):
    log = (
        "INFO:__main__:Decoding output 1/2\nINFO:__main__:Video saved to: /c/base/20261204-101010-001_7.mp4\n"
        "INFO:__main__:Video saved to: /c/base/20261204-101010-009_7.mp4\n"
        "WARNING:musubi_tuner.utils.lora_utils:Warning: not all LoRA keys are used: lora_unet_x_qkv.alpha\n"
    )
    assert gen.saved_videos(log) == [
        Path("/c/base/20261204-101010-001_7.mp4"),
        Path("/c/base/20261204-101010-009_7.mp4"),
    ]
    assert "lora_unet_x_qkv" in gen.unused_keys_line(log) and gen.unused_keys_line("all good") is None
    cuda = "  device=torch.cuda.current_device(),\nAssertionError: Torch not compiled with CUDA enabled"
    assert gen.needs_cuda(cuda) and not gen.needs_cuda("RuntimeError: boom")


# --- prompts ------------------------------------------------------------------------------------------------------


def _trained(run_dir: Path | None, trigger="ohwx") -> locate.Trained:
    return locate.Trained(Path("/r/lora.safetensors"), run_dir, {"hvlora.trigger_word": trigger}, {})


def _report(run: Path, entries: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "dataset_report.json").write_text(json.dumps({"files": entries}))


def test_default_prompts_are_the_samples_trigger_and_captions(make_settings, tmp_path):
    run = tmp_path / "run"
    _report(
        run,
        [
            {"file": "b.png", "status": "ok", "block": "images", "caption": "ohwx, a dog\n -- on grass"},
            {"file": "a.png", "status": "warning", "block": "images", "caption": "# ohwx, a cat"},
            {"file": "c.png", "status": "left out", "block": None, "caption": "never"},
            {"file": "d.png", "status": "ok", "block": "images", "caption": "ohwx, a bird"},
        ],
    )
    found = prompts.gather(make_settings("--generate"), _trained(run))
    assert [(p.text, p.source) for p in found] == [
        ("ohwx", "trigger"),
        ("ohwx, a cat", "caption"),  # a leading '#' would make musubi skip the line as a comment
        ("ohwx, a dog - on grass", "caption"),  # one line, and " --" would start an option
    ]
    assert [(p.text, p.source) for p in prompts.gather(make_settings("--generate"), _trained(None))] == [
        ("ohwx", "trigger")
    ]
    assert prompts.gather(make_settings("--generate"), _trained(None, trigger=""))[0].source == "fallback"


def test_prompt_flags_and_files(make_settings, tmp_path):
    s = make_settings("--generate", "--prompt", "a  red\tcar", "--prompt", "ohwx")
    assert [p.text for p in prompts.gather(s, _trained(None))] == ["a red car", "ohwx"]
    with pytest.raises(UserError, match="' --'"):
        prompts.gather(make_settings("--generate", "--prompt", "a car --w 64"), _trained(None))
    f = tmp_path / "p.txt"
    f.write_text("# mine\n\na cat --w 64 --d 9\na dog\n")
    found = prompts.gather(make_settings("--generate", "--sample_prompts", str(f)), _trained(None))
    assert [(p.text, p.options, p.own_seed, p.source) for p in found] == [
        ("a cat", " --w 64 --d 9", 9, "file"),
        ("a dog", "", None, "file"),
    ]
    batch = prompts.items(found, (1, 2), Path("/c/first.png"))
    assert [(i.index, i.seed, i.line) for i in batch] == [
        (0, 9, "a cat --w 64 --d 9 --i /c/first.png"),  # the line's own seed only
        (1, 1, "a dog --d 1 --i /c/first.png"),
        (1, 2, "a dog --d 2 --i /c/first.png"),
    ]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UserError, match="has no prompt"):
        prompts.gather(make_settings("--generate", "--sample_prompts", str(tmp_path / "empty.txt")), _trained(None))


def test_the_prompt_file_reads_back_as_musubi_reads_it(tmp_path):
    """The stand-in's parse_prompt_line is musubi's generator parser: every line gives its prompt and seed."""
    from musubi_tuner.hv_1_5_generate_video import parse_prompt_line

    batch = prompts.items([prompts.Prompt("ohwx walks"), prompts.Prompt("a cat", " --w 64")], (3, 4), None)
    path = prompts.write(tmp_path / "prompts.txt", batch)
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    got = [parse_prompt_line(ln) for ln in lines]
    assert [(g["prompt"], g["seed"]) for g in got] == [("ohwx walks", 3), ("ohwx walks", 4), ("a cat", 3), ("a cat", 4)]
    assert got[2]["video_size_width"] == 64


# --- which LoRA ---------------------------------------------------------------------------------------------------


def test_locate_needs_a_finished_run(make_settings, tmp_path):
    s = make_settings("--generate")
    with pytest.raises(UserError, match="no finished run of output_name 'lora'"):
        locate.locate(s)
    run = s.output_dir / "runs" / "lora-20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "config.toml").write_text('output_name = "lora"\n')
    (run / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    with pytest.raises(UserError, match="no finished run"):
        locate.locate(s)
    with pytest.raises(UserError, match="has no final LoRA.*not finished"):
        locate.locate(make_settings("--generate", "--resume", str(run)))
    with pytest.raises(UserError, match="not a run folder"):
        locate.locate(make_settings("--generate", "--resume", str(tmp_path)))
    _lora(run / "checkpoints" / "lora.safetensors", comfyui.module_names(comfyui.MUSUBI_MODULES)[:2])
    (run / "summary.json").write_text(json.dumps({"status": "succeeded"}))
    found = locate.locate(s)
    assert found.run_dir == run and found.lora == run / "checkpoints" / "lora.safetensors"
    assert locate.locate(make_settings("--generate", "--lora", str(found.lora))).run_dir == run
    folder = compare_folder(s, found)
    assert folder.parent == run / "compare" and folder.is_dir()
    assert compare_folder(s, found) != folder  # a new folder per command


# --- settings -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--generate", "--video_size", "100x64"], "video_size: 100x64 must be multiples of 16"),
        (["--generate", "--video_length", "6"], r"video_length: 6 must be 4n\+1"),
        (["--generate", "--infer_steps", "0"], "infer_steps: 0 is outside"),
        (["--generate", "--lora_multiplier", "nan"], "lora_multiplier: nan"),
        (["--prompt", "a cat"], "prompt is a --generate setting"),
        (["--lora", "x.safetensors"], "lora is a --generate setting"),
        (["--generate", "--seeds", "1,-2"], "seeds"),
        (["--generate", "--dry_run"], "dry_run and generate together"),
        (["--push_to_hub", "me/x", "--check_data"], "push_to_hub and check_data together"),
        (["--push_to_hub", "me/x", "--generate", "--lora", "x.safetensors"], "not --lora"),
        (["--push_to_hub", "a/b/c"], "not a repo id"),
    ],
)
def test_bad_settings_are_refused(make_settings, flags, message):
    with pytest.raises(ConfigError, match=message):
        make_settings(*flags)


def test_generate_settings_parse(make_settings):
    s = make_settings("--generate", "--prompt", "a", "--prompt", "b", "--seeds", "7,3,7", "--video_size", "96x64")
    assert (s.prompt, s.seeds, s.video_size, s.lora_multiplier, s.infer_steps) == (
        ("a", "b"),
        (7, 3),
        (96, 64),
        1.0,
        None,
    )
    assert "hub_public" not in s.to_toml_dict() and "infer_steps" not in s.to_toml_dict()  # unset: not written
    assert make_settings("--seeds", "3").seeds == (3,)  # a TOML key: may stay set for training commands


# --- pictures -----------------------------------------------------------------------------------------------------


def test_side_by_side_video_is_both_halves_under_a_label_band(tmp_path):
    base = make_video(tmp_path / "base.mp4", frames=9, width=96, height=64)
    lora = make_video(tmp_path / "lora.mp4", frames=9, width=96, height=64, fps=24)
    out = compose.side_by_side(
        compose.Pair('"ohwx walks" seed 3', base, lora), tmp_path / "00", ("base model", "LoRA x1.0")
    )
    assert out == tmp_path / "00.mp4"
    frames, rate = compose.read_frames(out)
    src, _ = compose.read_frames(base)
    assert len(frames) == 9 and rate == 24
    h, w = frames[0].shape[:2]
    assert w == 2 * 96 and h > 64 and h % 2 == 0
    band = frames[0][: h - 64]
    left, right = band[:, :96], band[:, 96:]
    assert band.max() > 200 and np.median(band) < 60  # white text on the dark band
    assert not np.array_equal(left, right)  # "base model" and "LoRA x1.0" differ
    video = frames[4][h - 64 :].astype(int)
    assert np.abs(video[:, :96] - src[4].astype(int)).mean() < 8  # the base frame, left (h264 is lossy)


def test_one_frame_comparisons_are_pngs_and_the_sheet_has_a_row_per_pair(tmp_path):
    a = make_image(tmp_path / "a.png", 64, 48)
    b = make_video(tmp_path / "b.mp4", frames=1, width=64, height=48)
    out = compose.side_by_side(compose.Pair("p", a, b), tmp_path / "x", ("base", "LoRA"))
    assert out.suffix == ".png" and Image.open(out).size[0] == 128
    pairs = [compose.Pair(f"prompt {i}", a, b) for i in range(3)]
    sheet = Image.open(compose.contact_sheet(pairs, tmp_path / "sheet.png", ("base", "LoRA")))
    one = Image.open(compose.contact_sheet(pairs[:1], tmp_path / "one.png", ("base", "LoRA")))
    assert sheet.size[0] == one.size[0] and sheet.size[1] > 2.5 * (one.size[1] - 30)
    assert compose.difference(a, a) == 0 and compose.difference(a, make_image(tmp_path / "c.jpg", 64, 48)) >= 0


def test_titles_wrap_to_two_lines():
    from hvlora.training.plots import label_font

    lines = compose.wrap("word " * 60, label_font(12), 200)
    assert len(lines) == 2 and lines[-1].endswith("...")


# --- the stand-in generator (the subprocess boundary) -------------------------------------------------------------


def test_standin_generator_renders_base_and_lora_deterministically(make_settings, tmp_path):
    s = make_settings("--device", "cpu")
    for w in files(s).values():
        w.parent.mkdir(parents=True, exist_ok=True)
        w.write_bytes(b"x")
    lora = _lora(tmp_path / "lora.safetensors", comfyui.module_names(comfyui.MUSUBI_MODULES)[:4])
    sd = load_file(lora)
    save_file({k: torch.ones_like(v) if k.endswith("lora_up.weight") else v for k, v in sd.items()}, lora)
    prompt_file = prompts.write(tmp_path / "p.txt", prompts.items([prompts.Prompt("a cat")], (5,), None))
    env = {**os.environ, "PYTHONPATH": str(STANDIN)}
    memory = gen.plan_memory(s, None, (96, 64, 5), "t2v")
    outs = {}
    for name, lo in (("base", None), ("again", None), ("lora", lora)):
        j = GenerateJob("t2v", "cpu", prompt_file, tmp_path / name, INF, None, memory)
        r = subprocess.run(gen.command(j, files(s), lo).executable(), env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        (video,) = gen.saved_videos(r.stderr)
        outs[name] = compose.read_frames(video)[0]
        assert video.name.endswith("_5.mp4") and outs[name][0].shape == (64, 96, 3)
    assert np.array_equal(outs["base"][2], outs["again"][2])  # same seed and settings: the same video
    assert np.abs(outs["lora"][2].astype(int) - outs["base"][2].astype(int)).mean() > 20  # the LoRA shows


# --- i2v: one first frame for both runs ---------------------------------------------------------------------------


def test_i2v_comparison_starts_both_runs_from_the_first_training_frame(make_settings, tmp_path):
    """prepare() on an i2v run folder: the first frame of its first training video (decoded with PyAV) is saved
    once, every prompt line carries it, and both generator commands get it as --image_path."""
    from hvlora.compare import generate as compare

    s = make_settings("--generate", "--prompt", "ohwx turns", "--seeds", "1,2", "--video_size", "64x64")
    run = s.output_dir / "runs" / "lora-20260101-000000"
    video = make_video(run / "dataset" / "videos_24fps" / "clips__walk.mp4", frames=9, width=96, height=64)
    _report(run, [{"file": "clips/walk.mp4", "kind": "video", "status": "ok", "block": "videos_24fps",
                   "dataset_name": "clips__walk.mp4", "caption": "ohwx walks"}])  # fmt: skip
    (run / "run.json").write_text("{}")
    (run / "config.toml").write_text('output_name = "lora"\ntask = "i2v"\n')
    (run / "summary.json").write_text(json.dumps({"status": "succeeded"}))
    lora = _lora(run / "checkpoints" / "lora.safetensors", comfyui.module_names(comfyui.MUSUBI_MODULES)[:2])
    sd = load_file(lora)
    save_file(sd, lora, metadata={"hvlora.task": "i2v", "hvlora.trigger_word": "ohwx"})
    plan = compare.prepare(s)
    assert plan.task == "i2v" and plan.image.parent == plan.folder / "inputs"
    first, _ = compose.read_frames(video)
    assert np.abs(np.asarray(Image.open(plan.image).convert("RGB"), dtype=int) - first[0]).mean() < 1
    lines = (plan.folder / "prompts.txt").read_text().splitlines()[1:]
    assert lines == [f"ohwx turns --d 1 --i {plan.image}", f"ohwx turns --d 2 --i {plan.image}"]
    for lo in (None, lora):
        j = GenerateJob(
            "i2v", s.device, plan.folder / "prompts.txt", plan.folder / "x", plan.inference, plan.image, plan.memory
        )
        a = parsed(gen.command(j, files(s, "i2v"), lo))
        assert a.image_path == str(plan.image) and "720p_i2v" in a.dit
    (run / "dataset_report.json").write_text(json.dumps({"files": []}))
    with pytest.raises(UserError, match="i2v LoRA needs a first frame"):
        compare.prepare(s)


def test_a_generator_that_cannot_import_without_cuda_says_so(tmp_path):
    from hvlora.compare.generate import _why

    log = tmp_path / "generate_base.log"
    log.write_text(
        '  File "musubi_tuner/wan/modules/t5.py", line 457, in T5EncoderModel\n'
        "    device=torch.cuda.current_device(),\nRuntimeError: Found no NVIDIA driver on your system.\n"
        "AssertionError: Torch not compiled with CUDA enabled\n"
    )
    assert "cannot start without a CUDA GPU, even with --device cpu" in _why(gen, log, "exit 1")
    log.write_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert "--blocks_to_swap" in _why(gen, log, "exit 1")
    log.write_text("RuntimeError: boom\n")
    assert _why(gen, log, "exit 1") == "exit 1"


def test_generator_parser_is_musubis_own(monkeypatch):
    """The captured hv_1_5_generate_video parser has the flags the project uses with musubi's types, and the
    stand-in makes musubi's post-parse checks."""
    from musubi_tuner import hv_1_5_generate_video as standin

    opts = _flags.option_strings(gen.GENERATE)
    used = {"--video_size", "--video_length", "--infer_steps", "--guidance_scale", "--flow_shift", "--lora_weight",
            "--lora_multiplier", "--cpu_noise", "--from_file", "--save_path", "--fp8", "--fp8_scaled", "--seed",
            "--blocks_to_swap", "--text_encoder_cpu", "--vae_sample_size", "--vae_enable_patch_conv",
            "--fps"}  # fmt: skip
    assert used <= opts and "--fp8_vl" not in opts and "--sample_prompts" not in opts
    spec = {a["dest"]: a for a in _flags.module_spec(gen.GENERATE)["actions"]}
    assert (spec["video_size"]["nargs"], spec["video_size"]["default"]) == (2, [256, 256])
    assert spec["video_length"]["default"] is None and spec["infer_steps"]["default"] == 50
    assert spec["save_path"]["required"] and spec["lora_weight"]["nargs"] == "*"
    monkeypatch.setattr(sys, "argv", ["x", "--save_path", "out"])
    with pytest.raises(ValueError, match="Either --prompt, --from_file"):
        standin.parse_args()
    monkeypatch.setattr(sys, "argv", ["x", "--save_path", "out", "--from_file", "p.txt", "--interactive"])
    with pytest.raises(ValueError, match="Cannot use both --from_file and --interactive"):
        standin.parse_args()
