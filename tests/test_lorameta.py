"""LoRA metadata: header-only reads, whole-file checks, atomic rewrites with musubi's hashes recomputed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save, save_file

from hvlora.core import fsutil
from hvlora.training.lorameta import SafetensorsError, read_metadata, rewrite_metadata, safetensors_problem

REPO = Path(__file__).resolve().parents[1]


# An independent re-implementation of musubi-tuner v0.3.4 utils/model_utils.py (addnet_hash_safetensors,
# addnet_hash_legacy, precalculate_safetensors_hashes), written the way musubi writes it: over a BytesIO stream.
def addnet_hash_safetensors(b: BytesIO) -> str:
    h = hashlib.sha256()
    b.seek(0)
    n = int.from_bytes(b.read(8), "little")
    b.seek(n + 8)
    for chunk in iter(lambda: b.read(1024 * 1024), b""):
        h.update(chunk)
    return h.hexdigest()


def addnet_hash_legacy(b: BytesIO) -> str:
    m = hashlib.sha256()
    b.seek(0x100000)
    m.update(b.read(0x10000))
    return m.hexdigest()[0:8]


def precalculate_safetensors_hashes(tensors, metadata):
    metadata = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    b = BytesIO(save(tensors, metadata))
    return addnet_hash_safetensors(b), addnet_hash_legacy(b)


def musubi_like_lora(path: Path, steps: int = 500, epoch: int = 5) -> dict[str, torch.Tensor]:
    """A LoRA file as musubi's LoRANetwork.save_weights writes one: bf16 tensors over 1.1 MiB (so the legacy hash
    reads real bytes), ss_* + modelspec.* metadata, then the two sshs_* hashes, then save_file."""
    g = torch.Generator().manual_seed(1)
    tensors = {}
    for i in range(3):
        key = f"lora_unet_double_blocks_{i}_img_attn_q"
        tensors[f"{key}.lora_down.weight"] = torch.randn(32, 3072, generator=g).to(torch.bfloat16)
        tensors[f"{key}.lora_up.weight"] = torch.randn(3072, 32, generator=g).to(torch.bfloat16)
        tensors[f"{key}.alpha"] = torch.tensor(32.0).to(torch.bfloat16)
    metadata = {
        "ss_session_id": "123456",
        "ss_output_name": "lora",
        "ss_base_model_version": "hunyuan_video_1_5",
        "ss_network_module": "networks.lora_hv_1_5",
        "ss_network_dim": "32",
        "ss_network_alpha": "32",
        "ss_datasets": '[{"is_image_dataset": true}]',
        "ss_steps": str(steps),
        "ss_epoch": str(epoch),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": "hunyuan-video-1.5/lora",
        "modelspec.title": "lora",
    }
    metadata["sshs_model_hash"], metadata["sshs_legacy_hash"] = precalculate_safetensors_hashes(tensors, metadata)
    save_file(tensors, str(path), metadata)
    return tensors


def test_read_metadata_reads_the_header_only(tmp_path):
    p = tmp_path / "lora.safetensors"
    musubi_like_lora(p)
    meta = read_metadata(p)
    assert meta["ss_steps"] == "500" and meta["modelspec.title"] == "lora"
    assert len(meta["sshs_model_hash"]) == 64 and len(meta["sshs_legacy_hash"]) == 8
    n = int.from_bytes(p.read_bytes()[:8], "little")
    os.truncate(p, 8 + n + 10)  # the tensor data is gone; the header is still readable
    assert read_metadata(p)["ss_epoch"] == "5"


def test_read_metadata_of_a_file_without_metadata(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(p))
    assert read_metadata(p) == {}


@pytest.mark.parametrize("keep", [0, 5, 8, 60, -1])
def test_cut_files_are_not_whole(tmp_path, keep):
    p = tmp_path / "lora.safetensors"
    musubi_like_lora(p)
    assert safetensors_problem(p) is None
    size = p.stat().st_size
    os.truncate(p, keep if keep >= 0 else size - 1)
    assert safetensors_problem(p) is not None
    if 0 <= keep < 8:
        with pytest.raises(SafetensorsError):
            read_metadata(p)


def test_missing_and_garbage_files(tmp_path):
    assert "missing" in safetensors_problem(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes((20).to_bytes(8, "little") + b"not json at all....." + b"x" * 10)
    assert "JSON" in safetensors_problem(junk)


def test_rewrite_updates_metadata_keeps_tensors_and_recomputes_hashes(tmp_path):
    p = tmp_path / "lora-step00000500.safetensors"
    tensors = musubi_like_lora(p)
    before = read_metadata(p)
    rewrite_metadata(p, {"ss_steps": "1300", "ss_epoch": "13", "hv_true_step": "1300"}, remove=["ss_session_id"])
    after = read_metadata(p)
    assert after["ss_steps"] == "1300" and after["ss_epoch"] == "13" and after["hv_true_step"] == "1300"
    assert "ss_session_id" not in after
    for key in ("ss_output_name", "ss_datasets", "modelspec.architecture", "modelspec.title"):
        assert after[key] == before[key]
    loaded = load_file(p)
    assert loaded.keys() == tensors.keys()
    for k, t in tensors.items():
        assert loaded[k].dtype == t.dtype and torch.equal(loaded[k], t)
    expected = precalculate_safetensors_hashes(tensors, {k: v for k, v in after.items() if not k.startswith("sshs_")})
    assert (after["sshs_model_hash"], after["sshs_legacy_hash"]) == expected
    # the model hash covers the tensor data only; the legacy hash moved with the longer header
    assert after["sshs_model_hash"] == before["sshs_model_hash"]
    assert after["sshs_legacy_hash"] != before["sshs_legacy_hash"]
    assert not [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]


def test_non_ss_metadata_does_not_change_the_hashes(tmp_path):
    p = tmp_path / "lora.safetensors"
    musubi_like_lora(p)
    before = read_metadata(p)
    rewrite_metadata(p, {"modelspec.title": "a much longer title than before, to move every byte after it"})
    after = read_metadata(p)
    assert (after["sshs_model_hash"], after["sshs_legacy_hash"]) == (
        before["sshs_model_hash"],
        before["sshs_legacy_hash"],
    )


def test_rewrite_of_a_file_without_hashes_adds_none(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({"a": torch.arange(6.0)}, str(p), {"ss_steps": "3"})
    p.chmod(0o640)
    rewrite_metadata(p, {"ss_steps": "9"})
    assert read_metadata(p) == {"ss_steps": "9"}
    assert torch.equal(load_file(p)["a"], torch.arange(6.0))
    assert p.stat().st_mode & 0o777 == 0o640


def test_bad_values_are_refused_before_anything_changes(tmp_path):
    p = tmp_path / "lora.safetensors"
    musubi_like_lora(p)
    data = p.read_bytes()
    with pytest.raises(TypeError):
        rewrite_metadata(p, {"ss_steps": 1300})
    assert p.read_bytes() == data


def test_a_failing_replace_leaves_the_original(tmp_path, monkeypatch):
    p = tmp_path / "lora.safetensors"
    musubi_like_lora(p)
    data = p.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(fsutil.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        rewrite_metadata(p, {"ss_steps": "1300"})
    assert p.read_bytes() == data
    assert sorted(q.name for q in tmp_path.iterdir()) == ["lora.safetensors"]


def test_a_process_killed_mid_rewrite_leaves_the_original(tmp_path):
    """A real crash: the child dies (os._exit, no cleanup) right before the rename."""
    p = tmp_path / "lora.safetensors"
    musubi_like_lora(p)
    data = p.read_bytes()
    code = (
        "import os, sys\n"
        "from hvlora.core import fsutil\n"
        "from hvlora.training import lorameta\n"
        "fsutil.os.replace = lambda a, b: os._exit(9)\n"
        "lorameta.rewrite_metadata(sys.argv[1], {'ss_steps': '1300'})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rc = subprocess.run([sys.executable, "-c", code, str(p)], env=env, timeout=120).returncode
    assert rc == 9
    assert p.read_bytes() == data
    leftovers = [q for q in tmp_path.iterdir() if q != p]
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".tmp")  # only a temporary, never the original
