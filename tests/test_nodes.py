"""Machine R > 0 of a multi-node run (training/nodes.py) before it launches anything: which run it joins, what it
refuses and how long it waits, with real run locks held by another process. The whole two-machine run is
tests/test_multinode_e2e.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hvlora.core import runs
from hvlora.core.errors import UserError
from hvlora.training import nodes, resume

REPO = Path(__file__).resolve().parents[1]
HOLD = textwrap.dedent(
    """
    import sys
    from hvlora.core.lock import RunLock
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture
def machine0(tmp_path):
    """machine0(name) -> a run folder of output name `name` whose lock another process holds (machine 0)."""
    procs = []

    def start(name: str = "lora", command: dict | None = None) -> Path:
        run = tmp_path / "output" / "runs" / f"{name}-20250101-000000"
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"identity": {"output_name": name}}))
        p = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(run)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        procs.append(p)
        assert p.stdout.readline().strip() == "locked"
        if command is not None:
            log = resume.SegmentLog.in_run(run)
            seg = log.begin(from_step=0, from_epoch=0, resumed_from=None, num_processes=2, steps_per_epoch=2,
                            total_steps=4, output_name=name)  # fmt: skip
            log.set_command(seg.index, command)
        return run

    def stop() -> None:
        while procs:
            procs.pop().communicate("\n", timeout=30)

    start.stop = stop
    yield start
    stop()


def settings(make_settings, *flags):
    return make_settings(
        "--device", "cpu", "--num_machines", "2", "--machine_rank", "1", "--main_process_ip", "127.0.0.1", *flags
    )


def command(tmp_path, launcher_port="29500", **paths) -> dict:
    argv = ["--dit", str(paths.get("dit", tmp_path / "dit.safetensors"))]
    argv += ["--dataset_config", str(paths.get("config", tmp_path / "dataset.toml")), "--output_name", "lora"]
    launcher = ["accelerate", "launch", "--num_processes", "2", "--num_machines", "2", "--machine_rank", "0"]
    launcher += ["--main_process_ip", "127.0.0.1", "--main_process_port", launcher_port]
    return {"name": "train", "module": "musubi_tuner.hv_1_5_train_network", "argv": argv, "launcher": launcher}


def test_no_run_of_machine_0_in_time_is_a_clear_error_and_nothing_is_written(tmp_path, make_settings):
    s = settings(make_settings)
    with pytest.raises(UserError, match=r"no run of --output_name lora was started by machine 0 .* Start the same"):
        nodes.join(s, appear_s=0.2, poll_s=0.05)
    assert not s.output_dir.exists()  # machine 1 made no folder, lock or log


def test_it_joins_only_a_live_run_of_its_own_output_name(tmp_path, make_settings, machine0):
    s = settings(make_settings)
    machine0("lora-v2", command(tmp_path))  # another output name: never joined
    with pytest.raises(UserError, match="no run of --output_name lora"):
        nodes.join(s, appear_s=0.2, poll_s=0.05)
    machine0.stop()
    run = machine0("lora", command(tmp_path))
    assert nodes._machine0(s).run_dir == run and runs.runs_of(s.output_dir, "lora") == [run]


def test_it_refuses_what_it_cannot_see_or_another_launch(tmp_path, make_settings, machine0):
    s = settings(make_settings)
    config = tmp_path / "dataset.toml"
    config.write_text(f'[[datasets]]\nimage_directory = "{tmp_path / "images"}"\ncache_directory = "{tmp_path}"\n')
    machine0("lora", command(tmp_path))
    with pytest.raises(UserError) as e:
        nodes.join(s, appear_s=5, poll_s=0.05)
    text = str(e.value)
    assert f"--dit {tmp_path / 'dit.safetensors'}" in text and "datasets[0].image_directory" in text
    assert "on storage every machine mounts at the same paths" in text
    other = settings(make_settings, "--main_process_port", "29999")
    with pytest.raises(UserError, match="machine 0 launches with --main_process_port 29500, this command with "
                       "--main_process_port 29999"):  # fmt: skip
        nodes.join(other, appear_s=5, poll_s=0.05)
