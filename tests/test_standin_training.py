"""This project's readers of what musubi writes (TensorBoard scalars, accelerate states, LoRA metadata, sample names,
progress bars, cache files, prompt files) and its LR-schedule arguments, on what the stand-in trainer writes where
it behaves like musubi v0.3.4 + accelerate 1.6.0 (facts in shared/musubi-training.md §1-2): resume, LR schedules,
saving, sampling, and the kill/NaN hooks the end-to-end tests rely on.

Every run is a subprocess: the cache scripts with `python -m`, the trainer under `accelerate launch` (CPU, one
process), each in its own session so that the kill hooks' SIGKILL to the process group stays inside it. The
dataset is three 64x64 images (one bucket, batch size 1: three optimizer steps per epoch). Runs that do not depend
on each other are started together (each is single-threaded; an accelerate launch costs seconds of imports), so
the module fixture `runs` does all trainer runs in two rounds and the tests only look at what they left.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import av
import pytest
import torch
from mediafactory import make_image
from safetensors.torch import load_file

from hvlora.core.errors import UserError
from hvlora.families.hunyuan_video_1_5.rules import SAMPLES as HV15_SAMPLES
from hvlora.training import (
    lorameta,
    musubi,  # the trainer flags every family shares (lr_schedule)
    plots,
    progress,
    prompts,
    resume,
)

STANDIN = Path(__file__).resolve().parent / "standin"
LAUNCH = [
    *("-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--num_machines", "1"),
    *("--mixed_precision", "no", "--dynamo_backend", "no", "-m", "musubi_tuner.hv_1_5_train_network"),
]
COSINE_ABSOLUTE = musubi.lr_schedule("cosine", 1, 6, 1)  # what the train stage passes in every segment
COSINE_BUILTIN = ["--lr_scheduler", "cosine", "--lr_warmup_steps", "1"]
LR = 1e-3
STATE_FILES = ["model.safetensors", "optimizer.bin", "random_states_0.pkl", "scheduler.bin"]


def _load_tfevents():
    """The stand-in's event reader under a private name (importing `musubi_tuner` would shadow a real install)."""
    spec = importlib.util.spec_from_file_location("standin_tfevents", STANDIN / "musubi_tuner" / "_tfevents.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tfevents = _load_tfevents()


Job = tuple[list[str], Path, dict]


def run_all(*jobs: Job) -> list[subprocess.CompletedProcess]:
    """Run `python ARGS` for each (args, cwd, extra env) at the same time, each with the stand-in first on PYTHONPATH
    and in a new session (the kill hooks SIGKILL their process group); wait for all."""
    started = []
    for args, cwd, env in jobs:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("STANDIN_")}
        full_env.update(PYTHONPATH=str(STANDIN), **env)
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=cwd, env=full_env, stdout=out, stderr=err, text=True, start_new_session=True
        )
        started.append((proc, out, err))
    results = []
    for proc, out, err in started:
        proc.wait(timeout=300)
        out.seek(0), err.seek(0)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read()))
        out.close(), err.close()
    return results


def make_dataset(root: Path, names=("a", "b", "c")) -> Path:
    """Images, captions, empty model files and a dataset config under root; returns the config."""
    for i, name in enumerate(names):
        make_image(root / "img" / f"{name}.png", 64, 64)
        (root / "img" / f"{name}.txt").write_text(f"picture {i}")
    for w in ("vae", "te", "byt5", "dit"):
        (root / f"{w}.safetensors").write_bytes(b"")
    toml = root / "dataset.toml"
    toml.write_text(
        f'[general]\nresolution = [64, 64]\ncaption_extension = ".txt"\nbatch_size = 1\n\n'
        f'[[datasets]]\nimage_directory = "{root / "img"}"\ncache_directory = "{root / "cache"}"\n'
    )
    return toml


def cache_latents(root: Path, *flags: str, env: dict | None = None) -> Job:
    args = ["--dataset_config", "dataset.toml", "--vae", "vae.safetensors", "--device", "cpu", *flags]
    return ["-m", "musubi_tuner.hv_1_5_cache_latents", *args], root, env or {}


def cache_te(root: Path, *flags: str, env: dict | None = None) -> Job:
    args = ["--dataset_config", "dataset.toml", "--text_encoder", "te.safetensors", "--byt5", "byt5.safetensors"]
    return ["-m", "musubi_tuner.hv_1_5_cache_text_encoder_outputs", *args, *flags], root, env or {}


