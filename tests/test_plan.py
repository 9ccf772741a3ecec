"""The plan made right after the data check: memory preset for simulated GPUs (no GPU needed), steps per epoch for
one and several GPUs, the items-vs-GPUs check, and the multi-node dry run's per-machine commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mediafactory import dataset_zip

from hvlora.families.hunyuan_video_1_5 import memory as presets
from hvlora.training import plan
from hvlora.training.gpu import GpuInfo

ROOT = Path(__file__).resolve().parent.parent
from hvlora.core.fsutil import GIB  # noqa: E402

BUCKETS = {(960, 544, 1): 7, (960, 544, 25): 3}


def gpus(*sizes_gib: float) -> list[GpuInfo]:
    return [GpuInfo(i, f"GPU {i}", int(s * GIB), f"GPU-{i}") for i, s in enumerate(sizes_gib)]


@pytest.mark.parametrize(
    "sizes, preset",
    [((23.99,), 24), ((79.6,), 80), ((39.4,), 32), ((47.99, 23.5), 24), ((139.8, 139.8), 80), ((15.6,), 16)],
)
def test_auto_picks_the_preset_of_the_smallest_gpu_used(make_settings, sizes, preset):
    s = make_settings("--num_gpus", "all")
    p = plan.make(s, BUCKETS, gpus(*sizes), host_ram=64 * GIB)
    assert p.memory.preset == preset and p.launch.num_processes == len(sizes)
    assert all(src == f"preset {preset}" for k, src in p.memory.sources.items() if src != "default")


def test_explicit_knobs_win_and_are_said(make_settings):
    s = make_settings("--blocks_to_swap", "40", "--no-fp8")
    p = plan.make(s, BUCKETS, gpus(23.99), host_ram=64 * GIB)
    assert (p.memory.preset, p.memory.fp8, p.memory.blocks_to_swap) == (24, False, 40)
    text = "\n".join(plan.describe(s, p))
    assert "blocks_to_swap=40 (--blocks_to_swap)" in text and "fp8=False (--fp8)" in text
    assert "fp8_vl=True (preset 24)" in text and "estimate (arithmetic, not measured)" in text


def test_no_gpu_plans_for_the_preset_given(make_settings):
    """Planning needs no GPU: --vram N plans for an N GB card (the estimate is checked against it)."""
    s = make_settings("--vram", "16")
    p = plan.make(s, {(960, 544, 121): 1}, [], host_ram=32 * GIB)
    assert p.memory.preset == 16 and p.gpus == []
    assert p.estimate.peak_vram_gb > 0 and any("GB GPU" in w or "host RAM" in w for w in p.warnings)
    s = make_settings()
    assert "no GPU seen" in " ".join(plan.make(s, BUCKETS, [], host_ram=32 * GIB).notes)


def test_steps_per_epoch_divide_by_the_gpus(make_settings):
    s = make_settings("--num_gpus", "4", "--num_repeats", "2", "--epochs", "3")
    p = plan.make(s, BUCKETS, gpus(80, 80, 80, 80), host_ram=256 * GIB)
    assert (p.items, p.steps_per_epoch, p.total_steps) == (10, 5, 15)  # ceil(10 x 2 / 4) per epoch
    # the host RAM of block swap counts once per GPU process
    one = presets.estimate(presets.resolve(16, {}), (960, 544, 25), 32, "adamw8bit", 1)
    four = presets.estimate(presets.resolve(16, {}), (960, 544, 25), 32, "adamw8bit", 4)
    assert four.host_ram_gb > 3 * one.host_ram_gb


def _dry(tmp_path, *flags):
    dataset_zip(tmp_path / "src", tmp_path / "data" / "d.zip", images={"a.png": "a", "b.png": "b"})
    (tmp_path / "empty.toml").write_text("")
    argv = [
        sys.executable,
        str(ROOT / "train_local.py"),
        "--config",
        str(tmp_path / "empty.toml"),
        "--data_dir",
        str(tmp_path / "data"),
        "--output_dir",
        str(tmp_path / "out"),
        "--models_dir",
        str(tmp_path / "m"),
        "--dry_run",
        "--resolution",
        "64x64",
        *flags,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_fewer_items_than_gpus_is_refused_before_anything(tmp_path):
    r = _dry(tmp_path, "--num_gpus", "3")
    assert r.returncode == 2 and "2 training item(s) per epoch for 3 GPU processes" in r.stderr, r.stderr


def test_multi_node_dry_run_prints_the_command_of_every_machine(tmp_path):
    r = _dry(tmp_path, "--num_gpus", "1", "--num_machines", "2", "--main_process_ip", "10.0.0.1", "--num_repeats", "2")
    assert r.returncode == 0, r.stderr
    assert "launch: 2 GPU processes (1 per machine x 2 machine(s))" in r.stdout
    lines = {n: next(x for x in r.stdout.splitlines() if x.strip().startswith(f"machine {n}:")) for n in (0, 1)}
    for n, line in lines.items():
        assert f"--machine_rank {n}" in line and "--main_process_ip 10.0.0.1" in line and "--num_machines 2" in line
        assert "--multi_gpu --num_processes 2" in line and "-m musubi_tuner.hv_1_5_train_network" in line
