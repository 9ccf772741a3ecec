"""Time the data preflight on a generated dataset: N short clips and M images (PyAV), as a zip and as a folder.

    python benchmarks/preflight.py [--clips 500] [--images 500] [--frames 33] [--size 320x180] [--workdir DIR]

Prints the wall time and files/s of `hvlora.data.preflight.run` (listing, unpacking a zip, probing every file, captions,
clip planning): for a folder, a zip unpacked for the first time, and the same zip again (its media already in the
store, as on every later run). Goal (issue 3): 1,000 files in under 10 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from mediafactory import make_image, make_video  # noqa: E402

from hvlora.core.cli import load_settings  # noqa: E402
from hvlora.data import preflight  # noqa: E402


def generate(folder: Path, clips: int, images: int, frames: int, size: tuple[int, int]) -> None:
    """Write the dataset once (cached in `folder` between runs)."""
    marker = folder / f".done-{clips}-{images}-{frames}-{size[0]}x{size[1]}"
    if marker.exists():
        return
    for i in range(clips):
        sub = folder / f"clips{i % 10}"
        make_video(sub / f"clip{i:04d}.mp4", frames=frames, width=size[0], height=size[1], fps=(24, 30)[i % 2])
        (sub / f"clip{i:04d}.txt").write_text(f"clip number {i}, a person walking")
    for i in range(images):
        sub = folder / f"images{i % 10}"
        make_image(sub / f"img{i:04d}.{('png', 'jpg', 'webp')[i % 3]}", width=size[0], height=size[1])
        (sub / f"img{i:04d}.txt").write_text(f"image number {i}")
    marker.touch()


def zip_folder(folder: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                zf.write(p, p.relative_to(folder).as_posix())


def timed(flags: list[str], workdir: Path, store: Path | None = None) -> tuple[float, preflight.DataReport]:
    cfg = workdir / "empty.toml"
    cfg.write_text("")
    s = load_settings(
        [
            "--config",
            str(cfg),
            "--output_dir",
            str(workdir / "out"),
            "--resolution",
            "640x352",
            "--target_frames",
            "1,13,25",
            *flags,
        ]
    )
    store = store or Path(tempfile.mkdtemp(dir=workdir)) / "media"
    t0 = time.perf_counter()
    report = preflight.run(s, store)
    return time.perf_counter() - t0, report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=500)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hvlora-bench")
    a = ap.parse_args()
    size = tuple(int(x) for x in a.size.split("x"))
    data = a.workdir / "data"
    t0 = time.perf_counter()
    generate(data, a.clips, a.images, a.frames, size)
    print(
        f"dataset: {a.clips} clips ({a.frames} frames, {a.size}, 24/30 fps) + {a.images} images "
        f"in {data} ({time.perf_counter() - t0:.1f} s to prepare)"
    )
    zip_path = a.workdir / "bench.zip"
    if not zip_path.exists():
        zip_folder(data, zip_path)
    n = a.clips + a.images
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    store = Path(tempfile.mkdtemp(dir=a.workdir)) / "media"
    cases = (
        ("folder", ["--input_dir", str(data)], None),
        ("zip", ["--input_zip", str(zip_path)], store),  # unpacks every media file into the store
        ("zip again", ["--input_zip", str(zip_path)], store),  # a re-run: the store has them all
    )
    for label, flags, where in cases:
        wall, report = timed(flags, a.workdir, where)
        usable = len(report.usable)
        print(
            f"{label:9s}: {n} files in {wall:.2f} s = {n / wall:.0f} files/s "
            f"({usable} usable, {len(report.errors)} errors, {sum(report.buckets().values())} musubi items)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
