"""The argv of every musubi stage: t2v/i2v, memory plans from every preset, LR schedules, segments with resume,
multi-GPU and multi-node launchers, sampling and metadata. Every argv is parsed with musubi's own parsers (rebuilt
from tests/standin/musubi_flags.json, captured from musubi v0.3.4), which reject any flag the real scripts reject."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hvlora.families.hunyuan_video_1_5 import catalog, musubi
from hvlora.families.hunyuan_video_1_5 import memory as presets
from hvlora.training import musubi as trainer
from hvlora.training.plan import Launch

sys.path.insert(0, str(Path(__file__).resolve().parent / "standin"))
from musubi_tuner import _flags  # noqa: E402  (the stand-in's parsers are musubi's)

TOML = Path("/run/dataset.toml")
ONE = Launch(1, 1)


def weights(s):
    return {c: w.local_path(s.models_dir) for c, w in catalog.weights_for(s.task).items()}


def flag(argv, name):
    """The value after `name` in argv (or True for a bare flag); None when absent."""
    argv = list(argv)
    if name not in argv:
        return None
    i = argv.index(name)
    nxt = argv[i + 1] if i + 1 < len(argv) else None
    return True if nxt is None or nxt.startswith("--") else nxt


def parsed(cmd: musubi.Command):
    """musubi's parser applied to the argv: SystemExit (argparse's error) for anything it would reject."""
    return _flags.build_parser(cmd.module).parse_args(list(cmd.argv))


def segment(**kw) -> musubi.TrainSegment:
    base = {
        "output_dir": Path("/run/segments/00"),
        "logging_dir": Path("/run/tb/segment-00"),
        "max_train_steps": 100,
        "total_steps": 100,
    }
    return musubi.TrainSegment(**{**base, **kw})


def plan_for(preset):
    return presets.resolve(preset, {})


def test_t2v_cache_latents(make_settings):
    s = make_settings()
    cmd = musubi.cache_latents(s, TOML, weights(s), plan_for(None))
    assert cmd.module == "musubi_tuner.hv_1_5_cache_latents"
    assert list(cmd.argv) == [
        "--dataset_config", str(TOML),
        "--vae", str(s.models_dir / "tencent/HunyuanVideo-1.5/vae/diffusion_pytorch_model.safetensors"),
        "--device", "cuda",
        "--skip_existing", "--keep_cache",  # a killed run's complete files stay; musubi deletes nothing
    ]  # fmt: skip
    args = parsed(cmd)
    assert args.skip_existing and args.keep_cache


def test_i2v_cache_latents_caches_image_latents(make_settings):
    s = make_settings("--task", "i2v")
    argv = musubi.cache_latents(s, TOML, weights(s), plan_for(None)).argv
    assert flag(argv, "--i2v") is True
    assert flag(argv, "--image_encoder").endswith("split_files/clip_vision/sigclip_vision_patch14_384.safetensors")


@pytest.mark.parametrize("preset", [None, *presets.PRESETS])
def test_every_preset_emits_flags_musubi_accepts(make_settings, preset):
    s = make_settings()
    memory, w = plan_for(preset), weights(s)
    commands = [musubi.cache_latents(s, TOML, w, memory), musubi.cache_text_encoder_outputs(s, TOML, w, memory)]
    commands.append(musubi.train(s, TOML, w, segment(sample_prompts=Path("/p.txt")), memory, ONE))
    for cmd in commands:
        parsed(cmd)
    train = parsed(commands[-1])
    assert bool(train.fp8_base) == bool(train.fp8_scaled) == memory.fp8
    assert (train.blocks_to_swap or 0) == memory.blocks_to_swap
    assert train.block_swap_h2d_only == memory.block_swap_h2d_only
    assert parsed(commands[1]).fp8_vl == memory.fp8_vl


def test_explicit_flags_win_over_the_preset(make_settings):
    s = make_settings("--blocks_to_swap", "0", "--fp8_vl", "--no-fp8")
    memory = presets.resolve(16, {"blocks_to_swap": s.blocks_to_swap, "fp8_vl": s.fp8_vl, "fp8": s.fp8})
    train = parsed(musubi.train(s, TOML, weights(s), segment(), memory, ONE))
    assert not train.fp8_base and train.blocks_to_swap is None and not train.block_swap_h2d_only
    assert memory.sources["blocks_to_swap"] == "--blocks_to_swap" and memory.sources["vae_sample_size"] == "preset 16"


def test_cpu_mode(make_settings):
    s = make_settings("--device", "cpu")
    w = weights(s)
    lat = musubi.cache_latents(s, TOML, w, plan_for(None)).argv
    assert flag(lat, "--device") == "cpu" and flag(lat, "--vae_dtype") == "bfloat16"
    assert flag(musubi.cache_text_encoder_outputs(s, TOML, w, plan_for(None)).argv, "--device") == "cpu"
    launcher = musubi.train(s, TOML, w, segment(), plan_for(None), ONE).launcher
    assert flag(launcher, "--num_cpu_threads_per_process") == str(os.cpu_count())
    assert "--cpu" in launcher


def test_train_defaults(make_settings):
    s = make_settings()
    cmd = musubi.train(s, TOML, weights(s), segment(max_train_steps=40, total_steps=100), plan_for(None), ONE)
    assert cmd.launcher == (
        "accelerate", "launch", "--num_cpu_threads_per_process", "1", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "bf16", "--dynamo_backend", "no",
    )  # fmt: skip
    a = cmd.argv
    expected = {
        "--dit": str(
            s.models_dir / "tencent/HunyuanVideo-1.5/transformer/720p_t2v/diffusion_pytorch_model.safetensors"
        ),
        "--dataset_config": str(TOML),
        "--task": "t2v",
        "--sdpa": True,
        "--mixed_precision": "bf16",
        "--timestep_sampling": "shift",
        "--weighting_scheme": "none",
        "--discrete_flow_shift": "2.0",
        "--optimizer_type": "AdamW8bit",
        "--learning_rate": "0.0001",
        "--gradient_checkpointing": True,
        "--network_module": "networks.lora_hv_1_5",
        "--network_dim": "32",
        "--network_alpha": "32",
        "--max_train_steps": "40",  # the segment's steps: musubi restarts its counters on --resume
        "--save_state": True,
        "--save_precision": "bf16",
        "--seed": "42",
        "--output_dir": "/run/segments/00",
        "--output_name": "lora",
        "--logging_dir": "/run/tb/segment-00",
        "--max_data_loader_n_workers": "2",
        "--persistent_data_loader_workers": True,
    }
    assert {k: flag(a, k) for k in expected} == expected
    for absent in (
        "--max_train_epochs",
        "--fp8_base",
        "--blocks_to_swap",
        "--optimizer_args",
        "--resume",
        "--lr_scheduler_type",
        "--sample_prompts",
    ):
        assert absent not in a
    flags = [x for x in a if x.startswith("--")]
    assert len(flags) == len(set(flags))  # every flag once
    parsed(cmd)


def test_saving_and_musubis_own_pruning(make_settings):
    """musubi prunes step files by a step distance, not a count: last_n = (N - 1) x every keeps N of them."""
    s = make_settings()
    seg = segment(save_every_n_steps=100, save_every_n_epochs=2, keep_models=3, keep_states=2)
    a = parsed(musubi.train(s, TOML, weights(s), seg, plan_for(None), ONE))
    assert (a.save_every_n_steps, a.save_last_n_steps, a.save_last_n_steps_state) == (100, 200, 100)
    assert (a.save_every_n_epochs, a.save_last_n_epochs, a.save_last_n_epochs_state) == (2, 3, 2)
    assert a.save_state


def test_resume_segment_trains_the_remaining_steps_on_the_whole_runs_schedule(make_settings, make_ctx, tmp_path):
    """The train stage's segment: from the state of step 1300 of 2000, musubi (whose counters restart at 0) gets the
    700 steps left, the state, and the LR schedule over all 2000 steps; the first segment gets everything."""
    from mediafactory import dataset_zip

    from hvlora.core import pipeline
    from hvlora.stages import train
    from hvlora.training import plan

    z = dataset_zip(tmp_path / "src", tmp_path / "data" / "d.zip", images={"a.png": "a cat"})
    s = make_settings("--input_zip", str(z), "--max_train_steps", "2000", "--lr_scheduler", "cosine")
    ctx = make_ctx(s)
    pipeline.check_data(ctx)
    ctx.plan = plan.make(s, ctx.data.buckets(), [], host_ram=64 * 2**30)
    ctx.dataset_toml, ctx.weights = TOML, weights(s)
    state = Path("/run/checkpoints/lora-step00001300-state")
    seg = train.segment_args(ctx, Path("/run/segments/01"), Path("/run/tb/01"), 1300, state)
    a = parsed(train.command(ctx, seg))
    assert (a.resume, a.max_train_steps, a.output_dir) == (str(state), 700, "/run/segments/01")
    assert a.lr_scheduler_args == ["num_warmup_steps=0", "num_training_steps=2000"]
    first = parsed(train.command(ctx))
    assert (first.resume, first.max_train_steps) == (None, 2000)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("constant", []),
        (
            "constant_with_warmup",
            [
                "--lr_scheduler_type",
                "transformers.get_constant_schedule_with_warmup",
                "--lr_scheduler_args",
                "num_warmup_steps=20",
            ],
        ),
        (
            "cosine",
            [
                "--lr_scheduler_type",
                "transformers.get_cosine_schedule_with_warmup",
                "--lr_scheduler_args",
                "num_warmup_steps=20",
                "num_training_steps=4000",
            ],
        ),
        (
            "linear",
            [
                "--lr_scheduler_type",
                "transformers.get_linear_schedule_with_warmup",
                "--lr_scheduler_args",
                "num_warmup_steps=20",
                "num_training_steps=4000",
            ],
        ),
    ],
)
def test_lr_schedule_spans_the_whole_run_in_every_segment(make_settings, name, expected):
    """The horizon is the run's total (2000 steps) x 2 processes, whatever the segment's remaining steps."""
    assert trainer.lr_schedule(name, 10, 2000, 2) == expected
    s = make_settings("--lr_scheduler", name, *(["--lr_warmup_steps", "10"] if name != "constant" else []))
    a = musubi.train(s, TOML, weights(s), segment(max_train_steps=300, total_steps=2000), plan_for(None), Launch(2, 2))
    parsed(a)
    argv = list(a.argv)
    if expected:
        i = argv.index("--lr_scheduler_type")
        assert argv[i : i + len(expected)] == expected
    else:
        assert "--lr_scheduler_type" not in argv


def test_multi_gpu_and_multi_node_launchers(make_settings):
    s = make_settings("--num_gpus", "4")
    launcher = musubi.train(s, TOML, weights(s), segment(), plan_for(None), Launch(4, 4)).launcher
    assert "--multi_gpu" in launcher and flag(launcher, "--num_processes") == "4"
    node = Launch(8, 4, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1", main_process_port=29501)
    launcher = trainer.launcher(s, node)
    assert [flag(launcher, f) for f in ("--num_processes", "--num_machines", "--machine_rank")] == ["8", "2", "1"]
    assert flag(launcher, "--main_process_ip") == "10.0.0.1" and flag(launcher, "--main_process_port") == "29501"


def test_sampling_needs_the_encoders_and_i2v_the_image_encoder(make_settings):
    s = make_settings("--task", "i2v")
    seg = segment(
        sample_prompts=Path("/run/sample_prompts.txt"),
        sample_every_n_steps=50,
        sample_at_first=True,
        metadata={"title": "lora", "description": "HunyuanVideo 1.5 i2v LoRA", "tags": "i2v"},
    )
    a = parsed(musubi.train(s, TOML, weights(s), seg, plan_for(24), ONE))
    assert a.sample_prompts == "/run/sample_prompts.txt" and a.sample_every_n_steps == 50 and a.sample_at_first
    assert a.vae and a.text_encoder and a.byt5 and a.image_encoder.endswith("sigclip_vision_patch14_384.safetensors")
    assert a.fp8_vl  # the sample prompts are encoded with the memory plan's Qwen precision
    assert (a.metadata_title, a.metadata_tags) == ("lora", "i2v")


@pytest.mark.parametrize("ours, theirs", [("adamw8bit", "AdamW8bit"), ("adamw", "AdamW"), ("AdaFactor", "Adafactor")])
def test_optimizer_mapping(make_settings, ours, theirs):
    s = make_settings("--optimizer", ours)
    a = list(musubi.train(s, TOML, weights(s), segment(), plan_for(None), ONE).argv)
    assert flag(a, "--optimizer_type") == theirs
    if ours == "AdaFactor":  # a fixed learning rate instead of Adafactor's relative step
        i = a.index("--optimizer_args")
        assert a[i + 1 : i + 4] == ["scale_parameter=False", "relative_step=False", "warmup_init=False"]
    else:
        assert "--optimizer_args" not in a


def test_convert_and_executables(make_settings):
    cmd = musubi.convert(Path("/c/lora.safetensors"), Path("/c/lora_comfyui.safetensors"))
    assert cmd.argv == ("/c/lora.safetensors", "/c/lora_comfyui.safetensors")
    assert cmd.executable("/py") == [
        "/py", "-m", "musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy", "/c/lora.safetensors",
        "/c/lora_comfyui.safetensors",
    ]  # fmt: skip
    s = make_settings()
    train = musubi.train(s, TOML, weights(s), segment(), plan_for(None), ONE)
    exe = train.executable()
    assert exe[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert exe[3 : exe.index("-m", 3)] == list(train.launcher[2:])
    assert exe[exe.index("-m", 3) : exe.index("-m", 3) + 2] == ["-m", "musubi_tuner.hv_1_5_train_network"]
    assert exe[-len(train.argv) :] == list(train.argv)
    assert train.display().startswith("accelerate launch --num_cpu_threads_per_process 1")
