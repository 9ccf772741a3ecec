"""Publishing LoRA files: atomic copies, and an earlier LoRA is never lost."""

from __future__ import annotations

import json

from hvlora.training.outputs import publish, sha256_file


def write(p, data: bytes):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def record_run(output_dir, name, published):
    """What the pipeline does: the run's summary.json records what it published."""
    summary = output_dir / "runs" / name / "summary.json"
    summary.write_text(json.dumps({"outputs": published}))


def test_publish_copies_and_records(tmp_path):
    out = tmp_path / "output"
    src = write(out / "runs" / "r1" / "checkpoints" / "lora.safetensors", b"first")
    logs = []
    rec = publish({"lora.safetensors": src}, out, logs.append)
    assert (out / "lora.safetensors").read_bytes() == b"first"
    assert rec["lora.safetensors"] == {
        "path": str(out / "lora.safetensors"),
        "source": str(src),
        "sha256": sha256_file(src),
        "bytes": 5,
    }
    assert not list(out.glob(".*tmp"))  # no temporary left behind


def test_a_file_held_by_its_run_folder_is_replaced(tmp_path):
    out = tmp_path / "output"
    first = write(out / "runs" / "r1" / "checkpoints" / "lora.safetensors", b"first")
    record_run(out, "r1", publish({"lora.safetensors": first}, out, print))
    second = write(out / "runs" / "r2" / "checkpoints" / "lora.safetensors", b"second!")
    publish({"lora.safetensors": second}, out, print)
    assert (out / "lora.safetensors").read_bytes() == b"second!"
    assert first.read_bytes() == b"first"  # the earlier LoRA stays in its run folder
    assert not list((out / "runs").glob("kept-*"))


def test_a_file_no_run_folder_holds_is_kept_aside(tmp_path):
    out = tmp_path / "output"
    write(out / "lora.safetensors", b"made by hand")
    new = write(out / "runs" / "r2" / "checkpoints" / "lora.safetensors", b"new")
    logs = []
    publish({"lora.safetensors": new}, out, logs.append)
    kept = list((out / "runs").glob("kept-*/lora.safetensors"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"made by hand"
    assert (out / "lora.safetensors").read_bytes() == b"new"
    assert any("kept the earlier lora.safetensors" in line for line in logs)


def test_a_run_folder_that_was_deleted_no_longer_protects(tmp_path):
    out = tmp_path / "output"
    first = write(out / "runs" / "r1" / "checkpoints" / "lora.safetensors", b"first")
    record_run(out, "r1", publish({"lora.safetensors": first}, out, print))
    first.unlink()  # the user cleaned up the run folder's checkpoints
    publish({"lora.safetensors": write(out / "runs" / "r2" / "x.safetensors", b"second")}, out, print)
    kept = list((out / "runs").glob("kept-*/lora.safetensors"))
    assert [k.read_bytes() for k in kept] == [b"first"]
