"""Resume across segments, on real accelerate 1.6.0 states written by a CPU copy of musubi's training loop."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file, save_file

from hvlora.training.lorameta import read_metadata
from hvlora.training.resume import (
    Artifact,
    ResumeError,
    SegmentLog,
    StateInfo,
    adopt,
    describe_resume,
    is_complete,
    lora_name,
    newest_state,
    parse_name,
    prune,
    read_state,
    remaining,
    state_name,
    steps_per_epoch,
    true_step_of,
)

NAME = "lora"


def run_segment(
    out: Path, *, items, max_steps, every_steps=None, every_epochs=None, resume=None, ga=1, stop_after=None
):
    """musubi-tuner v0.3.4's loop mechanics (trainer_base.py train(), utils/train_utils.py names) on a tiny model.

    Counters start at 0 whatever --resume loaded; step saves inside the loop, epoch saves at epoch ends except the
    last, then the final state and LoRA. `stop_after`: the process dies after that local step (nothing final).
    Returns the optimizer steps per epoch the loop saw.
    Note: load_state restores accelerate's micro-batch counter, so a mid-epoch resume keeps counting from it until
    the first end of the data loader.
    """
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    acc = Accelerator(cpu=True, gradient_accumulation_steps=ga)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    data = torch.randn(items, 4, generator=torch.Generator().manual_seed(1))
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=1, shuffle=True)
    model, opt, dl, sched = acc.prepare(model, opt, dl, sched)
    if resume is not None:
        acc.load_state(str(resume))
        torch.rand(1)  # musubi draws a different permutation after a resume (musubi-training.md §1.4)
    spe = math.ceil(len(dl) / ga)
    epochs = math.ceil(max_steps / spe)
    out.mkdir(parents=True, exist_ok=True)

    def save(stem, steps, epoch, state=True):
        sd = {k: v.detach().clone() for k, v in acc.unwrap_model(model).state_dict().items()}
        save_file(sd, str(out / f"{stem}.safetensors"), {"ss_steps": str(steps), "ss_epoch": str(epoch)})
        if state:
            acc.save_state(str(out / f"{stem}-state"))

    gs = 0
    for epoch in range(epochs):
        for (x,) in dl:
            with acc.accumulate(model):
                acc.backward(model(x).pow(2).sum())
                opt.step()
                sched.step()
                opt.zero_grad()
            if acc.sync_gradients:
                gs += 1
                if every_steps and gs % every_steps == 0:
                    save(f"{NAME}-step{gs:08d}", gs, epoch)
                if stop_after is not None and gs >= stop_after:
                    return spe
            if gs >= max_steps:
                break
        if every_epochs and (epoch + 1) % every_epochs == 0 and epoch + 1 < epochs:
            save(f"{NAME}-{epoch + 1:06d}", gs, epoch + 1)
    acc.save_state(str(out / f"{NAME}-state"))
    save(NAME, gs, epochs, state=False)
    return spe


def begin(log: SegmentLog, from_step, total, spe=8, resumed_from=None):
    return log.begin(
        from_step=from_step,
        from_epoch=from_step // spe if from_step % spe == 0 else from_step / spe,
        resumed_from=resumed_from,
        num_processes=1,
        steps_per_epoch=spe,
        total_steps=total,
        output_name=NAME,
    )


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def cut(path: Path, keep: int | None = None) -> None:
    """Truncate a file as a kill during its write would: to `keep` bytes, by default to half."""
    os.truncate(path, path.stat().st_size // 2 if keep is None else keep)


@pytest.fixture(scope="module")
def boundary_template(tmp_path_factory):
    """Run A, segment 0: 8 items (8 steps/epoch), target 20 steps, a state every 4 steps and every epoch; killed
    after step 12."""
    run = tmp_path_factory.mktemp("a") / "run"
    seg = begin(SegmentLog.in_run(run), 0, 20)
    assert run_segment(seg.dir, items=8, max_steps=20, every_steps=4, every_epochs=1, stop_after=12) == 8
    return run


@pytest.fixture(scope="module")
def midepoch_template(tmp_path_factory):
    """Run B, segment 0: 8 steps/epoch, target 30, states every 6 steps and every epoch; killed after step 17."""
    run = tmp_path_factory.mktemp("b") / "run"
    seg = begin(SegmentLog.in_run(run), 0, 30)
    run_segment(seg.dir, items=8, max_steps=30, every_steps=6, every_epochs=1, stop_after=17)
    return run


def copy_run(template: Path, tmp_path: Path) -> tuple[Path, SegmentLog]:
    run = tmp_path / "run"
    shutil.copytree(template, run)
    return run, SegmentLog.in_run(run)


# --- names ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, art",
    [
        ("lora.safetensors", Artifact("final", False, None)),
        ("lora-state", Artifact("final", True, None)),
        ("lora-000003.safetensors", Artifact("epoch", False, 3)),
        ("lora-000003-state", Artifact("epoch", True, 3)),
        ("lora-step00000500.safetensors", Artifact("step", False, 500)),
        ("lora-step00000500-state", Artifact("step", True, 500)),
        ("lora-step123456789-state", Artifact("step", True, 123456789)),
        ("lora-step00000500~2.safetensors", Artifact("step", False, 500, 2)),
        ("lora-000003-state~1", Artifact("epoch", True, 3, 1)),
        ("lora~1.safetensors", Artifact("final", False, None, 1)),
    ],
)
def test_names_parse_and_format(name, art):
    assert parse_name(name, NAME) == art
    assert art.name(NAME) == name


@pytest.mark.parametrize(
    "name",
    [
        "other.safetensors",
        "lora-03.safetensors",
        "lora-step500.safetensors",
        "lora-state.safetensors",
        "lora-000003",
        "lora_comfyui.safetensors",
        "sample",
        "lora-000003-state.tmp",
    ],
)
def test_other_names_are_not_artifacts(name):
    assert parse_name(name, NAME) is None


def test_an_output_name_that_looks_numbered():
    assert parse_name("lora-000001-000002.safetensors", "lora-000001") == Artifact("epoch", False, 2)
    assert parse_name("lora-000001.safetensors", "lora-000001") == Artifact("final", False, None)
    assert state_name("x", "step", 7) == "x-step00000007-state" and lora_name("x", "epoch", 7) == "x-000007.safetensors"


def test_steps_per_epoch_is_what_the_loop_sees(tmp_path):
    assert steps_per_epoch(9, 1, 2) == run_segment(tmp_path / "s", items=9, max_steps=5, ga=2) == 5
    assert steps_per_epoch(100, 2, 4) == math.ceil(100 / 2 / 4) == 13
    with pytest.raises(ValueError):
        steps_per_epoch(0)


# --- states --------------------------------------------------------------------------------------------------------


def test_read_state_counters(tmp_path):
    """musubi-training.md §1.2: 8 items, GA 2 -> states at global steps 3/6/9/12 have step 6/4/2/0."""
    out = tmp_path / "s"
    run_segment(out, items=8, max_steps=12, every_steps=3, ga=2)
    got = [read_state(out / f"lora-step{s:08d}-state", 1) for s in (3, 6, 9, 12)]
    assert got == [(3, 6), (6, 4), (9, 2), (12, 0)]
    assert read_state(out / "lora-step00000012-state", 2) == (6, 0)  # last_epoch = global step x num_processes
    assert sorted(names(out / "lora-state")) == sorted(
        ["model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"]
    )


def test_read_state_of_a_broken_state(tmp_path, boundary_template):
    state = tmp_path / "st"
    shutil.copytree(boundary_template / "segments/00/lora-step00000004-state", state)
    cut(state / "scheduler.bin")
    with pytest.raises(ResumeError, match="scheduler"):
        read_state(state, 1)


@pytest.mark.parametrize("file", ["model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"])
@pytest.mark.parametrize("keep", [0, 1, 8, "half", "all-but-1", "all-but-22"])
def test_a_cut_file_makes_a_state_incomplete(tmp_path, boundary_template, file, keep):
    state = tmp_path / "st"
    shutil.copytree(boundary_template / "segments/00/lora-step00000008-state", state)
    assert is_complete(state) == (True, "")
    size = (state / file).stat().st_size
    n = {"half": size // 2, "all-but-1": size - 1, "all-but-22": size - 22}.get(keep, keep)
    cut(state / file, n)
    ok, why = is_complete(state)
    assert not ok and file in why


def test_missing_files_and_partial_folders(tmp_path, boundary_template):
    src = boundary_template / "segments/00/lora-step00000008-state"
    state = tmp_path / "st"
    shutil.copytree(src, state)
    (state / "random_states_0.pkl").unlink()
    assert is_complete(state) == (False, "random_states_0.pkl is missing")
    partial = tmp_path / "partial"  # what accelerate's makedirs + the first file leave behind
    partial.mkdir()
    shutil.copy(src / "model.safetensors", partial)
    assert not is_complete(partial)[0]
    assert not is_complete(tmp_path / "nothing")[0]


def test_a_scaler_is_checked_only_when_present(tmp_path, boundary_template):
    state = tmp_path / "st"
    shutil.copytree(boundary_template / "segments/00/lora-step00000008-state", state)
    torch.save({"scale": 65536.0, "_growth_tracker": 0}, state / "scaler.pt")
    assert is_complete(state)[0]
    cut(state / "scaler.pt")
    assert is_complete(state) == (False, is_complete(state)[1]) and "scaler.pt" in is_complete(state)[1]


# --- adoption, epoch-boundary resume -------------------------------------------------------------------------------


def test_adopt_and_resume_at_an_epoch_boundary(tmp_path, boundary_template):
    run, log = copy_run(boundary_template, tmp_path)
    ckpt = run / "checkpoints"
    seg0 = log.all()[0]
    cut(seg0.dir / "lora-step00000012-state" / "optimizer.bin")  # killed while saving step 12's state
    lines = []
    moved = adopt(seg0, ckpt, NAME, lines.append)
    assert names(ckpt) == {
        "lora-step00000004.safetensors",
        "lora-step00000004-state",
        "lora-step00000008.safetensors",
        "lora-step00000008-state",
        "lora-000001.safetensors",
        "lora-000001-state",
        "lora-step00000012.safetensors",  # the LoRA was written before its state
    }
    assert set(moved) == {ckpt / n for n in names(ckpt)}
    assert any("deleted the incomplete state" in line and "lora-step00000012-state" in line for line in lines)
    assert names(seg0.dir) == set()
    log.end(0, "killed")

    state = newest_state(ckpt, NAME, 1, 8)
    assert state.path == ckpt / "lora-000001-state"  # step 8 twice: the epoch-named one wins
    assert (state.true_step, state.true_epoch, state.epoch_boundary, state.kind) == (8, 1, True, "epoch")
    assert remaining(20, state) == 12

    seg1 = begin(log, state.true_step, 20, resumed_from=state.path)
    run_segment(seg1.dir, items=8, max_steps=seg1.max_train_steps, every_steps=4, every_epochs=1, resume=state.path)
    assert true_step_of(seg1.dir / "lora-step00000004-state", seg1) == 12
    assert true_step_of(seg1.dir / "lora-000001-state", seg1) == 16
    assert true_step_of(seg1.dir / "lora-state", seg1) == 20
    old12 = load_file(ckpt / "lora-step00000012.safetensors")
    lines.clear()
    moved = adopt(seg1, ckpt, NAME, lines.append)
    log.end(1, "ok", returncode=0)
    assert names(ckpt) >= {
        "lora-step00000012-state",
        "lora-step00000016-state",
        "lora-000002-state",  # local epoch 1 of a segment that began at epoch 1
        "lora-step00000020-state",
        "lora-000002.safetensors",
        "lora-step00000012.safetensors",
        "lora-step00000012~1.safetensors",  # segment 0's step 12, trained past the state we resumed from
        "lora-step00000020.safetensors",
        "lora.safetensors",
    }
    assert "lora-state" not in names(ckpt) and names(seg1.dir) == set()
    # the final state (step 20) is the same training point as the step-20 state: not kept twice
    assert any("lora-state is the same as lora-step00000020-state" in line for line in lines)
    assert torch.equal(load_file(ckpt / "lora-step00000012~1.safetensors")["weight"], old12["weight"])
    assert not torch.equal(load_file(ckpt / "lora-step00000012.safetensors")["weight"], old12["weight"])
    assert read_metadata(ckpt / "lora-000002.safetensors")["ss_steps"] == "8"  # musubi's local number, untouched
    assert ckpt / "lora.safetensors" in moved

    final = newest_state(ckpt, NAME, 1, 8)
    assert (final.path.name, final.true_step, final.true_epoch, final.epoch_boundary) == (
        "lora-step00000020-state",
        20,
        2.5,
        False,
    )
    assert remaining(20, final) == 0
    before = {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()}
    assert adopt(seg1, ckpt, NAME, lines.append) == {} and adopt(seg0, ckpt, NAME, lines.append) == {}
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()} == before


def test_a_cut_newest_state_leaves_the_previous_one(tmp_path, boundary_template):
    run, log = copy_run(boundary_template, tmp_path)
    ckpt = run / "checkpoints"
    adopt(log.all()[0], ckpt, NAME, print)
    assert newest_state(ckpt, NAME, 1, 8).path.name == "lora-step00000012-state"
    cut(ckpt / "lora-step00000012-state" / "model.safetensors", 100)
    lines = []
    assert newest_state(ckpt, NAME, 1, 8, log=lines.append).path.name == "lora-000001-state"
    assert any("lora-step00000012-state" in line and "model.safetensors" in line for line in lines)
    for p in ckpt.glob("*-state"):
        if p.name != "lora-step00000004-state":
            cut(p / "random_states_0.pkl")
    assert newest_state(ckpt, NAME, 1, 8).path.name == "lora-step00000004-state"
    cut(ckpt / "lora-step00000004-state" / "scheduler.bin")
    assert newest_state(ckpt, NAME, 1, 8) is None


# --- adoption, mid-epoch resume ------------------------------------------------------------------------------------


def adopt_seg0_and_resume_from_12(tmp_path, template, **run_kwargs):
    """Segment 0 of run B adopted; segment 1 resumed from its mid-epoch state of step 12 (epoch 1.5)."""
    run, log = copy_run(template, tmp_path)
    ckpt = run / "checkpoints"
    adopt(log.all()[0], ckpt, NAME, print)
    start = ckpt / "lora-step00000012-state"
    assert read_state(start, 1) == (12, 4)
    seg1 = begin(log, 12, 30, resumed_from=start)
    assert not seg1.at_epoch_boundary and seg1.from_epoch == 1.5
    run_segment(seg1.dir, items=8, max_steps=18, resume=start, **run_kwargs)
    return ckpt, seg1


def test_a_mid_epoch_segment_names_its_epoch_ends_as_steps(tmp_path, midepoch_template):
    ckpt, seg1 = adopt_seg0_and_resume_from_12(tmp_path, midepoch_template, every_epochs=1)
    assert names(seg1.dir) >= {"lora-000001-state", "lora-000002-state", "lora-state"}
    lines = []
    adopt(seg1, ckpt, NAME, lines.append)
    new = {n for n in names(ckpt) if n.startswith(("lora-step00000020", "lora-step00000028", "lora-step00000030"))}
    assert new == {
        "lora-step00000020.safetensors",  # local epoch 1 = true step 12 + 8, not a true epoch end
        "lora-step00000020-state",
        "lora-step00000028.safetensors",
        "lora-step00000028-state",
        "lora-step00000030-state",  # the final state: true step 30 from its scheduler
    }
    assert "lora-000003-state" not in names(ckpt) and "lora.safetensors" in names(ckpt)
    s20 = newest_state(ckpt, NAME, 1, 8)
    assert (s20.path.name, s20.true_step, s20.true_epoch) == ("lora-step00000030-state", 30, 3.75)
    assert read_state(ckpt / "lora-step00000020-state", 1) == (20, 0)  # a data-epoch end, but mid true epoch


def test_the_epoch_boundary_state_wins_at_the_same_step(tmp_path, midepoch_template):
    ckpt, seg1 = adopt_seg0_and_resume_from_12(tmp_path, midepoch_template, every_steps=4, every_epochs=1)
    lines = []
    adopt(seg1, ckpt, NAME, lines.append)
    # segment 1's epoch ends (named as steps 20, 28) coincide with its step saves: the same weights, kept once
    for local, true in ((1, 20), (2, 28)):
        assert any(
            f"lora-00000{local}.safetensors is the same as lora-step000000{true}.safetensors" in x for x in lines
        )
        assert any(f"lora-00000{local}-state is the same as lora-step000000{true}-state" in x for x in lines)
    # step 16: segment 0's epoch-2 state (data-epoch end) and segment 1's state 4 micro-batches into its epoch
    assert {"lora-000002-state", "lora-step00000016-state"} <= names(ckpt)
    for p in ckpt.glob("lora-step*-state"):
        if read_state(p, 1)[0] > 16:
            cut(p / "optimizer.bin")
    best = newest_state(ckpt, NAME, 1, 8)
    assert (best.path.name, best.epoch_boundary, best.true_epoch) == ("lora-000002-state", True, 2)
    # load_state restored the micro-batch counter (4 at step 12): 4 more steps -> 8, not a data-epoch end
    assert read_state(ckpt / "lora-step00000016-state", 1) == (16, 8)


# --- cross-checks --------------------------------------------------------------------------------------------------


def test_a_wrong_segment_record_is_caught(tmp_path, boundary_template):
    run, log = copy_run(boundary_template, tmp_path)
    seg0 = log.all()[0]
    wrong = type(seg0)(**{**seg0.__dict__, "from_step": 100, "total_steps": 120})
    with pytest.raises(ResumeError, match=r"scheduler says step 8.*imply step 108"):
        true_step_of(seg0.dir / "lora-step00000008-state", wrong)
    with pytest.raises(ResumeError, match="step 8"):
        true_step_of(seg0.dir / "lora-step00000008-state", wrong, output_name=None)
    lines = []
    ckpt = run / "checkpoints"
    moved = adopt(wrong, ckpt, NAME, lines.append)
    assert all(not p.name.endswith("-state") for p in moved)
    assert "lora-step00000008-state" in names(seg0.dir)  # left where it was, for the caller to look at
    assert any(line.startswith("not adopting") and "imply step 108" in line for line in lines)


def test_a_wrong_steps_per_epoch_is_caught(tmp_path, boundary_template):
    run, log = copy_run(boundary_template, tmp_path)
    seg0 = log.all()[0]
    wrong = type(seg0)(**{**seg0.__dict__, "steps_per_epoch": 10})
    lines = []
    adopt(wrong, run / "checkpoints", NAME, lines.append)
    assert {"lora-000001.safetensors", "lora-000001-state"} <= names(seg0.dir)
    assert any("ss_steps=8" in line and "local step 10" in line for line in lines)
    assert "lora-step00000008-state" in names(run / "checkpoints")  # step names do not depend on it


def test_a_newer_final_lora_keeps_the_earlier_one(tmp_path, boundary_template):
    run, log = copy_run(boundary_template, tmp_path)
    ckpt = run / "checkpoints"
    ckpt.mkdir()
    save_file({"weight": torch.ones(2, 4)}, str(ckpt / "lora.safetensors"), {"ss_steps": "999"})
    seg0 = log.all()[0]
    (seg0.dir / "lora-step00000012.safetensors").rename(seg0.dir / "lora.safetensors")  # as if it finished
    wrong = type(seg0)(**{**seg0.__dict__, "total_steps": 12})
    adopt(wrong, ckpt, NAME, print)
    assert read_metadata(ckpt / "lora.safetensors")["ss_steps"] == "12"
    assert read_metadata(ckpt / "lora~1.safetensors")["ss_steps"] == "999"


# --- the segment log -----------------------------------------------------------------------------------------------


def test_segment_log_round_trip(tmp_path):
    run = tmp_path / "run"
    log = SegmentLog.in_run(run)
    assert log.all() == [] and log.last() is None
    s0 = begin(log, 0, 2000, spe=100)
    assert s0.dir == run / "segments" / "00" and s0.dir.is_dir() and s0.ended_at is None
    s1 = begin(log, 1300, 2000, spe=100, resumed_from=run / "checkpoints" / "lora-step00001300-state")
    assert s1.index == 1 and s1.max_train_steps == 700 and s1.at_epoch_boundary
    log.end(0, "killed", returncode=-9)
    again = SegmentLog(run / "segments.json").all()
    assert [s.index for s in again] == [0, 1]
    assert again[0].status == "killed" and again[0].returncode == -9 and again[0].ended_at
    assert again[1] == s1 and again[1].ended_at is None  # still running, or killed with everything
    text = (run / "segments.json").read_text()
    assert '"checkpoints/lora-step00001300-state"' in text and str(tmp_path) not in text
    moved = tmp_path / "elsewhere"
    run.rename(moved)  # a container mounts the folder at another path
    assert SegmentLog.in_run(moved).all()[1].resumed_from == moved / "checkpoints" / "lora-step00001300-state"
    assert names(moved) == {"segments", "segments.json"}
    with pytest.raises(IndexError):
        SegmentLog.in_run(moved).end(5, "ok")
    with pytest.raises(ValueError):
        begin(SegmentLog.in_run(moved), 3000, 2000)


def test_relative_paths_are_taken_from_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = SegmentLog(Path("out/run/segments.json"))
    begin(log, 8, 20, resumed_from=Path("out/run/checkpoints/lora-000001-state"))
    monkeypatch.chdir("/")
    seg = SegmentLog.in_run(tmp_path / "out" / "run").all()[0]
    assert seg.dir == tmp_path / "out/run/segments/00"
    assert seg.resumed_from == tmp_path / "out/run/checkpoints/lora-000001-state"


def test_an_unreadable_segment_log(tmp_path):
    (tmp_path / "segments.json").write_text("{not json")
    with pytest.raises(ResumeError, match="segments.json"):
        SegmentLog.in_run(tmp_path).all()


# --- pruning -------------------------------------------------------------------------------------------------------


def test_prune_on_true_numbers(tmp_path, boundary_template):
    run, log = copy_run(boundary_template, tmp_path)
    ckpt = run / "checkpoints"
    adopt(log.all()[0], ckpt, NAME, print)
    deleted = prune(ckpt, NAME, keep_models=2, keep_states=2, steps_per_epoch=8)
    assert names(ckpt) == {
        "lora-000001.safetensors",  # step 8, after the step-8 file
        "lora-step00000012.safetensors",
        "lora-000001-state",
        "lora-step00000012-state",
    }
    assert {p.name for p in deleted} == {
        "lora-step00000004.safetensors",
        "lora-step00000008.safetensors",
        "lora-step00000004-state",
        "lora-step00000008-state",
    }
    cut(ckpt / "lora-step00000012-state" / "optimizer.bin")
    prune(ckpt, NAME, keep_models=0, keep_states=0, steps_per_epoch=8, num_processes=1)
    assert names(ckpt) == {"lora-000001-state"}  # the newest complete state survives any count


def test_prune_never_deletes_the_final_or_the_chosen_state(tmp_path):
    ckpt = tmp_path / "c"
    ckpt.mkdir()
    for n in ("lora.safetensors", "lora~1.safetensors", "lora-step00000005.safetensors"):
        save_file({"w": torch.zeros(1)}, str(ckpt / n))
    assert prune(ckpt, NAME, keep_models=0, keep_states=0, steps_per_epoch=8) == [
        ckpt / "lora-step00000005.safetensors"
    ]
    assert names(ckpt) == {"lora.safetensors", "lora~1.safetensors"}
    assert prune(ckpt, NAME, keep_models=-1, keep_states=-1, steps_per_epoch=8) == []


# --- messages ------------------------------------------------------------------------------------------------------


def test_remaining_and_describe(tmp_path):
    run = tmp_path / "run"
    st = StateInfo(run / "checkpoints" / "lora-000013-state", 1300, 13, True, 1_000_000.0, "epoch")
    now = 1_000_000.0 + 14 * 60
    assert remaining(2000, st) == 700 and remaining(2000, None) == 2000 and remaining(1000, st) == 0
    text = describe_resume(run, st, 2000, now)
    assert text.startswith("state of step 1300 of 2000 (saved 14m00s ago); 700 steps to go; steps after 1300 are lost")
    assert "checkpoints/lora-000013-state" in text and "mid-epoch" not in text
    mid = StateInfo(run / "checkpoints" / "lora-step00001350-state", 1350, 13.5, False, now - 3 * 3600, "step")
    assert "saved 3h00m ago" in describe_resume(run, mid, 2000, now) and "mid-epoch" in describe_resume(
        run, mid, 2000, now
    )
    assert "nothing left" in describe_resume(run, st, 1300, now)
    assert "training all 2000 steps" in describe_resume(run, None, 2000, now)
