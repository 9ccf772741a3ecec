"""Dockerfile and docker-compose.yml, checked with the real Compose parser and hadolint (no engine needed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hvlora import MUSUBI_COMMIT
from hvlora.core.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -r requirements-test.txt")
    return path


def compose_config(**env) -> dict:
    run_env = {k: v for k, v in os.environ.items() if k not in ("UID", "GID", "HF_TOKEN", "HF_ENDPOINT")}
    run_env.update(env)
    out = subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=run_env,
        cwd=ROOT,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def services():
    """The services that run the trainer (TensorBoard is checked on its own)."""
    return {k: v for k, v in compose_config()["services"].items() if k != "tensorboard"}


def test_services(services):
    assert set(services) == {"train", "test", "generate", "shell"}
    assert services["train"]["entrypoint"] == ["python", "/app/train_local.py"]
    assert services["test"]["entrypoint"] == ["python", "/app/train_local.py", "--epochs", "1"]
    assert services["generate"]["entrypoint"] == ["python", "/app/train_local.py", "--generate"]
    assert build_parser().parse_args(services["generate"]["entrypoint"][2:]).generate is True  # a real flag
    assert services["shell"]["entrypoint"] == ["bash"]
    for s in services.values():
        assert not s.get("command")  # extra flags of `docker compose run train --rank 16` are passed through
        assert ".zip" not in json.dumps(s)  # no zip name is hard-coded


def test_gpu_shm_user_init(services):
    for s in services.values():
        devices = s["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
        assert int(s["shm_size"]) >= 8 * 1024**3
        assert s["user"] == "1000:1000" and s["init"] is True


def test_user_follows_the_host(tmp_path):
    services = compose_config(UID="1234", GID="567")["services"]
    assert {s["user"] for s in services.values()} == {"1234:567"}


def test_tensorboard_service_serves_the_runs_on_localhost_only():
    tb = compose_config()["services"]["tensorboard"]
    assert tb["entrypoint"][:3] == ["tensorboard", "--logdir", "/app/output/runs"]
    assert [(p["host_ip"], int(p["published"]), p["target"]) for p in tb["ports"]] == [("127.0.0.1", 6006, 6006)]
    mounts = {v["target"]: v for v in tb["volumes"]}
    assert mounts["/app/output"]["source"] == str(ROOT / "output") and mounts["/app/output"].get("read_only")
    assert "deploy" not in tb  # no GPU for a viewer


def test_volumes_and_environment(services):
    for s in services.values():
        mounts = {v["target"]: v for v in s["volumes"]}
        assert mounts["/app/data"]["source"] == str(ROOT / "data") and mounts["/app/data"].get("read_only")
        assert mounts["/app/models"]["source"] == str(ROOT / "models")
        assert mounts["/app/output"]["source"] == str(ROOT / "output")
        assert s["environment"]["HF_HOME"].startswith("/app/models/")  # the HF cache lives under ./models
        assert "HF_TOKEN" in s["environment"]


def test_hf_token_is_passed_through_when_set():
    services = compose_config(HF_TOKEN="hf_dummy")["services"]
    assert services["train"]["environment"]["HF_TOKEN"] == "hf_dummy"


def test_hadolint_passes():
    r = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_pins():
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert re.fullmatch(r"nvidia/cuda:12\.8\.\d+-[a-z-]*ubuntu24\.04", base)  # Ubuntu 24.04: Python 3.12
    torch = re.search(r"ARG TORCH_VERSION=(\d+)\.(\d+)\.(\d+)", text)
    assert (int(torch.group(1)), int(torch.group(2))) >= (2, 9)
    assert "ARG TORCHVISION_VERSION=" in text and "download.pytorch.org/whl/cu128" in text
    assert f"ARG MUSUBI_COMMIT={MUSUBI_COMMIT}" in text
    assert "git+https://github.com/kohya-ss/musubi-tuner.git@${MUSUBI_COMMIT}" in text
    assert re.search(r"tensorboard==\S+", text) and re.search(r"bitsandbytes==\S+", text)
    assert "requirements.txt" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")


def test_requirements_data_pins_agree_with_requirements_txt():
    """requirements-data.txt (the data check and dry run without PyTorch) pins the same versions as
    requirements.txt, and none of the training stack."""

    def pins(name: str) -> dict[str, str]:
        lines = (ROOT / name).read_text().splitlines()
        return dict(ln.split("==") for ln in lines if "==" in ln and not ln.startswith("#"))

    data, full = pins("requirements-data.txt"), pins("requirements.txt")
    assert set(data) == {"av", "huggingface-hub", "pillow", "tomli-w"}
    assert {k: full[k] for k in data} == data
