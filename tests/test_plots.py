"""hvlora.training.plots: loss.png and samples.png are real files (matplotlib Agg, Pillow, PyAV), opened again with Pillow;
sample names are built the way musubi-tuner v0.3.4 builds them (trainer_base.py sample_image_inference)."""

from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from hvlora.training.plots import (
    MISSING_GREY,
    PLOT_SIZE_PX,
    contact_sheet,
    loss_plot,
    middle_frame,
    moving_average,
    parse_sample_name,
    sheet_size,
)
from hvlora.training.progress import MetricsLog

ORANGE = (255, 127, 14)  # matplotlib tab:orange: the lr line
GREEN = (44, 160, 44)  # tab:green: checkpoint markers
RED = (214, 39, 40)  # tab:red: resume markers


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def assert_not_blank(arr: np.ndarray, min_colours: int) -> None:
    assert arr.std() > 5
    packed = (arr[..., 0] << 16) | (arr[..., 1] << 8) | arr[..., 2]
    assert len(np.unique(packed)) >= min_colours


def has_colour(arr: np.ndarray, rgb: tuple[int, int, int], tol: int = 40, at_least: int = 20) -> bool:
    return int((np.abs(arr - np.array(rgb)).max(axis=-1) <= tol).sum()) >= at_least


def rows(n: int, start: int = 1, loss=True, avg=True, lr=True) -> list[dict]:
    out = []
    for i in range(n):
        step = start + i
        row = {"step": step}
        if loss:
            row["loss"] = 0.12 / (1 + 0.02 * step) + 0.02 * math.sin(step * 1.7)
        if avg:
            row["avg_loss"] = 0.12 / (1 + 0.02 * step)
        if lr:
            row["lr"] = 1e-4 * min(1.0, step / 50)
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------------------------
# loss plot


def test_loss_plot_full(tmp_path):
    path = loss_plot(rows(400), tmp_path / "loss.png", checkpoints=[100, 200, 300], resumes=[250], title="lora")
    assert path == tmp_path / "loss.png"
    arr = pixels(path)
    assert arr.shape[1::-1] == PLOT_SIZE_PX
    assert_not_blank(arr, 50)
    assert has_colour(arr, ORANGE) and has_colour(arr, GREEN) and has_colour(arr, RED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]  # no temporary file left


def test_loss_plot_without_lr_or_loss_and_with_nan(tmp_path):
    data = rows(60, loss=False, lr=False)
    data[10]["avg_loss"] = float("nan")
    data[11]["avg_loss"] = None
    arr = pixels(loss_plot(data, tmp_path / "a.png"))
    assert_not_blank(arr, 20)
    assert not has_colour(arr, ORANGE, at_least=1)  # no lr line
    only_loss = rows(80, avg=False)
    only_loss[5]["loss"] = float("nan")
    arr = pixels(loss_plot(only_loss, tmp_path / "b.png", checkpoints=[40]))
    assert_not_blank(arr, 20)
    assert has_colour(arr, GREEN)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_loss_plot_tiny(tmp_path, n):
    arr = pixels(loss_plot(rows(n), tmp_path / "loss.png"))
    assert arr.shape[1::-1] == PLOT_SIZE_PX
    assert_not_blank(arr, 10)


