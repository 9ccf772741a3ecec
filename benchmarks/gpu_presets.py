"""Measure s/step and peak VRAM of HV1.5 LoRA training per memory preset, on a CUDA machine with no network.

    python benchmarks/gpu_presets.py --workdir /tmp/hvbench [--presets none,24,32,48,80]
        [--buckets 960x544x1,960x544x13,960x544x25,848x480x61] [--runs 80:960x544x25,24:848x480x61,...]
        [--steps 6] [--warmup 2] [--dit FILE] [--optimizer adamw] [--no-cap] [--profile_preset 80]
        [--time_budget_s 300] [--out table.md] [--json results.json]

Needs musubi-tuner v0.3.4 installed (the container has it). Nothing is downloaded:
1. a full-size random-weight HV1.5 DiT is built on the spot from musubi's own model class
   (hunyuan_video_1_5_models.create_model on the meta device gives every tensor's name, shape and dtype; values are
   N(0, 0.02), drawn on the GPU), written once to WORKDIR/dit.safetensors (16.6 GB);
2. synthetic caches per bucket: a latent file and a text-encoder file as musubi's cache scripts name and shape them
   (contract §4), in a dataset block of their own;
3. per preset and bucket, our train stage's command (hvlora.families.hunyuan_video_1_5.musubi.train with the
   preset's memory plan) runs `--steps` steps; peak VRAM is NVML's peak of the GPU during the run
   (hvlora.training.gpu.PeakSampler; all processes on the GPU, so run it alone). On a GPU bigger than the preset's card, the run is capped to that card (benchmarks/gpu_site/sitecustomize.py:
   the trainer's CUDA allocator gets the card's memory less the CUDA context this GPU needs, measured first), so an
   "out of memory" is the card's; s/step is the median of the step times after `--warmup` (the sitecustomize times
   every optimizer step after a CUDA synchronize); it also records torch's max_memory_allocated and the trainer's
   peak RSS, and the FLOPs of a step (step_flops) against the GPU's peak;
4. `--profile_preset P`: the last step of P's first run is profiled (torch.profiler, key_averages by CUDA time).
It prints a Markdown table (and writes it to --out) that README's "Memory" section takes, with the GPU's name, and
the raw results as JSON (--json: GPU, driver, torch, date, shapes, settings, per run).
`--time_budget_s`: no run starts with less than `--min_run_s` of the budget left (a device lease is short).
`--dry` runs steps 2 and 3 without a GPU and without musubi (tiny caches, commands printed, nothing started): the
CI checks the script that way.

Plan the time: each run loads the DiT (about 20-40 s from the page cache) and trains --steps steps; 5 presets x 4
buckets is 20 runs. Pick subsets with --presets and --buckets to fit the time you have.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hvlora.core.cli import load_settings  # noqa: E402
from hvlora.core.runner import run_logged  # noqa: E402
from hvlora.data.datasetconfig import write as write_toml  # noqa: E402
from hvlora.families.hunyuan_video_1_5 import memory as presets  # noqa: E402
from hvlora.families.hunyuan_video_1_5 import musubi  # noqa: E402
from hvlora.families.hunyuan_video_1_5.dit import HIDDEN, NUM_BLOCKS  # noqa: E402
from hvlora.training import gpu  # noqa: E402
from hvlora.training.plan import Launch  # noqa: E402
from hvlora.training.presets import CARD_MIB  # noqa: E402

LATENT_CHANNELS, VL_DIM, BYT5_DIM, TEXT_TOKENS = 32, 3584, 1472, 256
DEFAULT_BUCKETS = "960x544x1,960x544x13,960x544x25,848x480x61"
SITE = Path(__file__).resolve().parent / "gpu_site"
MIB = 2**20
# bf16 dense matrix peak measured on the H200 of the device machine (8192^3 matmul, ~790 TFLOP/s; the datasheet says
# 989): the ceiling the achieved rate is compared with. Another GPU: --peak_tflops.
H200_BF16_TFLOPS = 790.0


def parse_bucket(text: str) -> tuple[int, int, int]:
    w, h, f = (int(x) for x in text.lower().split("x"))
    return w, h, f


def build_dit(path: Path, device: str = "cuda") -> Path:
    """A random-weight DiT with the tensors musubi's loader expects (its model class's state dict), bf16: biases 0,
    1-D weights (norm scales) 1, the rest N(0, 0.02). Written one tensor at a time (the file is 16.6 GB; holding it
    all, plus the copy safetensors.save_file makes, would need twice that in RAM)."""
    from musubi_tuner.hunyuan_video_1_5.hunyuan_video_1_5_models import create_model

    if path.is_file():
        return path
    shapes = {name: tuple(t.shape) for name, t in create_model("t2v", "torch", False, None).state_dict().items()}
    write_streaming(path, shapes, lambda name, shape: _random(name, shape, device))
    return path


def _random(name: str, shape: tuple[int, ...], device: str):
    import torch

    t = torch.empty(shape, dtype=torch.bfloat16, device=device)
    if name.endswith("bias"):
        return t.zero_()
    if len(shape) == 1:
        return t.fill_(1.0)
    return t.normal_(0.0, 0.02)


def write_streaming(path: Path, shapes: dict[str, tuple[int, ...]], make) -> None:
    """A bf16 safetensors file (header: names, shapes, offsets; then the data in header order) written tensor by
    tensor: `make(name, shape)` returns each tensor when its turn comes. The format: huggingface/safetensors'
    spec (8-byte little-endian header size, JSON header, aligned data)."""
    names = sorted(shapes)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name in names:
        n = 2 * math.prod(shapes[name])
        header[name] = {"dtype": "BF16", "shape": list(shapes[name]), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    import torch

    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for name in names:
            f.write(make(name, shapes[name]).contiguous().cpu().view(torch.uint8).numpy().tobytes())
    os.replace(tmp, path)


def write_caches(folder: Path, bucket: tuple[int, int, int], items: int = 2) -> Path:
    """`items` latent + text-encoder cache pairs for one bucket, named and shaped as musubi writes them; returns the
    dataset's cache folder."""
    import torch
    from safetensors.torch import save_file

    w, h, f = bucket
    cache = folder / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (folder / "media").mkdir(exist_ok=True)
    lf, lh, lw = (f - 1) // 4 + 1, h // 16, w // 16
    meta = {"architecture": "hunyuan_video_1_5", "width": str(w), "height": str(h), "format_version": "1.0.1"}
    for i in range(items):
        stem = f"item{i}"
        name = (
            f"{stem}_00000-{f:03d}_{w:04d}x{h:04d}_hv15.safetensors"
            if f > 1
            else f"{stem}_{w:04d}x{h:04d}_hv15.safetensors"
        )
        lat = {f"latents_{lf}x{lh}x{lw}_bfloat16": torch.randn(LATENT_CHANNELS, lf, lh, lw).to(torch.bfloat16)}
        save_file(lat, str(cache / name), metadata=meta | ({"frame_count": str(f)} if f > 1 else {}))
        te = {
            "varlen_vl_embed_bfloat16": torch.randn(TEXT_TOKENS, VL_DIM).to(torch.bfloat16),
            "varlen_byt5_embed_float32": torch.zeros(0, BYT5_DIM),
        }
        save_file(
            te,
            str(cache / f"{stem}_hv15_te.safetensors"),
            metadata={"architecture": "hunyuan_video_1_5", "caption1": f"item {i}", "format_version": "1.0.1"},
        )
    return cache


