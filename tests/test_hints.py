"""The failure classifier on real log excerpts (tests/logs/*.log, each naming its source) and its context-dependent
advice: which flags it suggests for which settings."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hvlora.families.hunyuan_video_1_5 import FAMILY
from hvlora.training.hints import KINDS, Hint, HintContext, classify, format_hint
from hvlora.training.progress import NAN_STOP_MARK, TrainProgress, nan_stop_line

LOGS = Path(__file__).parent / "logs"


def load(name: str) -> list[str]:
    """A fixture's lines as printed, without its '# source' header lines."""
    text = (LOGS / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if not line.startswith("# source")]


def ctx(**kw) -> HintContext:
    return HintContext(**{"stage": "train", "family": FAMILY, **kw})


def todo_text(h: Hint) -> str:
    return "\n".join(h.todo)


CASES = [
    ("cuda_oom.log", 1, "cuda_oom"),
    ("cuda_oom_legacy.log", 1, "cuda_oom"),
    ("cuda_error_oom.log", 1, "cuda_oom"),
    ("cuda_oom_after_nccl_warn.log", 1, "cuda_oom"),
    ("host_oom.log", 1, "host_oom"),
    ("host_oom_multi_gpu.log", 1, "host_oom"),
    ("shm_bus_error.log", 1, "shm"),
    ("shm_no_space.log", 1, "shm"),  # "No space left on device" of /dev/shm: not a full disk
    ("disk_full.log", 1, "disk_full"),
    ("disk_full_safetensors.log", 1, "disk_full"),
    ("bitsandbytes.log", 1, "bitsandbytes"),
    ("bitsandbytes_cpu_build.log", 1, "bitsandbytes"),
    ("no_kernel.log", 1, "no_kernel"),
    ("no_kernel_capability_warning.log", 1, "no_kernel"),  # the warning alone: weak, but the only clue
    ("loss_nan.log", -9, "loss_nan"),  # the guard's stop must not read as the OOM killer
    ("nccl.log", 1, "nccl"),
    ("nccl_timeout.log", -6, "nccl"),
    ("negative_dataset_config.log", 1, None),
    ("negative_dataset_config.log", -9, None),  # a Python error of its own: a SIGKILL exit is not host OOM
]


@pytest.mark.parametrize(("name", "returncode", "kind"), CASES)
def test_real_logs_classify_as_their_kind(name, returncode, kind):
    h = classify(load(name), returncode, ctx())
    assert (h.kind if h else None) == kind
    if h:
        assert h.what and h.todo


def test_every_kind_has_a_real_fixture_and_every_fixture_a_source():
    assert {k for _, _, k in CASES if k} == set(KINDS)
    for path in LOGS.glob("*.log"):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# source: "), path.name
    assert {p.name for p in LOGS.glob("*.log")} == {n for n, _, _ in CASES}


# --- CUDA OOM: the next knob for the settings in use ---------------------------------------------------------------


def test_oom_on_24_preset_suggests_16_first():
    h = classify(load("cuda_oom.log"), 1, ctx(vram_preset=24))
    assert h.todo[0].startswith("`--vram 16`")
    assert "2.00 GiB more on a 23.55 GiB GPU" in h.what


def test_oom_preset_follows_the_gpu_size_in_the_message():
    # 48 on a GPU that reports 23.55 GiB: jump to the preset that fits, not just one step down
    assert classify(load("cuda_oom.log"), 1, ctx(vram_preset=48)).todo[0].startswith("`--vram 24`")
    assert classify(load("cuda_oom.log"), 1, ctx(vram_preset=None)).todo[0].startswith("`--vram 24`")
    # older torch's "(GPU 0; 15.90 GiB total capacity; ...)"
    assert classify(load("cuda_oom_legacy.log"), 1, ctx()).todo[0].startswith("`--vram 16`")


def test_oom_on_smallest_preset_goes_to_the_knobs():
    h = classify(load("cuda_oom.log"), 1, ctx(vram_preset=16))
    assert "--vram" not in todo_text(h)
    assert h.todo[0].startswith("`--fp8`")


def test_oom_fp8_only_when_off():
    assert "`--fp8`" in todo_text(classify(load("cuda_oom.log"), 1, ctx(fp8=False)))
    assert "--fp8" not in todo_text(classify(load("cuda_oom.log"), 1, ctx(fp8=True)))


@pytest.mark.parametrize(("now", "then"), [(0, 20), (20, 30), (25, 30), (30, 40), (40, 51), (50, 51)])
def test_oom_steps_blocks_to_swap_up(now, then):
    h = classify(load("cuda_oom.log"), 1, ctx(blocks_to_swap=now))
    assert f"`--blocks_to_swap {then}` (now {now})" in todo_text(h)


