"""The argv of every musubi stage for t2v, i2v, --fp8, --blocks_to_swap, optimizers, steps and CPU mode."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hvlora import catalog, musubi

TOML = Path("/run/dataset.toml")


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


def test_t2v_cache_latents(make_settings):
    s = make_settings()
    cmd = musubi.cache_latents(s, TOML, weights(s))
    assert cmd.module == "musubi_tuner.hv_1_5_cache_latents"
    assert list(cmd.argv) == [
        "--dataset_config",
        str(TOML),
        "--vae",
        str(s.models_dir / "tencent/HunyuanVideo-1.5/vae/diffusion_pytorch_model.safetensors"),
        "--device",
        "cuda",
    ]


def test_i2v_cache_latents_caches_image_latents(make_settings):
    s = make_settings("--task", "i2v")
    argv = musubi.cache_latents(s, TOML, weights(s)).argv
    assert flag(argv, "--i2v") is True
    assert flag(argv, "--image_encoder").endswith("split_files/clip_vision/sigclip_vision_patch14_384.safetensors")


def test_cpu_mode(make_settings):
    s = make_settings("--device", "cpu")
    w = weights(s)
    lat = musubi.cache_latents(s, TOML, w).argv
    assert flag(lat, "--device") == "cpu" and flag(lat, "--vae_dtype") == "bfloat16"
    assert flag(musubi.cache_text_encoder_outputs(s, TOML, w).argv, "--device") == "cpu"
    launcher = musubi.train(s, TOML, w, Path("/o"), Path("/l")).launcher
    assert flag(launcher, "--num_cpu_threads_per_process") == str(os.cpu_count())
    assert "--cpu" in launcher


def test_text_encoder_cache(make_settings):
    s = make_settings()
    argv = musubi.cache_text_encoder_outputs(s, TOML, weights(s)).argv
    assert flag(argv, "--text_encoder").endswith("split_files/text_encoders/qwen_2.5_vl_7b.safetensors")
    assert flag(argv, "--byt5").endswith("split_files/text_encoders/byt5_small_glyphxl_fp16.safetensors")
    assert flag(argv, "--batch_size") == "16" and flag(argv, "--device") == "cuda"
    assert "--fp8_vl" not in argv
    s8 = make_settings("--fp8")
    assert "--fp8_vl" in musubi.cache_text_encoder_outputs(s8, TOML, weights(s8)).argv


def test_train_defaults(make_settings):
    s = make_settings()
    cmd = musubi.train(s, TOML, weights(s), Path("/run/checkpoints"), Path("/run/tb"))
    assert cmd.launcher == (
        "accelerate",
        "launch",
        "--num_cpu_threads_per_process",
        "1",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "bf16",
        "--dynamo_backend",
        "no",
    )
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
        "--max_train_epochs": "10",
        "--save_every_n_epochs": "1",
        "--save_last_n_epochs": "3",
        "--save_state": True,
        "--save_last_n_epochs_state": "1",
        "--save_precision": "bf16",
        "--seed": "42",
        "--output_dir": "/run/checkpoints",
        "--output_name": "lora",
        "--logging_dir": "/run/tb",
        "--max_data_loader_n_workers": "2",
        "--persistent_data_loader_workers": True,
    }
    assert {k: flag(a, k) for k in expected} == expected
    for absent in ("--max_train_steps", "--fp8_base", "--fp8_scaled", "--blocks_to_swap", "--optimizer_args"):
        assert absent not in a
    # every flag appears once
    flags = [x for x in a if x.startswith("--")]
    assert len(flags) == len(set(flags))


def test_train_i2v_fp8_swap_steps(make_settings):
    s = make_settings(
        "--task",
        "i2v",
        "--fp8",
        "--blocks_to_swap",
        "20",
        "--max_train_steps",
        "500",
        "--rank",
        "16",
        "--network_alpha",
        "8",
        "--learning_rate",
        "2e-5",
        "--save_precision",
        "fp16",
    )
    a = musubi.train(s, TOML, weights(s), Path("/o"), Path("/l")).argv
    assert flag(a, "--task") == "i2v" and "720p_i2v" in flag(a, "--dit")
    assert flag(a, "--fp8_base") is True and flag(a, "--fp8_scaled") is True
    assert flag(a, "--blocks_to_swap") == "20"
    assert flag(a, "--max_train_steps") == "500" and "--max_train_epochs" not in a
    assert (flag(a, "--network_dim"), flag(a, "--network_alpha")) == ("16", "8")
    assert float(flag(a, "--learning_rate")) == 2e-5 and flag(a, "--save_precision") == "fp16"


@pytest.mark.parametrize("ours, theirs", [("adamw8bit", "AdamW8bit"), ("adamw", "AdamW"), ("AdaFactor", "Adafactor")])
def test_optimizer_mapping(make_settings, ours, theirs):
    s = make_settings("--optimizer", ours)
    a = list(musubi.train(s, TOML, weights(s), Path("/o"), Path("/l")).argv)
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
        "/py",
        "-m",
        "musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy",
        "/c/lora.safetensors",
        "/c/lora_comfyui.safetensors",
    ]
    s = make_settings()
    train = musubi.train(s, TOML, weights(s), Path("/o"), Path("/l"))
    exe = train.executable()
    assert exe[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert exe[3 : exe.index("-m", 3)] == list(train.launcher[2:])
    assert exe[exe.index("-m", 3) : exe.index("-m", 3) + 2] == ["-m", "musubi_tuner.hv_1_5_train_network"]
    assert exe[-len(train.argv) :] == list(train.argv)
    assert train.display().startswith("accelerate launch --num_cpu_threads_per_process 1")
    assert train.plan_entry()["launcher"][:2] == ["accelerate", "launch"]