def dataset_config(folder: Path, bucket: tuple[int, int, int]) -> Path:
    w, h, f = bucket
    kind = "video_directory" if f > 1 else "image_directory"
    table = {
        kind: str(folder / "media"),
        "cache_directory": str(folder / "cache"),
        "resolution": [w, h],
        "enable_bucket": True,
        "bucket_no_upscale": False,
        "caption_extension": ".txt",
        "batch_size": 1,
        "num_repeats": 1,
    }
    if f > 1:
        table["target_frames"] = [f]
        table["frame_extraction"] = "head"
    path = folder / "dataset.toml"
    write_toml(path, [table])
    return path


def step_flops(width: int, height: int, frames: int, text_tokens: int = TEXT_TOKENS) -> dict[str, float]:
    """FLOPs of one LoRA training step of the HV1.5 DiT at batch 1 (a multiply-add = 2 FLOPs).

    Forward, per block (54 MMDoubleStreamBlocks, hidden 2048; musubi hunyuan_video_1_5_modules.py), with N_img image
    tokens and N_txt text tokens, each stream through its own 7 Linears (memory.STREAM_LINEARS: W = 75.5 M weights):
        F_lin  = 2 * (N_img + N_txt) * W
        F_attn = 4 * (N_img + N_txt)^2 * hidden      (QK^T and AV over the joint sequence; no mask at batch 1)
    The embedders, token refiner and final layer are < 2% and left out.
    Backward of a LoRA step: the frozen base needs only the input gradients (dX = dY W^T: 1x F_lin; no weight
    gradients; the rank-r LoRA matmuls are < 1% at r 32), attention backward 2.5x its forward (FlashAttention-2,
    Dao 2023, §3: 5 matmuls against 2). Gradient checkpointing runs each block's forward again before its backward.
        model FLOPs    = F_lin * (1 + 1) + F_attn * (1 + 2.5)            (fwd + bwd: the "MFU" convention,
                                                                           Chowdhery et al. 2022, PaLM, appendix B)
        hardware FLOPs = model FLOPs + F_lin + F_attn                    (+ the recompute: Korthikanti et al. 2022)
    Returns {"tokens", "model", "hardware"} (FLOPs per step)."""
    n_img = presets.tokens(width, height, frames)
    n = n_img + text_tokens
    w = sum(i * o for _, i, o in presets.STREAM_LINEARS)
    f_lin = NUM_BLOCKS * 2 * n * w
    f_attn = NUM_BLOCKS * 4 * n * n * HIDDEN
    model = 2 * f_lin + 3.5 * f_attn
    return {"tokens": n_img, "model": float(model), "hardware": float(model + f_lin + f_attn)}