def test_oom_at_max_swap_suggests_no_more_swap():
    assert "--blocks_to_swap" not in todo_text(classify(load("cuda_oom.log"), 1, ctx(blocks_to_swap=51)))


def test_oom_resolution_and_frames():
    text = todo_text(classify(load("cuda_oom.log"), 1, ctx(resolution=(960, 544), target_frames=(1, 13, 25))))
    assert "`--resolution 800x448` (now 960x544" in text
    assert "`--target_frames 1,13` (now 1,13,25)" in text


@pytest.mark.parametrize("res", [(960, 544), (1280, 720), (544, 960), (1024, 1024), (720, 480)])
def test_oom_smaller_resolution_keeps_aspect_and_buckets(res):
    text = todo_text(classify(load("cuda_oom.log"), 1, ctx(resolution=res)))
    w, h = map(int, re.search(r"--resolution (\d+)x(\d+)", text).groups())
    assert w % 16 == 0 and h % 16 == 0
    assert 0.6 <= (w * h) / (res[0] * res[1]) <= 0.8
    assert abs(w / h - res[0] / res[1]) < 0.05


def test_oom_single_clip_length_is_shortened_and_one_frame_is_left_alone():
    assert "`--target_frames 13` (now 25)" in todo_text(classify(load("cuda_oom.log"), 1, ctx(target_frames=(25,))))
    assert "--target_frames" not in todo_text(classify(load("cuda_oom.log"), 1, ctx(target_frames=(1,))))


def test_oom_names_other_programs_on_the_gpu():
    # same message, but this process holds only 10.41 of 23.55 GiB with 1.12 free: ~12 GiB belong to others
    lines = [ln.replace("this process has 22.41 GiB", "this process has 10.41 GiB") for ln in load("cuda_oom.log")]
    h = classify(lines, 1, ctx())
    assert h.todo[0].startswith("other programs hold about 12.0 GiB")
    assert "other programs" not in todo_text(classify(load("cuda_oom.log"), 1, ctx()))


def test_oom_while_caching_latents():
    h = classify(load("cuda_oom.log"), 1, ctx(stage="cache_latents", vram_preset=24, vae_sample_size=256))
    assert h.todo[0].startswith("`--vae_sample_size 128 --vae_enable_patch_conv`") and "VAE" in h.todo[0]
    assert "--blocks_to_swap" not in todo_text(h)  # no DiT while caching
    default = classify(load("cuda_oom.log"), 1, ctx(stage="cache_latents"))  # musubi's 128 without the flag
    assert default.todo[0].startswith("`--vae_sample_size 64 --vae_enable_patch_conv`")
    smallest = classify(
        load("cuda_oom.log"), 1, ctx(stage="cache_latents", vae_sample_size=64, vae_enable_patch_conv=True)
    )
    assert "--vae" not in todo_text(smallest) and "--resolution" in todo_text(smallest)


def test_oom_while_caching_text_encoder_outputs():
    h = classify(load("cuda_oom.log"), 1, ctx(stage="cache_text_encoder_outputs", fp8=True, fp8_vl=False))
    assert h.todo[0].startswith("`--fp8_vl`")  # fp8_vl decides, not the DiT's fp8
    with_fp8 = classify(load("cuda_oom.log"), 1, ctx(stage="cache_text_encoder_outputs", fp8_vl=True))
    assert "--fp8" not in todo_text(with_fp8)


def test_oom_wins_over_a_later_nccl_error():
    lines = load("cuda_oom_after_nccl_warn.log") + load("nccl_timeout.log")
    assert classify(lines, 1, ctx(num_gpus=2)).kind == "cuda_oom"


# --- host RAM ------------------------------------------------------------------------------------------------------


def test_host_oom_lowers_swap_and_gpus():
    h = classify(load("host_oom_multi_gpu.log"), 1, ctx(blocks_to_swap=40, num_gpus=4))
    assert h.todo[0].startswith("`--blocks_to_swap 30` (now 40)") and "x4 GPU processes" in h.todo[0]
    assert "`--num_gpus 2` (now 4)" in todo_text(h)
    assert "out of RAM" in h.what


def test_host_oom_without_swap_or_gpus_to_drop():
    text = todo_text(classify(load("host_oom.log"), 1, ctx(blocks_to_swap=0, num_gpus=1)))
    assert "--blocks_to_swap" not in text and "--num_gpus" not in text
    assert "swap" in text


@pytest.mark.parametrize(("returncode", "kind"), [(-9, "host_oom"), (137, "host_oom"), (1, None), (None, None)])
def test_host_oom_from_the_exit_status_alone(returncode, kind):
    h = classify(
        ["INFO:musubi_tuner.hv_train_network:Load dataset config from /app/output/run/dataset.toml"], returncode, ctx()
    )
    assert (h.kind if h else None) == kind


# --- shared memory, NaN, disk --------------------------------------------------------------------------------------