def train(root: Path, out: str, *flags: str, env: dict | None = None) -> Job:
    args = [
        *("--dit", "dit.safetensors", "--dataset_config", "dataset.toml", "--sdpa"),
        *("--network_module", "networks.lora_hv_1_5", "--network_dim", "1", "--network_alpha", "1"),
        *("--optimizer_type", "adamw", "--learning_rate", str(LR), "--seed", "42"),
        *("--output_dir", out, "--output_name", "lora"),
        *flags,
    ]
    return [*LAUNCH, *args], root, env or {}


def with_samples(*flags: str) -> list[str]:
    weights = ["--vae", "vae.safetensors", "--text_encoder", "te.safetensors", "--byt5", "byt5.safetensors"]
    return ["--sample_prompts", "prompts.txt", *weights, *flags]


PROMPTS = """# sample prompts: one per line
a cat --w 72 --h 40 --d 7 --s 2

a dog walking --w 64 --h 48 --f 6 --s 3 --l 1.0
"""


@pytest.fixture(scope="module")
def runs(module_tmp) -> dict:
    """All trainer runs, on one cached dataset: {name: CompletedProcess} plus "root".
    Round 1: ref (6 steps, built-in cosine, step saves + states every 2) | run (the same schedule given as an
    absolute --lr_scheduler_type, killed while writing the step-4 state) | samples (constant LR; step saves every
    step with pruning, sampling, NaN from step 3, killed after step 4) | i2v (sample prompts without `--i`).
    Round 2: partial (resume from a copy of run's half-written step-4 state) | missing (resume from no folder) |
    resumed (run again from its step-2 state with --max_train_steps 4, same folder) | builtin (resume ref's step-2
    state with the built-in cosine and --max_train_steps 4)."""
    root = module_tmp
    make_dataset(root)
    (root / "prompts.txt").write_text(PROMPTS)
    for r in run_all(cache_latents(root), cache_te(root)):
        assert r.returncode == 0, r.stderr
    logs = ("--logging_dir", "run/logs")
    names = ["ref", "run", "samples", "i2v"]
    results = run_all(
        train(
            root,
            "ref",
            *("--max_train_steps", "6", *COSINE_BUILTIN, "--save_every_n_steps", "2", "--save_state"),
            *("--logging_dir", "ref/logs"),
        ),
        train(
            root,
            "run",
            *("--max_train_steps", "6", *COSINE_ABSOLUTE, "--save_every_n_steps", "2", "--save_state", *logs),
            *with_samples("--sample_at_first"),
            env={"STANDIN_KILL_IN_STATE_SAVE": "4"},
        ),
        train(
            root,
            "samples",
            *("--max_train_steps", "4", "--save_every_n_steps", "1", "--save_state"),
            *("--save_last_n_steps", "2", "--save_last_n_steps_state", "1", "--logging_dir", "samples/logs"),
            *with_samples("--sample_every_n_steps", "2", "--sample_every_n_epochs", "1", "--sample_at_first"),
            env={"STANDIN_NAN_FROM_STEP": "3", "STANDIN_KILL_AT_STEP": "4"},
        ),
        train(root, "i2v", "--task", "i2v", "--image_encoder", "vae.safetensors", *with_samples()),
    )
    shutil.copytree(root / "run" / "lora-step00000004-state", root / "partial-state")
    names += ["partial", "missing", "resumed", "builtin"]
    results += run_all(
        train(root, "partial", "--max_train_steps", "6", "--resume", "partial-state"),
        train(root, "missing", "--max_train_steps", "6", "--resume", "no-such-state"),
        train(
            root,
            "run",
            *("--max_train_steps", "4", *COSINE_ABSOLUTE, "--save_every_n_steps", "2", "--save_state", *logs),
            *with_samples("--sample_at_first", "--resume", "run/lora-step00000002-state"),
        ),
        train(
            root,
            "builtin",
            *("--max_train_steps", "4", *COSINE_BUILTIN, "--logging_dir", "builtin/logs"),
            *("--resume", "ref/lora-step00000002-state"),
        ),
    )
    return dict(zip(names, results)) | {"root": root}