def context_bytes() -> int:
    """GPU memory a CUDA process holds outside PyTorch's allocator (context, cuBLAS workspace): NVML's used memory
    after one bf16 matmul, less the allocator's reserved bytes and the memory used before. Measured in a child
    process so that this one never holds a context."""
    code = (
        "import pynvml, torch, json\n"
        "pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)\n"
        "before = pynvml.nvmlDeviceGetMemoryInfo(h).used\n"
        "a = torch.randn(4096, 4096, device='cuda', dtype=torch.bfloat16); (a @ a).sum().item()\n"
        "torch.cuda.synchronize()\n"
        "print(json.dumps(pynvml.nvmlDeviceGetMemoryInfo(h).used - before - torch.cuda.memory_reserved()))\n"
    )
    import subprocess

    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def command(
    workdir: Path,
    dit: Path,
    config: Path,
    preset: int | None,
    steps: int,
    optimizer: str = "adamw8bit",
    device: str = "cuda",
) -> musubi.Command:
    """Our train stage's command for this preset (the memory plan a --vram preset resolves to)."""
    s = load_settings(
        [
            "--config",
            str(workdir / "empty.toml"),
            "--output_dir",
            str(workdir / "out"),
            "--rank",
            "32",
            "--optimizer",
            optimizer,
            "--max_train_steps",
            str(steps),
            "--save_every_n_steps",
            "0",
            "--save_every_n_epochs",
            "0",
            "--max_data_loader_n_workers",
            "2",
            "--device",
            device,
        ]
    )
    weights = {"dit": dit}
    out = workdir / "runs" / f"{preset or 'none'}-{config.parent.name}"
    seg = musubi.TrainSegment(out, out / "tb", max_train_steps=steps, total_steps=steps)
    return musubi.train(s, config, weights, seg, presets.resolve(preset, {}), Launch(1, 1))


def measure(
    cmd: musubi.Command, log: Path, warmup: int, steps: int, cap_bytes: int = 0, profile: Path | None = None
) -> dict:
    """Run one training command of `steps` steps (capped to cap_bytes of CUDA allocator memory when > 0): its median
    s/step after `warmup` steps, the GPU's NVML peak during the run, the trainer's torch peaks and RSS, and whether it
    ran out of memory. profile: write a profile of the last step there (that step is left out of the median)."""
    stats_path = log.with_suffix(".stats.json")
    stats_path.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = bench_env(stats_path, cap_bytes, profile, steps)
    sampler = gpu.PeakSampler([0], interval_s=0.2).start()
    t0 = time.monotonic()
    error = None
    try:
        with open(os.devnull, "wb") as quiet:  # musubi's output goes to the log only
            run_logged(cmd.executable(), stage="bench", log_path=log, env=env, console=quiet)
    except Exception as e:  # noqa: BLE001 - an OOM is a result here
        error = str(e)[:500]
    finally:
        sampler.stop()
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    peak = max(sampler.peak_bytes.values()) if sampler.peak_bytes else None
    return {
        "s_per_step": median_step(stats.get("step_times", []), warmup, drop_last=profile is not None),
        "steps_done": len(stats.get("step_times", [])),
        "peak_gib": _gib(peak),
        "torch_max_allocated_gib": _gib(stats.get("max_memory_allocated")),
        "torch_max_reserved_gib": _gib(stats.get("max_memory_reserved")),
        "host_rss_gib": _gib(stats.get("max_rss_bytes")),
        "oom": stats.get("oom", False) or _log_says_oom(log),
        "wall_s": time.monotonic() - t0,
        "error": error,
    }