def test_shm_advice_names_compose_and_workers():
    h = classify(load("shm_bus_error.log"), 1, ctx(max_data_loader_n_workers=2))
    assert 'shm_size: "16gb"' in h.todo[0] and "--shm-size 16g" in h.todo[0]
    assert "`--max_data_loader_n_workers 1` (now 2)" in todo_text(h)
    no_workers = classify(load("shm_bus_error.log"), 1, ctx(max_data_loader_n_workers=0))
    assert "--max_data_loader_n_workers" not in todo_text(no_workers)


def test_the_guards_stop_line_is_classified_with_its_step():
    """The NaN guard as it runs (progress fed musubi's bar lines with avr_loss=nan) writes a line that the classifier
    reads as a NaN stop at that step, also when a SIGKILL exit would otherwise read as the OOM killer."""
    p = TrainProgress(total_steps=10, step_offset=4)
    for n in range(1, 5):
        loss = "nan" if n >= 2 else "0.123"
        p.feed_line(f"steps:  {n * 10}%|##   | {n}/6 [00:0{n}<00:10,  2.00s/it, avr_loss={loss}]")
    assert p.nan_stop(3)
    line = nan_stop_line(3, p.step)
    h = classify(["some musubi output", line], -9, ctx())
    assert h.kind == "loss_nan" and "hvlora stopped the run at step 8" in h.what


def test_loss_nan_halves_the_learning_rate_and_says_the_step():
    h = classify(load("loss_nan.log"), -9, ctx(learning_rate=1e-4, fp8=False))
    assert h.todo[0].startswith("`--learning_rate 5e-05` (now 0.0001)")
    assert "hvlora stopped the run at step 3" in h.what
    assert "--fp8" not in todo_text(h)
    assert "without `--fp8`" in todo_text(classify(load("loss_nan.log"), -9, ctx(fp8=True)))


def test_loss_nan_from_musubis_progress_bar_alone():
    lines = [ln for ln in load("loss_nan.log") if NAN_STOP_MARK not in ln]
    h = classify(lines, 1, ctx())
    assert h.kind == "loss_nan" and h.what == "the training loss became NaN at step 1"


def disk_ctx(free: dict[str, int], **kw) -> HintContext:
    folders = {"output_dir": Path("/app/output"), "models_dir": Path("/app/models")}
    return ctx(folders=folders, free_bytes=lambda p: free[str(p)], **kw)


def test_disk_full_names_the_folder_with_least_room_and_what_a_checkpoint_needs():
    c = disk_ctx({"/app/output": 2_000_000_000, "/app/models": 50_000_000_000}, checkpoint_bytes=5_000_000_000)
    h = classify(load("disk_full.log"), 1, c)
    assert h.todo[0] == (
        "free space in /app/output (output_dir): 2.0 GB free now; one more checkpoint + training state needs about "
        "5.0 GB (free at least 3.0 GB more)"
    )
    assert h.todo[1] == "or put it on a bigger disk: `--output_dir /path/on/bigger/disk`"


def test_disk_full_prefers_the_folder_of_the_file_being_written():
    # musubi prints "saving checkpoint: <file>" (trainer_base.py) before writing it
    lines = ["saving checkpoint: /app/output/run1/lora-000003.safetensors", *load("disk_full_safetensors.log")]
    h = classify(lines, 1, disk_ctx({"/app/output": 9_000_000_000, "/app/models": 1_000_000_000}))
    assert h.todo[0].startswith("free space in /app/output (output_dir): 9.0 GB free now")
    assert "/app/output/run1/lora-000003.safetensors" in h.what


def test_disk_full_path_from_the_errno_message():
    lines = ["OSError: [Errno 28] No space left on device: '/app/models/hf/hub/blobs/3f2a.incomplete'"]
    h = classify(lines, 1, disk_ctx({"/app/output": 1_000_000_000, "/app/models": 300_000_000}, stage="download"))
    assert h.todo[0].startswith("free space in /app/models (models_dir): 300 MB free now")
    assert "--models_dir" in h.todo[1]


def test_disk_full_with_unknown_space_or_no_folders():
    def broken(_p):
        raise PermissionError("denied")

    lines = ["saving checkpoint: /app/output/lora.safetensors", *load("disk_full.log")]
    h = classify(lines, 1, ctx(folders={"output_dir": Path("/app/output")}, free_bytes=broken))
    assert "unknown free now" in h.todo[0]
    assert classify(load("disk_full.log"), 1, ctx()).todo[0].startswith("free disk space (`df -h`")


def test_default_free_bytes_measures_the_nearest_existing_folder(tmp_path, monkeypatch):
    asked = []
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: asked.append(Path(p)) or real(p))
    (tmp_path / "not").mkdir()
    free = ctx().free_bytes(tmp_path / "not" / "yet" / "there")
    assert asked == [tmp_path / "not"] and free > 0  # the deepest folder that exists, not the cwd or the root


