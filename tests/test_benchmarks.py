"""benchmarks/gpu_presets.py, the parts that need no GPU: its synthetic caches are what musubi's dataset code (the
stand-in's mirror of it) trains on, and its commands are our train stage's, accepted by musubi's parsers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hvlora.families.hunyuan_video_1_5 import memory as presets

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standin"
sys.path.insert(0, str(STANDIN))
from musubi_tuner import _flags  # noqa: E402


def test_dry_run_builds_caches_and_commands_musubi_accepts(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_presets.py"),
            "--workdir",
            str(tmp_path),
            "--dry",
            "--presets",
            "none,16,24",
            "--buckets",
            "64x64x1,64x48x5",
            "--steps",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    plans = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(p["preset"], tuple(p["bucket"])) for p in plans] == [
        (None, (64, 64, 1)), (16, (64, 64, 1)), (24, (64, 64, 1)), (None, (64, 48, 5)), (16, (64, 48, 5)),
        (24, (64, 48, 5))]  # fmt: skip
    for p in plans:
        argv = p["argv"]
        module = argv[argv.index("-m", 3) + 1]
        args = _flags.build_parser(module).parse_args(argv[argv.index("-m", 3) + 2 :])
        assert (
            args.max_train_steps == 2 and (args.blocks_to_swap or 0) == presets.resolve(p["preset"], {}).blocks_to_swap
        )
    # one of them, trained for real by the stand-in trainer on the synthetic caches (a dummy DiT file)
    (tmp_path / "dit.safetensors").write_bytes(b"x")
    argv = plans[4]["argv"]
    launcher_end = argv.index("-m", 3)
    cpu = [*argv[:launcher_end], "--cpu", *argv[launcher_end:]]
    env = dict(os.environ, PYTHONPATH=str(STANDIN))
    t = subprocess.run(cpu, capture_output=True, text=True, env=env, timeout=300)
    assert t.returncode == 0, t.stdout[-2000:] + t.stderr[-3000:]
    assert "num train items / 学習画像、動画数: 2" in t.stdout and "steps: 100%" in t.stderr


def test_streaming_writer_makes_a_file_safetensors_reads(tmp_path):
    """build_dit's writer: one tensor at a time, readable by safetensors itself with the same values."""
    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_presets

    shapes = {"b.weight": (3, 4), "a.bias": (5,), "c.norm.weight": (2,)}
    made = {}

    def make(name, shape):
        made[name] = torch.randn(shape).to(torch.bfloat16)
        return made[name]

    path = tmp_path / "dit.safetensors"
    gpu_presets.write_streaming(path, shapes, make)
    back = load_file(str(path))
    assert set(back) == set(shapes) and all(torch.equal(back[k], made[k]) for k in shapes)
    assert gpu_presets._random("x.bias", (4,), "cpu").abs().sum() == 0
    assert torch.all(gpu_presets._random("x.norm.weight", (4,), "cpu") == 1)