def bench_env(stats: Path, cap_bytes: int, profile: Path | None, profile_step: int) -> dict[str, str]:
    """The trainer's environment: gpu_site first on PYTHONPATH and the variables its sitecustomize reads."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HVBENCH_STATS=str(stats))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    if cap_bytes:
        env["HVBENCH_CAP_BYTES"] = str(cap_bytes)
    if profile is not None:
        env.update(HVBENCH_PROFILE=str(profile), HVBENCH_PROFILE_STEP=str(profile_step))
    return env


def median_step(step_times: list[float], warmup: int, drop_last: bool = False) -> float | None:
    """Median of the intervals between optimizer steps (s) after the first `warmup` steps, without the last one when
    drop_last (a profiled step). None with fewer than 2 timed steps after warm-up."""
    timed = step_times[warmup : len(step_times) - 1 if drop_last else None]
    gaps = [b - a for a, b in zip(timed, timed[1:])]
    return statistics.median(gaps) if gaps else None


def _log_says_oom(log: Path) -> bool:
    text = log.read_text(errors="replace") if log.is_file() else ""
    return "OutOfMemoryError" in text or "CUDA out of memory" in text


def _gib(value: int | None) -> float | None:
    return value / 2**30 if value else None


def table(rows: list[dict], meta: dict) -> str:
    """The Markdown table README takes: per run the card it was capped to, s/step, the peaks, and whether it fits."""
    out = [
        f"Measured on {meta['gpu']}, {meta['date']}, rank 32, {meta['optimizer']}, batch 1, musubi-tuner v0.3.4, "
        f"torch {meta['torch']}:",
        "",
        "| preset | capped to | bucket (WxHxF) | tokens | s/step | TFLOP/s (MFU) | peak VRAM (NVML) | torch max allocated "
        "| host RSS | fits |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        w, h, f = r["bucket"]
        speed = f"{r['s_per_step']:.2f}" if r["s_per_step"] else ("OOM" if r["oom"] else "-")
        rate = f"{r['model_tflops']:.0f} ({r['mfu']:.0%})" if r.get("model_tflops") else "-"
        cap = f"{r['card_gib']:.1f} GiB" if r.get("card_gib") else "no cap"
        fits = "out of memory" if r["oom"] else ("yes" if r["s_per_step"] else "error")
        out.append(
            f"| {r['preset'] or 'none'} | {cap} | {w}x{h}x{f} | {r['tokens']:,} | {speed} | {rate} "
            f"| {_fmt(r['peak_gib'])} | {_fmt(r['torch_max_allocated_gib'])} | {_fmt(r['host_rss_gib'])} | {fits} |"
        )
    return "\n".join(out) + "\n"


def _fmt(gib: float | None) -> str:
    return f"{gib:.1f} GiB" if gib else "-"


def parse_runs(text: str) -> list[tuple[int | None, tuple[int, int, int]]]:
    """'80:960x544x25,none:960x544x1' -> [(80, (960, 544, 25)), (None, (960, 544, 1))]."""
    out = []
    for item in text.split(","):
        preset, bucket = item.split(":")
        out.append((None if preset == "none" else int(preset), parse_bucket(bucket)))
    return out


def gpu_meta(optimizer: str) -> dict:
    """GPU name, total memory, driver (NVML), torch's version, the date: the header of the results."""
    gpus = gpu.detect_gpus()
    driver = None
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
    except Exception:  # noqa: BLE001 - no NVML: the results say so
        pass
    import torch

    return {
        "gpu": gpus[0].name if gpus else "an unknown GPU",
        "gpu_total_bytes": gpus[0].total_bytes if gpus else None,
        "driver": driver,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "optimizer": optimizer,
        "rank": 32,
        "musubi": "v0.3.4 (30c658c)",
    }


def cap_for(preset: int | None, meta: dict, context: int, enabled: bool) -> tuple[int, float | None]:
    """(allocator cap in bytes, the card's size in GiB) for a preset's card; (0, None) when not capped (no preset,
    --no-cap, or a GPU no bigger than the card)."""
    if not enabled or preset is None or not meta.get("gpu_total_bytes"):
        return 0, None
    card = CARD_MIB[preset] * MIB
    if card >= meta["gpu_total_bytes"]:
        return 0, None
    return card - context, card / 2**30