def scalars(logs: Path) -> list[dict[str, list[tuple[int, float]]]]:
    """One {tag: [(step, value)]} per TensorBoard run folder, oldest first, as this project reads them
    (progress.read_tb_scalars: what becomes metrics.jsonl)."""
    out = []
    for run_dir in sorted(p for p in logs.iterdir() if p.is_dir()):
        rows, state = progress.read_tb_scalars(run_dir, (*progress.TB_TAGS, "loss/epoch"))
        state.close()
        tags: dict[str, list[tuple[int, float]]] = {}
        for row in sorted(rows, key=lambda r: r["step"]):
            for tag, value in row.items():
                if "/" in tag and value is not None:
                    tags.setdefault(tag, []).append((row["step"], value))
        out.append(tags)
    return out


def values(series: list[tuple[int, float]]) -> list[float]:
    return [v for _, v in series]


def steps(series: list[tuple[int, float]]) -> list[int]:
    return [s for s, _ in series]


def counters(path: Path) -> tuple[str, str]:
    """(ss_steps, ss_epoch) of a LoRA file, read as this project reads them (header only)."""
    md = lorameta.read_metadata(path)
    return md["ss_steps"], md["ss_epoch"]


def cosine(step: int, total: int, warmup: int = 1) -> float:
    """transformers' cosine-with-warmup factor after `step` scheduler steps (num_cycles 0.5)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def names(folder: Path, pattern: str = "*") -> list[str]:
    return sorted(p.name for p in folder.glob(pattern))


def test_uninterrupted_run_logs_the_real_schedule_and_saves_accelerate_states(runs):
    ref = runs["root"] / "ref"
    assert runs["ref"].returncode == 0, runs["ref"].stderr
    (logged,) = scalars(ref / "logs")
    assert (
        steps(logged["lr/unet"]) == steps(logged["loss/current"]) == steps(logged["loss/average"]) == [1, 2, 3, 4, 5, 6]
    )
    assert values(logged["lr/unet"]) == pytest.approx([LR * cosine(k, 6) for k in range(1, 7)], rel=1e-6)
    assert steps(logged["loss/epoch"]) == [1, 2]
    for step in (2, 4, 6):
        state = ref / f"lora-step{step:08d}-state"
        assert names(state) == STATE_FILES and resume.is_complete(state) == (True, "")
        # the scheduler's step count, and accelerate's micro-batches into the epoch (3 per epoch, 0 at its end)
        assert resume.read_state(state, 1) == (step, {2: 2, 4: 1, 6: 0}[step])
        assert torch.load(state / "optimizer.bin")["state"][0]["step"] == step
        _, header = lorameta.read_header(state / "model.safetensors")  # only the network (musubi's save hook)
        assert {"double_blocks.0.lora_down", "double_blocks.53.lora_up", "noise_seed"} <= set(header)
    assert names(ref, "*.safetensors") == [
        "lora-step00000002.safetensors",
        "lora-step00000004.safetensors",
        "lora-step00000006.safetensors",
        "lora.safetensors",
    ]
    # ss_epoch of a step save is the 0-based epoch index musubi passes; the final file gets the epoch count
    assert counters(ref / "lora-step00000002.safetensors") == ("2", "0")
    assert counters(ref / "lora-step00000004.safetensors") == ("4", "1")
    assert counters(ref / "lora.safetensors") == ("6", "2")
    # the real TensorBoard reads the same scalars from the stand-in's event file
    loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
    (events_file,) = (ref / "logs").rglob("events.out.tfevents.*")
    lr_events = [
        (e.step, v.tensor.float_val[0])
        for e in loader.EventFileLoader(str(events_file)).Load()
        for v in e.summary.value
        if v.tag == "lr/unet"
    ]
    assert lr_events == logged["lr/unet"]


def test_kill_in_state_save_leaves_the_step_state_half_written(runs):
    run, r = runs["root"] / "run", runs["run"]
    assert r.returncode == -9 and "standin: STANDIN_KILL_IN_STATE_SAVE=4" in r.stderr
    state = runs["root"] / "partial-state"  # copied before the resumed run overwrote the folder
    assert names(run / "lora-step00000002-state") == STATE_FILES
    assert names(state) == ["model.safetensors", "optimizer.bin"]
    assert lorameta.safetensors_problem(state / "model.safetensors") is None  # complete
    complete, why = resume.is_complete(state)  # what resume trusts: not this one
    assert not complete and why.startswith("optimizer.bin is not a whole torch file")
    ref_lrs = values(scalars(runs["root"] / "ref" / "logs")[0]["lr/unet"])
    first = scalars(run / "logs")[0]
    # the absolute schedule logs what the built-in one logs uninterrupted; step 4 died before its log
    assert steps(first["lr/unet"]) == [1, 2, 3] and values(first["lr/unet"]) == pytest.approx(ref_lrs[:3], rel=1e-6)


def test_resume_from_an_incomplete_or_missing_state_fails_as_accelerate_load_state(runs):
    partial, missing = runs["partial"], runs["missing"]
    assert partial.returncode != 0 and "resume training from local state: partial-state" in partial.stderr
    # accelerate loads model.safetensors, then torch.load of the cut optimizer.bin raises
    assert "optimizer_state = load(input_optimizer_file" in partial.stderr
    assert re.search(r"^(RuntimeError|OSError): ", partial.stderr, re.M)
    assert missing.returncode != 0
    assert "ValueError: Tried to find no-such-state but folder does not exist" in missing.stderr
    assert not (runs["root"] / "partial").exists() and not (runs["root"] / "missing").exists()


def test_resume_restarts_the_counters_and_overwrites_same_named_files(runs):
    run, r = runs["root"] / "run", runs["resumed"]
    assert r.returncode == 0, r.stderr
    assert "  total optimization steps / 学習ステップ数: 4" in r.stdout and "epoch 1/2" in r.stdout
    assert names(run, "*.safetensors") == [
        "lora-step00000002.safetensors",
        "lora-step00000004.safetensors",
        "lora.safetensors",
    ]
    # local counters in names and metadata: the step-2 file is now the resumed run's (absolute step 4)
    assert counters(run / "lora-step00000002.safetensors") == ("2", "0")
    assert counters(run / "lora-step00000004.safetensors") == ("4", "1")
    assert counters(run / "lora.safetensors") == ("4", "2")
    assert names(run / "lora-step00000004-state") == STATE_FILES  # the half-written state was overwritten
    # the scheduler's count is restored and keeps counting: the resumed segment's local names map to true steps
    seg = resume.Segment(0, run, 2, 2 / 3, None, 1, 3, 6, "t", output_name="lora")
    assert resume.true_step_of(run / "lora-step00000002-state", seg) == 4
    assert resume.true_step_of(run / "lora-state", seg) == 6
    assert torch.load(run / "lora-state" / "optimizer.bin")["state"][0]["step"] == 6
    # a fresh TensorBoard folder with steps from 1; with the absolute schedule the LR goes on where it stopped
    first, second = scalars(run / "logs")
    assert steps(second["lr/unet"]) == [1, 2, 3, 4] and steps(second["loss/epoch"]) == [1, 2]
    ref_lrs = values(scalars(runs["root"] / "ref" / "logs")[0]["lr/unet"])
    assert values(second["lr/unet"]) == pytest.approx(ref_lrs[2:], rel=1e-6)
    # --sample_at_first samples again (epoch 0 in the name)
    firsts = names(run / "sample", "lora_e000000_*")
    assert len(firsts) == 4 and sum(n.endswith("_7_000.png") for n in firsts) == 2


def test_builtin_cosine_resumed_with_fewer_steps_climbs_back_up(runs):
    r = runs["builtin"]
    assert r.returncode == 0, r.stderr
    (logged,) = scalars(runs["root"] / "builtin" / "logs")
    lrs = values(logged["lr/unet"])
    ref_lrs = values(scalars(runs["root"] / "ref" / "logs")[0]["lr/unet"])
    # the lambda is rebuilt for 4 steps while last_epoch continues from 2: progress passes 1 and the LR rises again
    assert lrs == pytest.approx([LR * cosine(k, 4) for k in (3, 4, 5, 6)], rel=1e-6, abs=1e-12)
    assert lrs != pytest.approx(ref_lrs[2:], rel=1e-3) and lrs[1] < 1e-12 < lrs[2] < lrs[3]


def test_step_saves_pruning_sampling_nan_and_kill_after_a_step(runs):
    out, r = runs["root"] / "samples", runs["samples"]
    assert r.returncode == -9 and "standin: STANDIN_KILL_AT_STEP=4" in r.stderr
    # every step saved; --save_last_n_steps 2 keeps steps 2-4, --save_last_n_steps_state 1 keeps states 3-4;
    # killed after step 4 and its epoch end: no final file
    assert names(out, "lora*") == sorted(
        [
            "lora-step00000002.safetensors",
            "lora-step00000003.safetensors",
            "lora-step00000003-state",
            "lora-step00000004.safetensors",
            "lora-step00000004-state",
        ]
    )
    assert names(out / "lora-step00000004-state") == STATE_FILES
    assert counters(out / "lora-step00000003.safetensors") == ("3", "0")
    assert counters(out / "lora-step00000004.safetensors") == ("4", "1")
    # NaN from step 3: in the bar (the guard's progress sees 2 NaN steps by step 4), the log and the weights
    bar = progress.TrainProgress(4)
    bar.feed_lines(r.stderr.replace("\r", "\n").splitlines())
    assert bar.step == 4 and bar.nan_streak == 2 and not bar.nan_stop(3) and bar.nan_stop(2)
    (logged,) = scalars(out / "logs")
    current = dict(logged["loss/current"])
    assert math.isfinite(current[2]) and math.isnan(current[3]) and math.isnan(current[4])
    assert torch.isfinite(
        load_file(out / "lora-step00000002.safetensors")["lora_unet_double_blocks_0_img_attn_q.lora_up.weight"]
    ).all()
    assert torch.isnan(
        load_file(out / "lora-step00000003.safetensors")["lora_unet_double_blocks_0_img_attn_q.lora_up.weight"]
    ).all()
    # samples: at first (e000000), at steps 2 and 4, at epoch ends 1 and 2; step 4 ends epoch 2 and the step trigger
    # is ORed into the epoch-end check, so step 4 samples twice (000004 and e000002)
    files = names(out / "sample")
    parsed = sorted(plots.parse_sample_name(n, "lora") for n in files)  # how samples are named by true step
    assert parsed == sorted(
        (kind, num, prompt)
        for kind, num in (("epoch", 0), ("step", 2), ("epoch", 1), ("step", 4), ("epoch", 2))
        for prompt in (0, 1)
    )
    png = next(n for n in files if n.startswith("lora_000002_00_"))
    with av.open(str(out / "sample" / png)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (32, 64, 3) and frame.any()  # --w 72 --h 40: /8, then the latent's x16
    video = next(n for n in files if n.startswith("lora_e000001_01_"))
    with av.open(str(out / "sample" / video)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert (stream.width, stream.height, stream.average_rate) == (64, 48, 24)
    assert len(frames) == 5  # --f 6 -> 4k+1
    black = next(n for n in files if n.startswith("lora_e000002_00_"))
    with av.open(str(out / "sample" / black)) as c:
        assert not next(c.decode(video=0)).to_ndarray(format="rgb24").any()  # NaN weights decode to black
    assert r.stderr.count("generating sample images at step") == 5
    assert "| 2/2 [" in r.stderr and "| 3/3 [" in r.stderr  # the denoising bars, without a desc


def test_i2v_sampling_needs_an_image_on_every_prompt_and_the_check_says_so_first(runs):
    r = runs["i2v"]
    assert r.returncode != 0 and "AssertionError: image_path should be set for I2V training" in r.stderr
    assert "Encoding image to image encoder context" not in r.stderr
    # the same file, checked before stage 1: refused, naming the prompts without an image
    with pytest.raises(UserError, match=r"prompt 1: i2v samples need an image[\s\S]*prompt 2: i2v samples need"):
        prompts.check_file(runs["root"] / "prompts.txt", "i2v", HV15_SAMPLES)


def _load_optim():
    spec = importlib.util.spec_from_file_location("standin_optim", STANDIN / "musubi_tuner" / "_optim.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_our_schedule_arguments_give_musubis_scheduler_the_whole_runs_curve():
    """musubi.lr_schedule's --lr_scheduler_type/args (every segment, any number of processes) built into a scheduler
    as musubi builds it (the stand-in's get_lr_scheduler): the LR at each true step is transformers' curve over
    the whole run, although musubi steps the scheduler num_processes times per optimizer step."""
    optim = _load_optim()
    for name, fn in (("cosine", cosine), ("linear", lambda k, t, w=1: min(k / w, max(0.0, (t - k) / (t - w))))):
        for processes in (1, 2):
            argv = musubi.lr_schedule(name, 1, 6, processes)
            args = SimpleNamespace(
                lr_scheduler="constant", lr_scheduler_type=argv[1], lr_scheduler_args=argv[3:], max_train_steps=3,
                lr_warmup_steps=0, lr_decay_steps=0, lr_scheduler_num_cycles=1, lr_scheduler_power=1.0,
                lr_scheduler_timescale=None, lr_scheduler_min_lr_ratio=None,
            )  # fmt: skip
            opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            sched = optim.get_lr_scheduler(args, opt, processes)
            lrs = []
            for _ in range(6):
                opt.step()
                for _ in range(processes):  # accelerate's AcceleratedScheduler
                    sched.step()
                lrs.append(sched.get_last_lr()[0])
            assert lrs == pytest.approx([fn(k, 6) for k in range(1, 7)], abs=1e-12), (name, processes)


def test_lr_scheduler_precedence_warmup_and_processes_follow_musubi():
    optim = _load_optim()

    def scheduler(num_processes=1, **kw):
        args = SimpleNamespace(
            lr_scheduler="constant",
            lr_scheduler_type="",
            lr_scheduler_args=None,
            max_train_steps=10,
            lr_warmup_steps=0,
            lr_decay_steps=0,
            lr_scheduler_num_cycles=1,
            lr_scheduler_power=1.0,
            lr_scheduler_timescale=None,
            lr_scheduler_min_lr_ratio=None,
        )
        vars(args).update(kw)
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return optim.get_lr_scheduler(args, opt, num_processes)

    with pytest.raises(ValueError, match=r"CONSTANT does not require `num_warmup_steps`. Set None or 0.$"):
        scheduler(lr_warmup_steps=2)
    assert scheduler().state_dict()["lr_lambdas"] == [None]  # as transformers' get_constant_schedule
    # a ratio is of max_train_steps x num_processes: 0.3 x 20 = 6 warmup steps
    s = scheduler(num_processes=2, lr_scheduler="constant_with_warmup", lr_warmup_steps=0.3)
    assert s.state_dict()["lr_lambdas"] == [{}] and s.lr_lambdas[0](3) == pytest.approx(0.5)
    # --lr_scheduler_type wins over --lr_scheduler (and its warmup check); args are Python literals
    s = scheduler(
        lr_warmup_steps=2, lr_scheduler_type="CosineAnnealingLR", lr_scheduler_args=["T_max=4", "eta_min=0.5"]
    )
    assert isinstance(s, torch.optim.lr_scheduler.CosineAnnealingLR) and (s.T_max, s.eta_min) == (4, 0.5)
    name, _, opt = optim.get_optimizer(
        SimpleNamespace(optimizer_type="adamw8bit", optimizer_args=["percentile_clipping=90"], learning_rate=1e-4),
        [torch.nn.Parameter(torch.zeros(1))],
    )
    assert name == "bitsandbytes.optim.adamw.AdamW8bit" and isinstance(opt, torch.optim.AdamW)


def test_cache_kill_after_items_leaves_a_truncated_file_and_skip_existing_keeps_it(tmp_path):
    make_dataset(tmp_path)
    cache = tmp_path / "cache"
    lat, te = run_all(
        cache_latents(tmp_path, env={"STANDIN_KILL_AFTER_ITEMS": "1"}),
        cache_te(tmp_path, env={"STANDIN_KILL_AFTER_ITEMS": "2"}),
    )
    for r, n in ((lat, 1), (te, 2)):
        assert r.returncode == -9 and f"standin: STANDIN_KILL_AFTER_ITEMS={n}" in r.stderr

    def split(pattern):
        """Whole and cut files, as the cache store judges them before musubi's --skip_existing would keep them."""
        good, bad = [], []
        for p in sorted(cache.glob(pattern)):
            (bad if lorameta.safetensors_problem(p) else good).append(p)
        return good, bad

    (lat_good,), (lat_bad,) = split("*_hv15.safetensors")
    assert lat_bad.stat().st_size == lat_good.stat().st_size // 2
    te_good, (te_bad,) = split("*_hv15_te.safetensors")
    assert len(te_good) == 2
    truncated = lat_bad.read_bytes()
    lat, te = run_all(cache_latents(tmp_path, "--skip_existing"), cache_te(tmp_path))
    assert lat.returncode == 0 and te.returncode == 0, lat.stderr + te.stderr
    assert lat_bad.read_bytes() == truncated  # --skip_existing looks at names only, as musubi
    good, bad = split("*_hv15.safetensors")
    assert len(good) == 2 and bad == [lat_bad]
    assert split("*_hv15_te.safetensors") == (sorted(te_good + [te_bad]), [])  # rewritten: only its header is read