def test_loss_plot_from_metrics_jsonl_of_a_resumed_run(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl", wall_clock=lambda: 0.0)
    for r in rows(30):
        log.log(r["step"], loss=r["loss"], avg_loss=r["avg_loss"], lr=r["lr"], segment=0)
    for r in rows(20, start=21):
        log.log(r["step"], loss=float("nan"), avg_loss=r["avg_loss"], lr=r["lr"], segment=1)
    data = MetricsLog.read(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in data] == list(range(1, 41))
    path = loss_plot(data, tmp_path / "loss.png", checkpoints=[20, 40], resumes=[20])
    assert_not_blank(pixels(path), 30)


def test_loss_plot_replaces_an_old_plot(tmp_path):
    path = tmp_path / "loss.png"
    path.write_bytes(b"old")
    loss_plot(rows(5), path)
    with Image.open(path) as im:
        assert im.format == "PNG"


def test_moving_average_ignores_nan():
    nan = float("nan")
    out = moving_average([1.0, 3.0, nan, 5.0, nan, nan, nan], 2)
    assert out[:4] == [1.0, 2.0, 3.0, 5.0]
    assert out[4] == 5.0 and math.isnan(out[5]) and math.isnan(out[6])


# ---------------------------------------------------------------------------------------------------------------
# contact sheet


def solid_image(path: Path, rgb, size=(96, 64)) -> Path:
    Image.new("RGB", size, rgb).save(path)
    return path


def colour_video(path: Path, colours: list[tuple[int, int, int]], size=(64, 48)) -> Path:
    """One solid colour per frame (h264 in mp4, vp9 in webm), 24 fps."""
    codec = "libvpx-vp9" if path.suffix == ".webm" else "libx264"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = Fraction(1, 24)
        for rgb in colours:
            frame = np.zeros((size[1], size[0], 3), np.uint8)
            frame[:] = rgb
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def cell_centre(arr: np.ndarray, row: int, col: int, thumb: int) -> np.ndarray:
    w, h = sheet_size(row + 1, col + 1, thumb)
    return arr[h - 6 - thumb // 2, w - 6 - thumb // 2]


def close(rgb, expected, tol=30) -> bool:
    return max(abs(int(a) - b) for a, b in zip(rgb, expected)) <= tol


def test_sheet_size_formula():
    assert sheet_size(3, 2, 64) == (110 + 2 * 70 + 6, 32 + 3 * 70 + 6)
    assert sheet_size(1, 1, 256) == (378, 300)


@pytest.mark.parametrize("video_ext", [".mp4", ".webm"])
def test_contact_sheet_grid(tmp_path, video_ext):
    blue, red, green, yellow = (20, 40, 220), (220, 30, 30), (30, 200, 60), (230, 220, 20)
    samples = [
        (200, 0, colour_video(tmp_path / f"v{video_ext}", [blue] * 4 + [red] + [green] * 4)),  # middle: index 4
        (100, 1, solid_image(tmp_path / "b.jpg", yellow)),
        (100, 0, solid_image(tmp_path / "a.png", green, size=(64, 128))),
        (300, 0, solid_image(tmp_path / "c.png", blue)),
        (300, 3, tmp_path / "broken.mp4"),  # unreadable: grey
    ]
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    out = contact_sheet(samples, tmp_path / "out" / "samples.png", thumb=64)
    arr = pixels(out)
    assert arr.shape[1::-1] == sheet_size(3, 3, 64)  # steps 100/200/300 x prompts 0/1/3
    assert_not_blank(arr, 30)
    assert close(cell_centre(arr, 0, 0, 64), green)
    assert close(cell_centre(arr, 0, 1, 64), yellow)
    assert tuple(cell_centre(arr, 0, 2, 64)) == MISSING_GREY  # (100, 3) has no sample
    assert close(cell_centre(arr, 1, 0, 64), red)
    assert tuple(cell_centre(arr, 1, 1, 64)) == MISSING_GREY
    assert close(cell_centre(arr, 2, 0, 64), blue)
    assert tuple(cell_centre(arr, 2, 2, 64)) == MISSING_GREY  # the broken file
    label_column = arr[32:, :100]
    assert (label_column.min(axis=-1) > 200).sum() > 30  # "step N" in white
    label_row = arr[:30, 110:]
    assert (label_row.min(axis=-1) > 200).sum() > 30  # "prompt i" in white
    assert sorted(p.name for p in out.parent.iterdir()) == ["samples.png"]


def test_contact_sheet_default_thumb_and_empty(tmp_path):
    arr = pixels(
        contact_sheet([(5, 0, solid_image(tmp_path / "a.png", (200, 0, 0), size=(512, 288)))], tmp_path / "s.png")
    )
    assert arr.shape[1::-1] == sheet_size(1, 1, 256) == (378, 300)
    assert close(cell_centre(arr, 0, 0, 256), (200, 0, 0))
    empty = pixels(contact_sheet([], tmp_path / "e.png"))
    assert empty.shape[1::-1] == sheet_size(0, 0)


def test_middle_frame(tmp_path):
    video = colour_video(tmp_path / "v.mp4", [(0, 0, 255)] * 2 + [(255, 0, 0)] + [(0, 255, 0)] * 2)
    frame = middle_frame(video)
    assert frame.size == (64, 48)
    assert close(frame.getpixel((32, 24)), (255, 0, 0), tol=40)


# ---------------------------------------------------------------------------------------------------------------
# sample names


def musubi_sample_name(output_name, epoch, steps, prompt_idx, seed, frames, when=1764583200.0) -> str:
    """The name as trainer_base.py sample_image_inference + save_videos_grid / save_images_grid form it."""
    ts_str = time.strftime("%Y%m%d%H%M%S", time.localtime(when))
    num_suffix = f"e{epoch:06d}" if epoch is not None else f"{steps:06d}"
    seed_suffix = "" if seed is None else f"_{seed}"
    save_path = f"{'' if output_name is None else output_name + '_'}{num_suffix}_{prompt_idx:02d}_{ts_str}{seed_suffix}"
    return save_path + ".mp4" if frames > 1 else f"{save_path}_{0:03d}.png"


@pytest.mark.parametrize(
    ("output_name", "epoch", "steps", "idx", "seed", "frames", "expected"),
    [
        ("lora", 1, 100, 0, None, 25, ("epoch", 1, 0)),
        ("lora", None, 100, 3, 42, 25, ("step", 100, 3)),
        ("lora", None, 1234567, 12, None, 1, ("step", 1234567, 12)),
        ("my_lora_000100", 0, 0, 1, -1, 1, ("epoch", 0, 1)),
        ("lora-seg2", None, 400, 105, 7, 33, ("step", 400, 105)),
        (None, 2, 0, 0, 3, 1, ("epoch", 2, 0)),
    ],
)
def test_parse_sample_name(output_name, epoch, steps, idx, seed, frames, expected):
    name = musubi_sample_name(output_name, epoch, steps, idx, seed, frames)
    assert parse_sample_name(name, output_name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "lora-000001.safetensors",
        "other_000100_00_20261201101500.mp4",
        "lora_000100_00_2026120110150.mp4",  # 13-digit time
        "lora_000100_00_20261201101500.png",  # images end in _000.png
        "lora_00100_00_20261201101500.mp4",  # 5-digit step
        "lora_000100_0_20261201101500.mp4",
        "lora_x000100_00_20261201101500.mp4",
    ],
)
def test_parse_sample_name_rejects(name):
    assert parse_sample_name(name, "lora") is None


@given(
    st.text(alphabet="abcXYZ019_-.", min_size=1, max_size=12),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10**7)),
    st.integers(min_value=0, max_value=10**8),
    st.integers(min_value=0, max_value=300),
    st.one_of(st.none(), st.integers(min_value=-5, max_value=2**32)),
    st.sampled_from([1, 5, 25]),
)
def test_parse_sample_name_roundtrip(output_name, epoch, steps, idx, seed, frames):
    name = musubi_sample_name(output_name, epoch, steps, idx, seed, frames)
    expected = ("epoch", epoch, idx) if epoch is not None else ("step", steps, idx)
    assert parse_sample_name(name, output_name) == expected


def test_failed_write_leaves_no_temporary_file(tmp_path):
    (tmp_path / "samples.png").mkdir()  # os.replace cannot put a file over a folder
    with pytest.raises(OSError):
        contact_sheet([(1, 0, solid_image(tmp_path / "a.png", (1, 2, 3)))], tmp_path / "samples.png", thumb=32)
    with pytest.raises(OSError):
        loss_plot(rows(3), tmp_path / "samples.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "samples.png"]
