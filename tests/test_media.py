"""PyAV probing on real PyAV-made clips and images."""

from __future__ import annotations

import pytest
from mediafactory import make_image, make_video

from hvlora.data import media


@pytest.mark.parametrize("ext", [".mp4", ".mov", ".mkv", ".webm", ".avi"])
def test_video_containers(tmp_path, ext):
    info = media.probe(make_video(tmp_path / f"v{ext}", frames=7, width=64, height=48, fps=24), "video")
    assert (info.kind, info.width, info.height, info.frames) == ("video", 64, 48, 7)
    assert info.fps == pytest.approx(24.0)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".webp", ".bmp"])
def test_image_formats(tmp_path, ext):
    info = media.probe(make_image(tmp_path / f"i{ext}", width=80, height=48), "image")
    assert (info.kind, info.width, info.height, info.frames) == ("image", 80, 48, None)


def test_undecodable_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(media.MediaError, match="PyAV cannot decode it"):
        media.probe(bad, "video")


def test_truncated_video(tmp_path):
    v = make_video(tmp_path / "v.mp4", frames=20)
    v.write_bytes(v.read_bytes()[:600])
    with pytest.raises(media.MediaError):
        media.probe(v, "video")


@pytest.mark.parametrize(
    "name, kind",
    [("a.PNG", "image"), ("b.Mp4", "video"), ("c.txt", None), ("d.gif", None), ("e.jpeg", "image"), ("f.avi", "video")],
)
def test_kind_of(name, kind):
    assert media.kind_of(name) == kind
