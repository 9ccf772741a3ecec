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


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_presets

    return gpu_presets


def test_sitecustomize_times_steps_profiles_one_and_writes_stats(tmp_path):
    """The benchmark's sitecustomize in a real child process: every optimizer step timed (any optimizer: a global
    hook), step 3 profiled, the stats written at exit; a process that trains nothing writes none."""
    code = (
        "import torch\n"
        "m = torch.nn.Linear(8, 8); opt = torch.optim.AdamW(m.parameters())\n"
        "for _ in range(4):\n"
        "    m(torch.randn(2, 8)).sum().backward(); opt.step(); opt.zero_grad()\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "benchmarks" / "gpu_site"),
        HVBENCH_STATS=str(tmp_path / "stats.json"),
        HVBENCH_PROFILE=str(tmp_path / "profile.txt"),
        HVBENCH_PROFILE_STEP="3",
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert len(stats["step_times"]) == 4 and stats["step_times"] == sorted(stats["step_times"])
    assert stats["max_rss_bytes"] > 10 * 2**20 and stats["oom"] is False
    assert "aten::addmm" in (tmp_path / "profile.txt").read_text()
    (tmp_path / "stats.json").unlink()
    subprocess.run([sys.executable, "-c", "import torch"], env=env, check=True, timeout=120)
    assert not (tmp_path / "stats.json").exists()


def test_sitecustomize_runs_the_next_one_on_the_path(tmp_path):
    """Python loads one sitecustomize; ours runs the next (the CPU rig's shims, a system one) after itself."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['CHAINED'] = 'yes'\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks" / "gpu_site"), str(other)]))
    env.pop("HVBENCH_STATS", None)
    r = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('CHAINED'))"], env=env, capture_output=True, text=True
    )
    assert r.stdout.strip() == "yes", r.stderr


def test_median_step_skips_warmup_and_a_profiled_last_step():
    b = _bench()
    times = [0.0, 10.0, 12.0, 14.5, 16.5, 30.0]  # warm-up 10 s, then 2 / 2.5 / 2 s, a profiled 13.5 s
    assert b.median_step(times, warmup=1) == 2.25
    assert b.median_step(times, warmup=1, drop_last=True) == 2.0
    assert b.median_step(times[:2], warmup=1) is None


def test_step_flops_follow_the_dit_shape():
    """The linear part is 2 FLOPs per weight per token in each stream (memory.BLOCK_LINEAR_WEIGHTS counts both
    streams' weights), forward + input-gradient backward; attention grows with the square of the sequence."""
    b = _bench()
    f = b.step_flops(960, 544, 25, text_tokens=256)
    n = presets.tokens(960, 544, 25) + 256
    assert f["tokens"] == 14_280
    f_lin = 2 * n * presets.BLOCK_LINEAR_WEIGHTS / 2 * presets.NUM_BLOCKS
    f_attn = (f["model"] - 2 * f_lin) / 3.5
    assert f_attn == 4 * n * n * presets.HIDDEN * presets.NUM_BLOCKS
    assert f["hardware"] == f["model"] + f_lin + f_attn


def test_runs_and_caps():
    b = _bench()
    assert b.parse_runs("80:960x544x25,none:64x64x1") == [(80, (960, 544, 25)), (None, (64, 64, 1))]
    meta = {"gpu_total_bytes": 143_771 * 2**20}
    cap, card = b.cap_for(24, meta, context=500 * 2**20, enabled=True)
    assert cap == (24_564 - 500) * 2**20 and round(card, 2) == 23.99
    assert b.cap_for(24, meta, 0, enabled=False) == (0, None)
    assert b.cap_for(None, meta, 0, enabled=True) == (0, None)
    assert b.cap_for(80, {"gpu_total_bytes": 81_559 * 2**20}, 0, enabled=True) == (0, None)  # the card itself
