"""Every piece of failure advice, followed, changes what failed: each backticked flag of a hint is added to the
command's settings, the plan is made again with this project's code (preflight, plan, memory estimates, sampling,
the musubi command), and the quantity the failure was about must change the right way. Advice that changes what
defines the LoRA says that a new run starts, and only that advice does (runs.differences)."""

from __future__ import annotations

import re
import shlex

import pytest
from mediafactory import dataset_zip
from test_hints import load

from hvlora.cache import caches
from hvlora.core import pipeline, runs
from hvlora.core.fsutil import GIB
from hvlora.data import preflight
from hvlora.stages import train
from hvlora.training import hints, plan, sampling
from hvlora.training.gpu import GpuInfo
from hvlora.training.musubi import OPTIMIZER_TYPES

DIAGNOSTIC = ("--check_data",)  # advice to look at something, not a change to the run
SAMPLING_LINE = (
    "INFO:musubi_tuner.training.trainer_base:generating sample images at step / サンプル画像生成 ステップ: 200"
)


def with_sampling(lines: list[str]) -> list[str]:
    first_error = next(i for i, ln in enumerate(lines) if ln.startswith("Traceback"))
    return [*lines[:first_error], SAMPLING_LINE, *lines[first_error:]]


class Setup:
    """Settings from flags, the data checked, the plan for simulated GPUs, and what a stage would run."""

    def __init__(self, root, make_settings, make_ctx, flags, gpu_gib, num_gpus=1):
        self.root, self.make_settings, self.make_ctx = root, make_settings, make_ctx
        self.gpus = [GpuInfo(i, "GPU", int(gpu_gib * GIB), f"GPU-{i}") for i in range(num_gpus)]
        self.zip = root / "data" / "d.zip"
        if not self.zip.exists():
            dataset_zip(
                root / "src",
                self.zip,
                images={"a.png": "a cat", "b.png": "a dog"},
                videos={"v.mp4": ("a walk", 30)},
            )
        self.flags = ["--input_zip", str(self.zip), *flags]
        self.s = make_settings(*self.flags)
        self.report = preflight.run(self.s, pipeline.media_store(self.s))
        self.plan = plan.make(self.s, self.report.buckets(), self.gpus, host_ram=128 * GIB)
        self.ctx = make_ctx(self.s)
        self.ctx.data, self.ctx.plan = self.report, self.plan
        self.ctx.dataset_toml = root / "dataset.toml"  # what the train command would read: only named here
        self.ctx.weights = {c: self.s.models_dir / c for c in ("dit", "vae", "text_encoder", "byt5", "image_encoder")}

    def following(self, advice: str) -> Setup | None:
        """The same command with the advice's flags added; None for advice without a flag."""
        flags = [tok for cmd in re.findall(r"`(--[^`]+)`", advice) for tok in shlex.split(cmd)]
        if not flags or flags[0] in DIAGNOSTIC:
            return None
        gpus = len(self.gpus)
        if "--num_gpus" in flags:
            gpus = int(flags[flags.index("--num_gpus") + 1])
        gib = self.gpus[0].total_bytes / GIB
        return Setup(self.root, self.make_settings, self.make_ctx, [*self.flags[2:], *flags], gib, gpus)

    def hint(self, log: list[str], stage: str, returncode: int = 1) -> hints.Hint:
        return hints.classify(log, returncode, pipeline._hint_context(self.ctx, stage))

    def identity(self) -> dict:
        c = caches.plan(self.s, self.report, self.plan.memory, None)
        return runs.identity(self.s, self.report, c, self.plan)

    def train_argv(self) -> list[str]:
        return list(train.command(self.ctx).argv)

    def cache_peak(self, stage: str) -> float:
        memory = self.s.family.memory_for(self.s.dit_variant)
        return memory.cache_estimates(self.plan.memory, self.plan.largest_bucket, task=self.s.task)[stage].peak_vram_gb


def arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# (case id, setup flags, GPU GiB, GPUs, log, stage, exit status)
CASES = [
    ("train OOM on 24 GB", ["--target_frames", "1,13,25"], 23.99, 1, "cuda_oom.log", "train", 1),
    ("train OOM on 80 GB", ["--vram", "80"], 79.6, 1, "cuda_oom.log", "train", 1),
    ("cache latents OOM", ["--vram", "32"], 31.5, 1, "cuda_oom.log", "cache_latents", 1),
    ("text encoder OOM", ["--vram", "32"], 31.5, 1, "cuda_oom.log", "cache_text_encoder_outputs", 1),
    ("host OOM, 2 GPUs", ["--num_gpus", "2", "--vram", "24"], 23.99, 2, "host_oom.log", "train", -9),
    ("shm", [], 79.6, 1, "shm_bus_error.log", "train", 1),
    ("NaN", [], 79.6, 1, "loss_nan.log", "train", -9),
    ("bitsandbytes", [], 79.6, 1, "bitsandbytes.log", "train", 1),
    ("NCCL, 2 GPUs", ["--num_gpus", "2"], 79.6, 2, "nccl.log", "train", 1),
]


def outcome(setup: Setup, case: str):
    """The quantity each failure was about (lower is what the advice is for)."""
    if case.startswith("train OOM"):
        return setup.plan.estimate.peak_vram_gb
    if case == "cache latents OOM":
        return setup.cache_peak("cache_latents")
    if case == "text encoder OOM":
        return setup.cache_peak("cache_text_encoder_outputs")
    if case.startswith("host OOM"):
        return setup.plan.estimate.host_ram_gb
    if case == "shm":
        return int(arg(setup.train_argv(), "--max_data_loader_n_workers"))
    if case == "NaN":
        return float(arg(setup.train_argv(), "--learning_rate"))
    if case == "bitsandbytes":
        return int(arg(setup.train_argv(), "--optimizer_type") == OPTIMIZER_TYPES["adamw8bit"])
    if case.startswith("NCCL"):
        return setup.plan.launch.num_processes
    raise AssertionError(case)


@pytest.mark.parametrize(("case", "flags", "gib", "gpus", "log", "stage", "rc"), CASES, ids=[c[0] for c in CASES])
def test_every_advice_followed_lowers_what_failed(
    tmp_path, make_settings, make_ctx, case, flags, gib, gpus, log, stage, rc
):
    setup = Setup(tmp_path, make_settings, make_ctx, flags, gib, gpus)
    h = setup.hint(load(log), stage, rc)
    before, ident = outcome(setup, case), setup.identity()
    followed = [(advice, setup.following(advice)) for advice in h.todo]
    followed = [(a, f) for a, f in followed if f is not None]
    assert followed, h.todo  # every kind here gives at least one flag to try
    for advice, after in followed:
        assert outcome(after, case) < before, (case, advice)
        new_run = bool(runs.differences(ident, after.identity()))
        assert new_run == (hints.NEW_RUN in advice), (case, advice)


def test_an_oom_while_sampling_is_followed_by_a_run_without_samples_that_continues(tmp_path, make_settings, make_ctx):
    """Samples on by default (preset above 24 GB), no sample flag to drop: the advice names the flag that turns them
    off, and with it the same run continues without --sample_prompts."""
    setup = Setup(tmp_path, make_settings, make_ctx, [], 79.6)
    assert sampling.enabled(setup.s, setup.plan) and "--sample_prompts" in setup.train_argv()
    h = setup.hint(with_sampling(load("cuda_oom.log")), "train")
    assert "while making samples" in h.what
    after = setup.following(h.todo[0])
    assert after is not None and not sampling.enabled(after.s, after.plan)
    assert "--sample_prompts" not in after.train_argv()
    assert runs.differences(setup.identity(), after.identity()) == []  # the same run continues
    # with every trigger set, every one of them is named
    steps = Setup(tmp_path, make_settings, make_ctx, ["--sample_every_n_steps", "5", "--sample_at_first"], 79.6)
    h = steps.hint(with_sampling(load("cuda_oom.log")), "train")
    after = steps.following(h.todo[0])
    assert not sampling.enabled(after.s, after.plan) and "--sample_prompts" not in after.train_argv()