# --- bitsandbytes, GPU architecture, NCCL --------------------------------------------------------------------------


def test_bitsandbytes_suggests_plain_adamw_only_for_the_8bit_optimizer():
    assert classify(load("bitsandbytes.log"), 1, ctx(optimizer="adamw8bit")).todo[0].startswith("`--optimizer adamw`")
    assert "--optimizer" not in todo_text(classify(load("bitsandbytes.log"), 1, ctx(optimizer="adamw")))


def test_bitsandbytes_import_warning_alone_does_not_claim_another_error():
    warning = load("bitsandbytes_cpu_build.log")[:2]  # printed at import, even when no 8-bit optimizer runs
    assert classify(warning + load("negative_dataset_config.log"), 1, ctx()) is None
    assert classify(warning + load("cuda_oom.log"), 1, ctx()).kind == "cuda_oom"


def test_no_kernel_names_the_gpu_and_the_fix_direction():
    h = classify(load("no_kernel.log"), 1, ctx())
    assert "NVIDIA RTX A6000, sm_86" in h.what and "torch 2.9.1" in h.what
    assert h.todo[0].startswith("this build stops at sm_70") and "TORCH_VERSION" in h.todo[0]
    assert "nvidia-smi" in h.todo[-1]


NO_KERNEL = load("no_kernel.log")[-1]  # "RuntimeError: CUDA error: no kernel image is available ..."


def test_no_kernel_on_a_gpu_older_than_the_build():
    pascal = [
        ln.replace("NVIDIA GB10", "NVIDIA GeForce GTX 1080").replace("12.1.", "6.1.")
        for ln in load("no_kernel_capability_warning.log")
    ]
    h = classify([*pascal, NO_KERNEL], 1, ctx())
    assert "NVIDIA GeForce GTX 1080, sm_61" in h.what
    assert h.todo[0].startswith("this build starts at sm_80") and "cu126" in h.todo[0]


def test_no_kernel_same_major_gpu_is_not_called_too_new():
    h = classify([*load("no_kernel_capability_warning.log"), NO_KERNEL], 1, ctx())
    assert "NVIDIA GB10, sm_121" in h.what
    assert "stops at" not in todo_text(h) and h.todo[0].startswith("rebuild the image")


def test_capability_warning_does_not_claim_another_error():
    assert classify(load("no_kernel_capability_warning.log") + load("negative_dataset_config.log"), 1, ctx()) is None


def test_nccl_advice():
    h = classify(load("nccl.log"), 1, ctx(num_gpus=2))
    assert h.todo[0].startswith("`--num_gpus 1`")
    assert "NCCL_P2P_DISABLE=1" in todo_text(h) and "NCCL_DEBUG=INFO" in todo_text(h)
    assert "--main_process_ip" in todo_text(h)
    assert "timed out" in classify(load("nccl_timeout.log"), -6, ctx()).what


def test_nccl_warn_counts_only_without_another_error():
    warn = [ln for ln in load("cuda_oom_after_nccl_warn.log") if "NCCL WARN" in ln]
    assert classify(warn + load("host_oom.log")[-1:], 1, ctx()).kind == "nccl"
    assert classify(warn + load("negative_dataset_config.log"), 1, ctx()) is None


def test_the_runners_command_echo_is_not_output():
    assert classify(["$ python x.py --output_dir '/data/No space left on device'"], 1, ctx()) is None


def test_format_hint():
    h = Hint("shm", "workers ran out of shared memory", ("raise shm_size", "`--max_data_loader_n_workers 1`"))
    assert format_hint(h) == (
        "what happened: workers ran out of shared memory\n"
        "what to do:\n"
        "  1. raise shm_size\n"
        "  2. `--max_data_loader_n_workers 1`"
    )
    assert format_hint(Hint("nccl", "x", ())) == "what happened: x"


def test_an_oom_while_sampling_says_so_and_how_to_continue():
    """musubi logs "generating sample images at step" before a sample; an OOM after it (no training step between)
    is a sampling OOM: the advice is to continue without samples or with smaller ones."""
    lines = load("cuda_oom.log")
    first_error = next(i for i, ln in enumerate(lines) if ln.startswith("Traceback"))
    sampling = (
        "INFO:musubi_tuner.training.trainer_base:generating sample images at step / サンプル画像生成 ステップ: 200"
    )
    h = classify([*lines[:first_error], sampling, *lines[first_error:]], 1, HintContext(stage="train", family=FAMILY))
    assert h.kind == "cuda_oom" and "while making samples" in h.what
    assert h.todo[0].startswith("`--sample_every_n_epochs 0`: no samples; the same command with it continues")
    plain = classify(lines, 1, HintContext(stage="train", family=FAMILY))
    assert "samples" not in plain.what
