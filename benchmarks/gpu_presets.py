"""Measure s/step and peak VRAM of HV1.5 LoRA training per memory preset, on a CUDA machine with no network.

    python benchmarks/gpu_presets.py --workdir /tmp/hvbench [--presets none,24,32,48,80]
        [--buckets 960x544x1,960x544x13,960x544x25,848x480x61] [--steps 6] [--warmup 2] [--out table.md]

Needs musubi-tuner v0.3.4 installed (the container has it). Nothing is downloaded:
1. a full-size random-weight HV1.5 DiT is built on the spot from musubi's own model class
   (hunyuan_video_1_5_models.create_model on the meta device gives every tensor's name, shape and dtype; values are
   N(0, 0.02), drawn on the GPU), written once to WORKDIR/dit.safetensors (16.6 GB);
2. synthetic caches per bucket: a latent file and a text-encoder file as musubi's cache scripts name and shape them
   (contract §4), in a dataset block of their own;
3. per preset and bucket, our train stage's command (hvlora.families.hunyuan_video_1_5.musubi.train with the preset's memory plan) runs
   `--steps` steps; s/step is tqdm's rate after `--warmup` steps (hvlora.training.progress), peak VRAM is NVML's peak of the
   GPU during the run (hvlora.training.gpu.PeakSampler; all processes on the GPU, so run it alone).
It prints a Markdown table (and writes it to --out) that README's "Memory" section takes, with the GPU's name.
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
from hvlora.training import gpu, progress  # noqa: E402
from hvlora.training.plan import Launch  # noqa: E402

LATENT_CHANNELS, VL_DIM, BYT5_DIM, TEXT_TOKENS = 32, 3584, 1472, 256
DEFAULT_BUCKETS = "960x544x1,960x544x13,960x544x25,848x480x61"


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


def command(workdir: Path, dit: Path, config: Path, preset: int | None, steps: int) -> musubi.Command:
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
            "adamw8bit",
            "--max_train_steps",
            str(steps),
            "--save_every_n_steps",
            "0",
            "--save_every_n_epochs",
            "0",
            "--max_data_loader_n_workers",
            "2",
        ]
    )
    weights = {"dit": dit}
    out = workdir / "runs" / f"{preset or 'none'}-{config.parent.name}"
    seg = musubi.TrainSegment(out, out / "tb", max_train_steps=steps, total_steps=steps)
    return musubi.train(s, config, weights, seg, presets.resolve(preset, {}), Launch(1, 1))


def measure(cmd: musubi.Command, log: Path, warmup: int) -> dict:
    """Run one training command; s/step after `warmup` steps and the GPU's peak memory during the run."""
    bar = progress.TrainProgress(total_steps=0)
    times: list[tuple[float, int]] = []

    class Console:
        def __init__(self):
            self.lines = progress.LineSplitter()

        def write(self, chunk: bytes) -> None:
            for line in self.lines.feed(chunk):
                if bar.feed_line(line) == "steps":
                    times.append((time.monotonic(), bar.local_step))

        def flush(self) -> None:
            pass

    sampler = gpu.PeakSampler([0], interval_s=0.2).start()
    t0 = time.monotonic()
    error = None
    try:
        run_logged(
            cmd.executable(), stage="bench", log_path=log, env=dict(os.environ, PYTHONUNBUFFERED="1"), console=Console()
        )
    except Exception as e:  # noqa: BLE001 - an OOM is a result here
        error = str(e)
    finally:
        sampler.stop()
    after = [(t, n) for t, n in times if n > warmup]
    s_per_step = (after[-1][0] - after[0][0]) / (after[-1][1] - after[0][1]) if len(after) > 1 else None
    peak = max(sampler.peak_bytes.values()) if sampler.peak_bytes else None
    return {
        "s_per_step": s_per_step,
        "peak_gib": peak / 2**30 if peak else None,
        "wall_s": time.monotonic() - t0,
        "error": error,
    }


def table(rows: list[dict], gpu_name: str) -> str:
    """The Markdown table README takes."""
    out = [
        f"Measured on {gpu_name}, {time.strftime('%Y-%m-%d')}, rank 32, adamw8bit, batch 1, musubi-tuner v0.3.4:",
        "",
        "| preset | bucket (WxHxF) | tokens | s/step | peak VRAM |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        w, h, f = r["bucket"]
        speed = f"{r['s_per_step']:.2f}" if r["s_per_step"] else ("OOM" if r["error"] else "-")
        peak = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] else "-"
        out.append(f"| {r['preset'] or 'none'} | {w}x{h}x{f} | {presets.tokens(w, h, f):,} | {speed} | {peak} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--presets", default="none,24,32,48,80")
    ap.add_argument("--buckets", default=DEFAULT_BUCKETS)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--dry", action="store_true", help="no GPU, no musubi: build caches and commands, start nothing")
    ap.add_argument("--weights_device", default="cuda", help="where the random DiT weights are drawn (cpu to test)")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    (a.workdir / "empty.toml").write_text("")
    wanted = [None if p == "none" else int(p) for p in a.presets.split(",")]
    buckets = [parse_bucket(b) for b in a.buckets.split(",")]
    dit = a.workdir / "dit.safetensors" if a.dry else build_dit(a.workdir / "dit.safetensors", a.weights_device)
    rows = []
    for bucket in buckets:
        folder = a.workdir / "data" / "x".join(map(str, bucket))
        write_caches(folder, bucket)
        config = dataset_config(folder, bucket)
        for preset in wanted:
            cmd = command(a.workdir, dit, config, preset, a.steps)
            if a.dry:
                print(json.dumps({"preset": preset, "bucket": bucket, "argv": cmd.executable()}))
                continue
            result = measure(cmd, a.workdir / "logs" / f"{preset or 'none'}-{folder.name}.log", a.warmup)
            rows.append({"preset": preset, "bucket": bucket, **result})
            print(json.dumps(rows[-1]), flush=True)
    if not a.dry:
        gpus = gpu.detect_gpus()
        text = table(rows, gpus[0].name if gpus else "an unknown GPU")
        print(text)
        if a.out:
            a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