def add_rates(row: dict, peak_tflops: float) -> dict:
    """Tokens, FLOPs per step and the achieved TFLOP/s (model and hardware FLOPs) against peak_tflops."""
    flops = step_flops(*row["bucket"])
    row.update(tokens=flops["tokens"], model_flops=flops["model"], hardware_flops=flops["hardware"])
    if row["s_per_step"]:
        row["model_tflops"] = flops["model"] / row["s_per_step"] / 1e12
        row["hardware_tflops"] = flops["hardware"] / row["s_per_step"] / 1e12
        row["mfu"] = row["model_tflops"] / peak_tflops
        row["hfu"] = row["hardware_tflops"] / peak_tflops
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--presets", default="none,24,32,48,80")
    ap.add_argument("--buckets", default=DEFAULT_BUCKETS)
    ap.add_argument("--runs", help="PRESET:WxHxF,... in this order, instead of --presets x --buckets")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--optimizer", default="adamw8bit", choices=presets.OPTIMIZERS)
    ap.add_argument("--dit", type=Path, help="an HV1.5 t2v DiT file to use instead of building a random one")
    ap.add_argument("--cap", action=argparse.BooleanOptionalAction, default=True, help="cap to each preset's card")
    ap.add_argument("--profile_preset", help="profile the last step of this preset's first run (e.g. 80)")
    ap.add_argument("--time_budget_s", type=float, help="start no run once less than --min_run_s of it is left")
    ap.add_argument("--min_run_s", type=float, default=60.0)
    ap.add_argument("--peak_tflops", type=float, default=H200_BF16_TFLOPS)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path, help="write the raw results here (after every run)")
    ap.add_argument("--dry", action="store_true", help="no GPU, no musubi: build caches and commands, start nothing")
    ap.add_argument("--weights_device", default="cuda", help="where the random DiT weights are drawn (cpu to test)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: rehearse with tiny buckets")
    a = ap.parse_args()
    t0 = time.monotonic()
    a.workdir.mkdir(parents=True, exist_ok=True)
    (a.workdir / "empty.toml").write_text("")
    if a.runs:
        runs = parse_runs(a.runs)
    else:
        wanted = [None if p == "none" else int(p) for p in a.presets.split(",")]
        runs = [(p, parse_bucket(b)) for b in a.buckets.split(",") for p in wanted]
    if a.dry:
        dit = a.dit or a.workdir / "dit.safetensors"
    else:
        dit = a.dit or build_dit(a.workdir / "dit.safetensors", a.weights_device)
    meta = {} if a.dry else gpu_meta(a.optimizer)
    context = context_bytes() if (a.cap and not a.dry and meta.get("gpu_total_bytes")) else 0
    meta["cuda_context_bytes"] = context
    rows: list[dict] = []
    profiled = False
    for preset, bucket in runs:
        folder = a.workdir / "data" / "x".join(map(str, bucket))
        write_caches(folder, bucket)
        config = dataset_config(folder, bucket)
        cmd = command(a.workdir, dit, config, preset, a.steps, a.optimizer, a.device)
        if a.dry:
            print(json.dumps({"preset": preset, "bucket": bucket, "argv": cmd.executable()}))
            continue
        left = None if a.time_budget_s is None else a.time_budget_s - (time.monotonic() - t0)
        if left is not None and left < a.min_run_s:
            print(json.dumps({"preset": preset, "bucket": bucket, "skipped": f"{left:.0f} s of the budget left"}))
            continue
        cap, card_gib = cap_for(preset, meta, context, a.cap)
        name = f"{preset or 'none'}-{folder.name}"
        profile = None
        if a.profile_preset == str(preset or "none") and not profiled:
            profile, profiled = a.workdir / "logs" / f"{name}.profile.txt", True
        result = measure(cmd, a.workdir / "logs" / f"{name}.log", a.warmup, a.steps, cap, profile)
        row = add_rates({"preset": preset, "bucket": bucket, "card_gib": card_gib, **result}, a.peak_tflops)
        row["estimate_gib"] = presets.estimate(
            presets.resolve(preset, {}), bucket, 32, a.optimizer, text_tokens=TEXT_TOKENS
        ).peak_vram_gb
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.json:
            a.json.write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    if not a.dry:
        text = table(rows, meta)
        print(text)
        if a.out:
            a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
