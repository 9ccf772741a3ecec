"""The musubi-tuner stand-in (tests/standin): its parsers are musubi v0.3.4's, captured in musubi_flags.json.

The argv hvlora.families.hunyuan_video_1_5.musubi builds must parse with them; flags the real scripts reject (unknown ones, HunyuanVideo-1
flags) must fail with argparse's exit 2. One smoke test runs the four stand-in modules as subprocesses on a tiny
dataset, the way the pipeline does. musubi_flags.json is compared with a real musubi install when MUSUBI_PYTHON
names one (CI has none): `python tests/standin/dump_musubi_flags.py --check` with the rig venv.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mediafactory import make_image, make_video
from safetensors import safe_open

from hvlora.families.hunyuan_video_1_5 import catalog, musubi
from hvlora.families.hunyuan_video_1_5 import memory as presets
from hvlora.training.plan import Launch
from hvlora.training.presets import KNOBS

STANDIN = Path(__file__).resolve().parent / "standin"
TOML = Path("/run/dataset.toml")


def _load_flags_module():
    """The stand-in's _flags.py under a private name: importing it as `musubi_tuner` would shadow a real install."""
    spec = importlib.util.spec_from_file_location("standin_flags", STANDIN / "musubi_tuner" / "_flags.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


flags = _load_flags_module()


def parse(module: str, argv) -> dict:
    """Parse argv with the stand-in's copy of `module`'s real parser; returns vars(namespace)."""
    return vars(flags.build_parser(module).parse_args(list(argv)))


def parse_error(module: str, argv) -> tuple[int, str]:
    """(exit code, last stderr line) of a rejected argv."""
    err = io.StringIO()
    with pytest.raises(SystemExit) as exc, contextlib.redirect_stderr(err):
        flags.build_parser(module).parse_args(list(argv))
    return exc.value.code, err.getvalue().strip().splitlines()[-1]


def commands(s) -> list[musubi.Command]:
    weights = {c: w.local_path(s.models_dir) for c, w in catalog.weights_for(s.task).items()}
    memory = presets.resolve(None, {k: getattr(s, k) for k in KNOBS if getattr(s, k) is not None})
    seg = musubi.TrainSegment(Path("/run/ckpt"), Path("/run/tb"), max_train_steps=7, total_steps=7)
    return [
        musubi.cache_latents(s, TOML, weights, memory),
        musubi.cache_text_encoder_outputs(s, TOML, weights, memory),
        musubi.train(s, TOML, weights, seg, memory, Launch(1, 1)),
        musubi.convert(Path("/run/ckpt/lora.safetensors"), Path("/run/ckpt/lora_comfyui.safetensors")),
    ]


VARIANTS = {
    "t2v": (),
    "i2v": ("--task", "i2v"),
    "fp8": ("--fp8",),
    "swap": ("--blocks_to_swap", "51"),
    "adafactor": ("--optimizer", "AdaFactor"),
    "cpu": ("--device", "cpu"),
    "steps": ("--max_train_steps", "7", "--task", "i2v", "--fp8", "--save_precision", "fp32"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_real_parsers_accept_our_argv(make_settings, variant):
    s = make_settings(*VARIANTS[variant])
    for cmd in commands(s):
        ns = parse(cmd.module, cmd.argv)
        if cmd.name == "cache_latents":
            assert ns["i2v"] == (s.task == "i2v") and ns["vae"].endswith("diffusion_pytorch_model.safetensors")
        elif cmd.name == "train":
            assert ns["task"] == s.task and ns["sdpa"] and ns["network_dim"] == s.rank
            assert ns["blocks_to_swap"] == (s.blocks_to_swap or None)
            assert ns["fp8_base"] == ns["fp8_scaled"] == bool(s.fp8)
            assert isinstance(ns["dataset_config"], Path)  # musubi's type=Path, kept by the stand-in
        elif cmd.name == "convert":
            assert (ns["src_path"], ns["dst_path"], ns["reverse"]) == (
                "/run/ckpt/lora.safetensors",
                "/run/ckpt/lora_comfyui.safetensors",
                False,
            )


@pytest.mark.parametrize("module", [musubi.CACHE_LATENTS, musubi.CACHE_TEXT_ENCODER, musubi.TRAIN])
def test_unknown_flag_is_rejected_like_argparse(make_settings, module):
    s = make_settings()
    argv = next(c.argv for c in commands(s) if c.module == module)
    code, msg = parse_error(module, [*argv, "--no_such_flag"])
    prog = module.rsplit(".", 1)[1] + ".py"
    assert (code, msg) == (2, f"{prog}: error: unrecognized arguments: --no_such_flag")


@pytest.mark.parametrize("hv1_flag", [["--fp8_llm"], ["--text_encoder1", "x"], ["--dit_in_channels", "32"]])
def test_hunyuan_video_1_flags_are_rejected(make_settings, hv1_flag):
    s = make_settings()
    train = next(c for c in commands(s) if c.name == "train")
    code, msg = parse_error(musubi.TRAIN, [*train.argv, *hv1_flag])
    assert code == 2 and msg.endswith("unrecognized arguments: " + " ".join(hv1_flag))


@pytest.mark.parametrize(
    "flags",
    [
        *(("--save_precision", p) for p in ("bf16", "fp16", "fp32")),
        *(("--lr_scheduler", sch, "--lr_warmup_steps", "10") for sch in ("constant_with_warmup", "cosine", "linear")),
        ("--rank", "4", "--network_alpha", "0.5"),
        ("--rank", "128", "--network_alpha", "256"),
        ("--learning_rate", "3e-05", "--seed", "4294967295"),
        ("--max_data_loader_n_workers", "0"),
        ("--num_gpus", "2", "--num_machines", "2", "--main_process_ip", "10.0.0.1", "--machine_rank", "1"),
    ],
    ids=lambda f: " ".join(f),
)
def test_every_setting_value_reaches_musubi_as_a_value_its_parser_takes(make_settings, flags):
    """Each value our settings accept for a setting that becomes a musubi flag parses with musubi's parser (its
    types and choices: --save_precision, --network_dim int, --learning_rate, the scheduler arguments), with the
    segment, resume and sampling flags a real run adds, and the launcher flags accelerate takes."""
    s = make_settings(*flags)
    seg = musubi.TrainSegment(
        Path("/run/seg"), Path("/run/tb"), max_train_steps=7, total_steps=9, resume=Path("/run/lora-step2-state"),
        save_every_n_steps=2, save_every_n_epochs=1, sample_prompts=Path("/run/p.json"), sample_every_n_steps=2,
        metadata={"title": "lora", "description": "d", "tags": "a,b"},
    )  # fmt: skip
    weights = {c: w.local_path(s.models_dir) for c, w in catalog.weights_for(s.task).items()}
    memory = presets.resolve(None, {})
    launch = Launch(s.num_gpus * s.num_machines, s.num_gpus, s.num_machines, s.machine_rank, s.main_process_ip)
    cmd = musubi.train(s, TOML, weights, seg, memory, launch)
    ns = parse(cmd.module, cmd.argv)
    assert ns["save_precision"] == s.save_precision and ns["network_dim"] == s.rank
    assert ns["network_alpha"] == s.alpha and ns["learning_rate"] == s.learning_rate
    assert (ns["max_train_steps"], ns["resume"], ns["sample_every_n_steps"]) == (7, "/run/lora-step2-state", 2)
    launcher = cmd.launcher[2:]
    assert launcher.count("--machine_rank") == (s.num_machines > 1) and "--mixed_precision" in launcher


@pytest.mark.skipif(not os.environ.get("MUSUBI_PYTHON"), reason="set MUSUBI_PYTHON to a Python with musubi-tuner")
def test_the_captured_parsers_are_the_installed_musubis():
    """musubi_flags.json (what the parsers above are rebuilt from) against a real musubi-tuner install (on CPU with
    MUSUBI_PYTHONPATH naming the rig's shims folder: musubi imports torchvision at the top)."""
    env = {**os.environ, "PYTHONPATH": os.environ.get("MUSUBI_PYTHONPATH", "")}
    r = subprocess.run(
        [os.environ["MUSUBI_PYTHON"], str(STANDIN / "dump_musubi_flags.py"), "--check"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0 and "OK musubi_flags.json matches" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def _run(module: str, argv: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(STANDIN), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_standin_pipeline_smoke(tmp_path):
    """cache latents -> text encoder -> train -> convert on one image and one video, as subprocesses."""
    data = tmp_path / "data"
    make_image(data / "img" / "cat.png", 80, 48)
    (data / "img" / "cat.txt").write_text("a cat")
    make_image(data / "img" / "nocaption.png", 32, 32)  # skipped silently: caption_extension is set
    make_video(data / "vid" / "walk.mp4", frames=12, width=96, height=64)
    (data / "vid" / "walk.txt").write_text('a sign saying "HI"')
    for w in ("vae", "te", "byt5", "dit"):
        (tmp_path / f"{w}.safetensors").write_bytes(b"")
    toml = tmp_path / "dataset.toml"
    toml.write_text(
        f'[general]\nresolution = [64, 64]\ncaption_extension = ".txt"\nenable_bucket = true\n\n'
        f'[[datasets]]\nimage_directory = "{data / "img"}"\ncache_directory = "{tmp_path / "ci"}"\n\n'
        f'[[datasets]]\nvideo_directory = "{data / "vid"}"\ncache_directory = "{tmp_path / "cv"}"\n'
        f'target_frames = [1, 5, 9]\nframe_extraction = "chunk"\n'
    )
    stale = tmp_path / "cv" / "old_00000-001_0064x0064_hv15.safetensors"
    stale.parent.mkdir()
    stale.write_bytes(b"")
    calls = tmp_path / "calls.jsonl"

    r = _run(
        musubi.CACHE_LATENTS,
        ["--dataset_config", str(toml), "--vae", "vae.safetensors", "--device", "cpu"],
        tmp_path,
        {"STANDIN_CALLS": str(calls)},
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "cv").iterdir()) == [
        "walk_00000-001_0080x0048_hv15.safetensors",
        "walk_00000-005_0080x0048_hv15.safetensors",
        "walk_00000-009_0080x0048_hv15.safetensors",
        "walk_00001-001_0080x0048_hv15.safetensors",
        "walk_00002-001_0080x0048_hv15.safetensors",
        "walk_00003-001_0080x0048_hv15.safetensors",
        "walk_00004-001_0080x0048_hv15.safetensors",
        "walk_00005-001_0080x0048_hv15.safetensors",
        "walk_00005-005_0080x0048_hv15.safetensors",
        "walk_00006-001_0080x0048_hv15.safetensors",
        "walk_00007-001_0080x0048_hv15.safetensors",
        "walk_00008-001_0080x0048_hv15.safetensors",
        "walk_00009-001_0080x0048_hv15.safetensors",
        "walk_00010-001_0080x0048_hv15.safetensors",
        "walk_00011-001_0080x0048_hv15.safetensors",
    ]  # the stale file is gone
    with safe_open(tmp_path / "ci" / "cat_0080x0048_hv15.safetensors", "pt") as f:
        assert {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()} == {"latents_1x3x5_float16": (32, 1, 3, 5)}
        assert f.metadata()["architecture"] == "hunyuan_video_1_5"
    assert "1it [" in r.stderr and "15it [" in r.stderr  # one tqdm bar per dataset (1 and 15 batches), no total

    r = _run(
        musubi.CACHE_TEXT_ENCODER,
        [
            "--dataset_config",
            str(toml),
            "--text_encoder",
            "te.safetensors",
            "--byt5",
            "byt5.safetensors",
            "--batch_size",
            "16",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    with safe_open(tmp_path / "cv" / "walk_hv15_te.safetensors", "pt") as f:
        assert f.metadata()["caption1"] == 'a sign saying "HI"'
        assert f.get_slice("varlen_byt5_embed_float16").get_shape()[1] == 1472

    out = tmp_path / "out"
    train = [
        "--dit",
        "dit.safetensors",
        "--dataset_config",
        str(toml),
        "--sdpa",
        "--optimizer_type",
        "adamw",
        "--network_module",
        "networks.lora_hv_1_5",
        "--network_dim",
        "4",
        "--network_alpha",
        "2",
        "--max_train_epochs",
        "3",
        "--save_every_n_epochs",
        "1",
        "--save_last_n_epochs",
        "1",
        "--save_state",
        "--save_precision",
        "bf16",
        "--seed",
        "1",
        "--output_dir",
        str(out),
        "--output_name",
        "lora",
    ]
    r = _run(musubi.TRAIN, train, tmp_path, {"STANDIN_CALLS": str(calls)})
    assert r.returncode == 0, r.stderr
    assert "  num train items / 学習画像、動画数: 16" in r.stdout
    assert "  total optimization steps / 学習ステップ数: 48" in r.stdout and "epoch 3/3" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "lora-000002-state",
        "lora-000002.safetensors",
        "lora-state",
        "lora.safetensors",
    ]
    assert "avr_loss=" in r.stderr and "steps: 100%" in r.stderr
    with safe_open(out / "lora.safetensors", "pt") as f:
        keys = list(f.keys())
        md = f.metadata()
        assert len(keys) == 2268 and f.get_slice(
            "lora_unet_double_blocks_53_txt_mod_linear.lora_up.weight"
        ).get_shape() == [12288, 4]
    assert (md["ss_network_dim"], md["ss_network_alpha"], md["ss_steps"], md["ss_epoch"]) == ("4", "2.0", "48", "3")

    r = _run(musubi.CONVERT, [str(out / "lora.safetensors"), str(out / "comfy.safetensors")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Direct key renames applied: 972" in r.stderr and "QKV LoRA layers processed: 108" in r.stderr
    with safe_open(out / "comfy.safetensors", "pt") as f:
        assert len(list(f.keys())) == 1620
        assert f.get_slice("lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight").get_shape() == [6144, 12]

    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [c["module"] for c in recorded] == ["hv_1_5_cache_latents", "hv_1_5_train_network"]
    assert recorded[1]["argv"][1:] == train
