"""Prepare, on a machine with PyPI, what benchmarks/gpu_session.sh needs on a GPU machine with no network.

    python benchmarks/gpu_bundle.py BUNDLE --musubi_git DIR --rig WORKDIR

BUNDLE (git-ignored, e.g. .gpu/) then holds, in about 58 MB (a device call carries 64 MiB with the project):
- whl/: cp312 manylinux wheels of musubi-tuner v0.3.4's pins that the GPU machine's image lacks or has in other
  versions (GPU_WHEELS; installed there with `pip install --target`, ahead of the system's packages). bitsandbytes
  (43 MB) does not fit beside them: the session measures with --optimizer adamw.
- musubi.tar.gz: `git archive` of the pinned commit (src/, pyproject.toml), put on PYTHONPATH there.
- fakehub.tar.gz: the real-engine rig's fake hub (../shared/realrig/fakehub.py), its specs, the two tokenizers
  HV1.5 downloads and the precomputed sha256 ETags, so the whole pipeline downloads full-size random weights from
  127.0.0.1 there (nothing of the weights travels: the hub synthesizes them).
- data.zip: two images and a 1 s video made with PyAV, with captions; prompts.txt: one small sample prompt.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUSUBI_COMMIT = "30c658c4f4b0bf05038b3346eff9670259b10fc7"
# musubi-tuner v0.3.4's pins (its pyproject.toml) that the GPU image lacks or holds in other versions, and this
# project's own (requirements.txt). tokenizers: transformers 4.57.6 refuses the image's 0.23.2 (it wants <= 0.23.0).
# The image's safetensors 0.8, einops, opencv, sentencepiece, pillow, matplotlib, nvidia-ml-py, tensorboard and tqdm
# serve. ftfy/easydict are for Wan only.
GPU_WHEELS = (
    "accelerate==1.6.0",
    "av==14.0.1",
    "diffusers==0.32.1",
    "huggingface-hub==0.34.3",
    "tokenizers==0.22.1",
    "toml==0.10.2",
    "tomli-w==1.2.0",
    "transformers==4.57.6",
    "voluptuous==0.15.2",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# The tokenizer repos HV1.5's scripts download at run time (the rig's hubfiles/)
HUB_REPOS = ("Qwen/Qwen-Image", "google/byt5-small")
PROMPT = "ohwx, a red ball rolls across a wooden table --w 480 --h 272 --f 9 --s 10 --d 42\n"


def wheels(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    argv += ["--python-version", "3.12", "--implementation", "cp"]
    for p in PLATFORMS:
        argv += ["--platform", p]
    subprocess.run([*argv, *GPU_WHEELS], check=True)


def musubi(dest: Path, git_dir: Path) -> None:
    data = subprocess.run(
        ["git", "-C", str(git_dir), "archive", "--format=tar.gz", MUSUBI_COMMIT, "src", "pyproject.toml"],
        check=True,
        capture_output=True,
    ).stdout
    dest.write_bytes(data)


def fakehub(dest: Path, rig: Path, realrig: Path) -> None:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(realrig / "fakehub.py", "fakehub.py")
        tar.add(rig / "specs", "specs")
        tar.add(rig / "etags.json", "etags.json")
        for repo in HUB_REPOS:
            tar.add(rig / "hubfiles" / repo, f"hubfiles/{repo}")


def dataset(dest: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.mediafactory import make_image, make_video, make_zip

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        files = {
            "set/ball.mp4": make_video(t / "ball.mp4", frames=25, width=480, height=272),
            "set/ball.txt": b"a red ball rolls across a wooden table",
            "set/room.png": make_image(t / "room.png", width=640, height=360),
            "set/room.txt": b"a sunlit room with a wooden table",
            "set/square.jpg": make_image(t / "square.jpg", width=400, height=400),
            "set/square.txt": b"a square painting of a harbour",
        }
        make_zip(dest, files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--musubi_git", type=Path, required=True, help="a git dir of kohya-ss/musubi-tuner")
    ap.add_argument("--rig", type=Path, required=True, help="a set-up realrig WORKDIR (specs/, hubfiles/, etags)")
    ap.add_argument("--realrig", type=Path, default=ROOT.parent / "shared" / "realrig")
    a = ap.parse_args()
    shutil.rmtree(a.bundle / "whl", ignore_errors=True)
    a.bundle.mkdir(parents=True, exist_ok=True)
    wheels(a.bundle / "whl")
    musubi(a.bundle / "musubi.tar.gz", a.musubi_git)
    fakehub(a.bundle / "fakehub.tar.gz", a.rig, a.realrig)
    dataset(a.bundle / "data.zip")
    (a.bundle / "prompts.txt").write_text(PROMPT)
    total = sum(p.stat().st_size for p in a.bundle.rglob("*") if p.is_file())
    print(f"bundle: {a.bundle} {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
