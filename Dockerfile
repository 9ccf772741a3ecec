# HunyuanVideo 1.5 LoRA trainer: musubi-tuner v0.3.4 + this project, on CUDA 12.8 with Python 3.12.
# Build: docker compose build   Run: docker compose run train   (see README.md)
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONUTF8=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    HF_HOME=/app/models/hf \
    HF_HUB_DISABLE_TELEMETRY=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu 24.04's python3 is 3.12. git: pip installs musubi-tuner from its repository. libgl1/libglib2.0-0:
# musubi imports opencv-python (not the headless build), which needs them at import time.
# Not version-pinned: Ubuntu drops superseded versions from its archive, so pins would break later builds; the
# base image tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git ca-certificates libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# PyTorch first, from the CUDA 12.8 index (>= 2.9 for musubi's Muon optimizer); musubi-tuner does not pin torch.
ARG TORCH_VERSION=2.9.1
ARG TORCHVISION_VERSION=0.24.1
RUN pip install --index-url https://download.pytorch.org/whl/cu128 \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

# The engine, pinned to v0.3.4 by commit (engine updates bring regressions; users roll back to known commits).
ARG MUSUBI_COMMIT=30c658c4f4b0bf05038b3346eff9670259b10fc7
RUN pip install "musubi-tuner @ git+https://github.com/kohya-ss/musubi-tuner.git@${MUSUBI_COMMIT}" \
        tensorboard==2.21.0 bitsandbytes==0.50.2

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY train_local.py train.toml ./
COPY hvlora ./hvlora

# Ubuntu's image has user "ubuntu" with uid 1000; replace it by ours. Compose runs as the host's uid:gid anyway.
RUN (userdel --remove ubuntu 2>/dev/null || true) \
    && useradd --create-home --uid 1000 trainer \
    && mkdir -p /app/data /app/models /app/output \
    && chown trainer:trainer /app/data /app/models /app/output
USER 1000:1000

ENTRYPOINT ["python", "/app/train_local.py"]
