"""hvlora.training.progress: line splitting, tqdm parsing, training/cache progress, metrics.jsonl, TensorBoard scalars.

The raw captures in tests/fixtures/progress/*.raw (each with a *.expect.json) are fed through the whole chain in
several chunk sizes; bars for the unit tests are drawn by tqdm's own `format_meter` (tqdm 4.67.1, musubi's pin).
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tqdm import tqdm

from hvlora.training.progress import (
    NAN_STOP_MARK,
    CacheProgress,
    LineSplitter,
    MetricsLog,
    StatusPrinter,
    TrainProgress,
    format_duration,
    nan_stop_line,
    parse_time,
    parse_tqdm,
    read_metrics,
    read_tb_scalars,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "progress"
RAWS = sorted(FIXTURES.glob("*.raw"))
STANDIN_TFEVENTS = Path(__file__).resolve().parent / "standin" / "musubi_tuner" / "_tfevents.py"


class Clock:
    """A settable clock (seconds)."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def bar(n, total, elapsed, postfix=None, prefix="steps") -> str:
    """A bar line exactly as tqdm prints it (no cursor control)."""
    return tqdm.format_meter(n, total, elapsed, prefix=prefix, postfix=postfix)


def split_all(data: bytes, chunk: int | None) -> list[str]:
    sp = LineSplitter()
    size = chunk or max(len(data), 1)
    lines = []
    for i in range(0, len(data), size):
        lines += sp.feed(data[i : i + size])
    return lines + sp.flush()


# ---------------------------------------------------------------------------------------------------------------
# LineSplitter


def test_splitter_splits_on_cr_lf_and_crlf():
    sp = LineSplitter()
    lines = sp.feed(b"a\nb\r\nc\rd")
    assert lines == ["a", "b", "c"]
    assert [ln.cr for ln in lines] == [False, False, True]
    assert sp.partial == "d"
    rest = sp.flush()
    assert rest == ["d"] and not rest[0].cr


def test_splitter_cr_then_lf_in_next_chunk_is_one_line_end():
    sp = LineSplitter()
    assert sp.feed(b"saving\r") == []
    assert sp.partial == "saving"
    lines = sp.feed(b"\nnext\n")
    assert lines == ["saving", "next"]
    assert not lines[0].cr


def test_splitter_cr_at_chunk_end_then_text_is_an_in_place_update():
    sp = LineSplitter()
    assert sp.feed(b"\rsteps: 1/3\r") == [""]
    lines = sp.feed(b"steps: 2/3")
    assert lines == ["steps: 1/3"] and lines[0].cr
    assert sp.partial == "steps: 2/3"
    assert sp.flush() == ["steps: 2/3"]


def test_splitter_keeps_a_multibyte_character_split_between_chunks():
    data = "steps:  50%|█████     | 1/2\n".encode()
    cut = data.index("█".encode()) + 1
    sp = LineSplitter()
    assert sp.feed(data[:cut]) == []
    assert sp.feed(data[cut:]) == ["steps:  50%|█████     | 1/2"]


def test_splitter_replaces_invalid_utf8_and_flushes_a_trailing_cr():
    sp = LineSplitter()
    assert sp.feed(b"bad \xff byte\n") == ["bad \ufffd byte"]
    assert sp.feed(b"last\r") == []
    last = sp.flush()
    assert last == ["last"] and last[0].cr
    assert sp.flush() == []


@given(
    st.lists(st.sampled_from([b"a", b"\xe2\x96\x88", b"\r", b"\n", b"\r\n", b" ", b"\xff"]), max_size=40),
    st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=10),
)
def test_splitter_result_does_not_depend_on_chunking(pieces, sizes):
    data = b"".join(pieces)
    whole = split_all(data, None)
    sp, out, i, k = LineSplitter(), [], 0, 0
    while i < len(data):
        out += sp.feed(data[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    out += sp.flush()
    assert out == whole
    assert [ln.cr for ln in out] == [ln.cr for ln in whole]
    expected = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    assert "\n".join(out) == (expected[:-1] if expected.endswith("\n") else expected)


# ---------------------------------------------------------------------------------------------------------------
# parse_tqdm


def test_parse_tqdm_musubi_example():
    b = parse_tqdm("steps:  12%|█▏        | 120/1000 [10:00<1:13:20,  5.00s/it, avr_loss=0.0912]")
    assert b is not None
    assert (b.desc, b.n, b.total) == ("steps", 120, 1000)
    assert (b.elapsed_s, b.remaining_s, b.s_per_it) == (600.0, 4400.0, 5.0)
    assert b.postfix == {"avr_loss": 0.0912}


def test_parse_tqdm_variants():
    b = parse_tqdm("12it [00:03,  3.91it/s]")
    assert (b.desc, b.n, b.total, b.elapsed_s, b.remaining_s) == ("", 12, None, 3.0, None)
    assert b.s_per_it == pytest.approx(1 / 3.91)
    b = parse_tqdm("steps:   0%|          | 0/16 [00:00<?, ?it/s]INFO:musubi_tuner.training.trainer_base:x")
    assert (b.desc, b.n, b.total, b.remaining_s, b.s_per_it, b.postfix) == ("steps", 0, 16, None, None, {})
    b = parse_tqdm("\x1b[A 35%|███▌      | 7/20 [00:11<00:21,  1.62s/it]\x1b[A")
    assert (b.desc, b.n, b.total, b.s_per_it) == ("", 7, 20, 1.62)
    b = parse_tqdm("steps:  75%|███████▌  | 3/4 [00:14<00:04,  4.83s/it, avr_loss=nan]  ")
    assert math.isnan(b.postfix["avr_loss"])
    b = parse_tqdm("steps: 100%|##########| 4/4 [1:01:54<00:00, 928.62s/it, Keys Scaled=3, avr_loss=1e-5]")
    assert b.elapsed_s == 3714.0 and b.postfix == {"Keys Scaled": 3.0, "avr_loss": 1e-5}
    b = parse_tqdm("cache: 5it [00:01, 4.00it/s]")
    assert (b.desc, b.n, b.total, b.s_per_it) == ("cache", 5, None, 0.25)


@pytest.mark.parametrize(
    "line",
    ["", "epoch 1/2", "saving checkpoint: /x/lora.safetensors", "INFO:musubi_tuner.x:total batches: 12", "  50%|"],
)
def test_parse_tqdm_rejects_other_lines(line):
    assert parse_tqdm(line) is None


@given(
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=1, max_value=5000),
    st.floats(min_value=0.0, max_value=300000.0),
    st.sampled_from([None, "avr_loss=0.0912", "avr_loss=nan"]),
)
def test_parse_tqdm_reads_what_tqdm_writes(n, extra, elapsed, postfix):
    total = n + extra - 1 if n else extra  # tqdm treats total=0 as no total
    line = bar(n, total, elapsed, postfix)
    b = parse_tqdm(line)
    assert b is not None, line
    assert (b.desc, b.n, b.total) == ("steps", n, total)
    assert b.elapsed_s == int(elapsed)
    if n and elapsed >= 0.01:
        assert b.s_per_it == pytest.approx(elapsed / n, rel=0.006, abs=0.006)
    if postfix:
        assert "avr_loss" in b.postfix


def test_parse_time_and_format_duration():
    assert parse_time("05:07") == 307.0 and parse_time("2:03:04") == 7384.0
    assert parse_time("?") is None and parse_time("") is None
    assert [format_duration(s) for s in (7968, 185, 12.4, None, -1)] == ["2h12m", "3m05s", "12s", "?", "?"]


# ---------------------------------------------------------------------------------------------------------------
# TrainProgress on the raw captures


@pytest.mark.parametrize("raw", RAWS, ids=[p.stem for p in RAWS])
@pytest.mark.parametrize("chunk", [None, 1, 7, 4096])
def test_raw_capture(raw, chunk):
    expect = json.loads(raw.with_suffix(".expect.json").read_text())
    offset = expect.get("step_offset", 0)
    progress = TrainProgress(expect.get("total_steps", expect["total"]), offset, 0.0, clock=Clock())
    for line in split_all(raw.read_bytes(), chunk):
        progress.feed_line(line)
    assert progress.step == expect["final_step"]
    assert progress.total == expect["total"]
    assert progress.bar_resets == expect["bar_resets"]
    if expect["last_avr_loss"] == "nan":
        assert math.isnan(progress.avg_loss)
    else:
        assert progress.avg_loss == pytest.approx(expect["last_avr_loss"])
    if "epoch" in expect:
        assert [progress.epoch, progress.epochs] == expect["epoch"]
    if "checkpoints" in expect:
        assert [[s, Path(p).name] for s, p in progress.checkpoints] == expect["checkpoints"]
    if "finished" in expect:
        assert progress.finished is expect["finished"]
    if "nan_stop" in expect:
        assert progress.nan_stop() is expect["nan_stop"]
    json.dumps(progress.snapshot(), allow_nan=False)


def test_capture_timing_excludes_startup_and_matches_the_real_step_time():
    raw = FIXTURES / "musubi_t2v_2epochs_samples.raw"
    progress, seen = TrainProgress(16, 0, 0.0, clock=Clock()), []
    for line in split_all(raw.read_bytes(), 4096):
        if progress.feed_line(line) == "checkpoint" and not seen:
            seen.append(progress.s_per_step)
    # steps of 4.8 s +-3 % after a 95 s first step (compose_capture.py): tqdm's 4.16 s/it at n=8 is n/(n-1) low
    assert seen[0] == pytest.approx(4.8, rel=0.03)


# ---------------------------------------------------------------------------------------------------------------
# TrainProgress units


def test_status_line_exact_shape():
    p = TrainProgress(2000, 0, 0.0, clock=Clock(), save_every_n_steps=100, post_train_s=60.0)
    p.feed_line(bar(340, 2000, 339 * 4.8, "avr_loss=0.094"))
    p.update_scalars(340, loss=0.0912, lr=1e-4)
    assert p.status_line((21.3, 24.0)) == (
        "step 340/2000  4.8 s/step  loss 0.091 (avg 0.094)  lr 1.0e-04  VRAM 21.3/24.0 GB  "
        "ETA train 2h12m, run 2h13m  next checkpoint step 400"
    )


def test_status_line_leaves_out_unknown_parts():
    p = TrainProgress(2000, 0, 0.0, clock=Clock())
    assert p.status_line() == "step 0/2000  next checkpoint step 2000"
    p.feed_line(bar(0, 2000, 0))
    p.feed_line(bar(1, 2000, 0.0001, "avr_loss=0.5"))
    assert p.status_line() == "step 1/2000  avg loss 0.500  next checkpoint step 2000"
    p.update_scalars(1, loss=0.004)
    assert p.status_line().startswith("step 1/2000  loss 4.00e-03 (avg 0.500)")


def test_true_step_with_offset_and_bar_total():
    p = TrainProgress(500, 300, 0.0, clock=Clock())
    assert (p.step, p.total) == (300, 500)
    assert p.feed_line(bar(5, 210, 20.0)) == "steps"
    assert (p.step, p.total, p.local_step) == (305, 510, 5)


def test_sample_bars_and_other_lines_do_not_count():
    p = TrainProgress(100, 0, 0.0, clock=Clock())
    p.feed_line(bar(10, 100, 45.0))
    assert p.feed_line("\x1b[A" + bar(15, 20, 20.0, prefix="")) == "bar"
    assert p.feed_line("12it [00:03,  3.91it/s]") == "bar"
    assert p.feed_line("INFO:musubi_tuner.training.trainer_base:prompt: x") is None
    assert p.feed_line("epoch 2/4") == "epoch" and (p.epoch, p.epochs) == (2, 4)
    assert p.feed_line("saving checkpoint: /o/lora-000001.safetensors") == "checkpoint"
    assert p.checkpoints == [(10, "/o/lora-000001.safetensors")]
    assert p.feed_line("INFO:musubi_tuner.training.trainer_base:model saved.") == "saved" and p.finished
    assert p.step == 10


def test_s_per_step_corrects_tqdm_rate_for_the_reset():
    p = TrainProgress(100, 0, 0.0, clock=Clock())
    p.feed_line(bar(1, 100, 0.0002))
    assert p.s_per_step is None  # one step after the reset says nothing about the pace
    p.feed_line(bar(11, 100, 50.0))  # 10 steps of 5 s since the first update
    assert p.s_per_step == pytest.approx(5.0, rel=1e-3)
    assert p.eta_train_s == pytest.approx(89 * 5.0, rel=1e-3)


def test_s_per_step_measured_when_tqdm_shows_no_rate():
    clock = Clock(0.0)
    p = TrainProgress(100, 0, 0.0, clock=clock, post_train_s=30.0)
    line = "steps:   1%|          | {}/100 [00:00<?, ?it/s]"
    p.feed_line(line.format(1))
    clock.t = 12.0
    p.feed_line(line.format(4))
    assert p.s_per_step == pytest.approx(4.0)
    assert p.eta_run_s == pytest.approx(96 * 4.0 + 30.0)
    clock.t = 20.0
    assert p.snapshot()["elapsed_s"] == 20.0


def test_next_checkpoint_step_from_step_and_epoch_saves():
    p = TrainProgress(300, 0, 0.0, clock=Clock(), steps_per_epoch=50, save_every_n_epochs=2)
    got = []
    for n in (0, 99, 100, 150, 250, 299, 300):
        p.feed_line(bar(n, 300, n * 5.0))
        got.append(p.next_checkpoint_step)
    assert got == [100, 100, 200, 200, 300, 300, None]  # epoch 6 is the last: only the final save
    p = TrainProgress(1500, 1000, 0.0, clock=Clock(), save_every_n_steps=200)
    p.feed_line(bar(340, 500, 1000.0))
    assert p.next_checkpoint_step == 1400  # musubi counts run-locally: local 400


def test_nan_guard():
    p = TrainProgress(20, 0, 0.0, clock=Clock())
    p.feed_line(bar(0, 20, 0))
    p.feed_line(bar(1, 20, 0.001, "avr_loss=0.1"))
    for n in (2, 3, 4):
        p.feed_line(bar(n, 20, n * 5.0, "avr_loss=0.1" if n == 2 else "avr_loss=nan"))  # update (stale postfix)
        p.feed_line(bar(n, 20, n * 5.0, "avr_loss=nan"))  # set_postfix
        p.feed_line(bar(n, 20, n * 5.0, "avr_loss=nan"))  # the same state seen twice changes nothing
    assert p.nan_streak == 3 and p.nan_stop() and not p.nan_stop(limit=4)
    p.feed_line(bar(5, 20, 25.0, "avr_loss=0.2"))
    assert p.nan_streak == 0 and not p.nan_stop()
    assert NAN_STOP_MARK == "hvlora: stopped: loss is NaN"
    assert nan_stop_line(3, 4) == "hvlora: stopped: loss is NaN for 3 consecutive steps (step 4)"
    assert nan_stop_line(3, 4).startswith(NAN_STOP_MARK)


def test_snapshot_is_strict_json():
    p = TrainProgress(20, 0, 0.0, clock=Clock())
    p.feed_line(bar(3, 20, 10.0, "avr_loss=nan"))
    p.update_scalars(3, loss=float("nan"), lr=2e-4)
    snap = p.snapshot()
    assert snap["avg_loss"] is None and snap["loss"] is None and snap["lr"] == 2e-4
    assert snap["step"] == 3 and snap["nan_streak"] == 1
    json.dumps(snap, allow_nan=False)


def test_update_scalars_ignores_older_steps():
    p = TrainProgress(20, 0, 0.0, clock=Clock())
    p.update_scalars(5, loss=0.2, lr=1e-4)
    p.update_scalars(4, loss=0.9, lr=9.0)
    assert (p.loss, p.lr) == (0.2, 1e-4)


# ---------------------------------------------------------------------------------------------------------------
# MetricsLog


def test_metrics_log_roundtrip_with_null_for_nan(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, wall_clock=lambda: 1700000000.5)
    log.log(1, loss=0.2, avg_loss=0.2, lr=1e-4, s_per_step=None, segment=0)
    log.log(2, loss=float("nan"), avg_loss=float("nan"), lr=1e-4, s_per_step=5.0, segment=0)
    for line in path.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    rows = read_metrics(path)
    assert rows == [
        {
            "step": 1,
            "loss": 0.2,
            "avg_loss": 0.2,
            "lr": 1e-4,
            "s_per_step": None,
            "wall_time": 1700000000.5,
            "segment": 0,
        },
        {
            "step": 2,
            "loss": None,
            "avg_loss": None,
            "lr": 1e-4,
            "s_per_step": 5.0,
            "wall_time": 1700000000.5,
            "segment": 0,
        },
    ]
    assert MetricsLog.read(tmp_path / "missing.jsonl") == []


def test_metrics_read_tolerates_a_cut_last_line_and_appending_after_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    MetricsLog(path, wall_clock=lambda: 1.0).log(1, loss=0.3)
    with open(path, "ab") as f:
        f.write(b'{"step": 2, "loss": 0.2')  # killed mid-write
    assert [r["step"] for r in MetricsLog.read(path)] == [1]
    MetricsLog(path, wall_clock=lambda: 2.0).log(3, loss=0.1, segment=1)  # the next segment appends
    assert [(r["step"], r["loss"]) for r in MetricsLog.read(path)] == [(1, 0.3), (3, 0.1)]


def test_metrics_later_lines_win_and_steps_stay_monotonic(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, wall_clock=lambda: 0.0)
    for step in range(1, 6):
        log.log(step, avg_loss=1.0 / step, segment=0)
    log.log(5, loss=0.5, lr=1e-4, segment=0)  # the TensorBoard values of step 5 arrive later
    for step in range(4, 8):  # resumed from the step-3 state: steps 4 and 5 again
        log.log(step, avg_loss=10.0 + step, segment=1)
    rows = MetricsLog.read(path)
    assert [(r["step"], r["segment"]) for r in rows] == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1), (7, 1)]
    assert rows[4]["avg_loss"] == 15.0 and rows[4]["loss"] is None
    log2 = MetricsLog(tmp_path / "m2.jsonl", wall_clock=lambda: 0.0)
    log2.log(5, avg_loss=0.2)
    log2.log(5, loss=0.5, lr=1e-4)
    assert MetricsLog.read(tmp_path / "m2.jsonl")[0] | {"wall_time": 0} == {
        "step": 5, "loss": 0.5, "avg_loss": 0.2, "lr": 1e-4, "s_per_step": None, "wall_time": 0, "segment": 0,
    }  # fmt: skip


def test_metrics_log_progress_writes_only_changes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, wall_clock=lambda: 0.0)
    p = TrainProgress(10, 5, 0.0, clock=Clock())
    assert log.log_progress(p, segment=1) is None  # no step yet
    p.feed_line(bar(1, 5, 0.001, "avr_loss=0.3"))
    assert log.log_progress(p, segment=1)["step"] == 6
    assert log.log_progress(p, segment=1) is None
    p.update_scalars(6, loss=0.25, lr=1e-4)
    assert log.log_progress(p, segment=1)["loss"] == 0.25
    rows = MetricsLog.read(path)
    assert len(rows) == 1 and rows[0]["loss"] == 0.25 and rows[0]["avg_loss"] == 0.3 and rows[0]["segment"] == 1


# ---------------------------------------------------------------------------------------------------------------
# StatusPrinter, CacheProgress


def test_status_printer_tty_rewrites_in_place():
    out = io.StringIO()
    sp = StatusPrinter(out, is_tty=True, clock=Clock(), width=12)
    sp.show("step 1/10")
    sp.show("step 2/10 and a long tail")
    sp.clear()
    sp.final("done")
    assert out.getvalue() == "\rstep 1/10\x1b[K\rstep 2/10 a\x1b[K\r\x1b[K\rdone\x1b[K\n"


def test_status_printer_plain_at_most_every_30_s():
    out, clock = io.BytesIO(), Clock(0.0)
    sp = StatusPrinter(out, is_tty=False, clock=clock)
    for t, line in ((0, "a"), (10, "b"), (29.9, "c"), (30, "d"), (45, "e"), (61, "f")):
        clock.t = t
        sp.show(line)
    clock.t = 62
    sp.final("end")
    assert out.getvalue() == b"a\nd\nf\nend\n"


def test_cache_progress():
    clock = Clock(0.0)
    c = CacheProgress(48, clock)
    c.update(0)
    assert c.status_line() == "cache latents: 0/48 items"
    clock.t = 40.0  # model loading: not part of the rate
    c.update(3)
    clock.t = 43.0
    c.update(12)
    assert c.items_per_s == pytest.approx(3.0)
    assert c.status_line() == "cache latents: 12/48 items  3.0 items/s  ETA 12s"
    c.update(5)  # counts never go down
    assert c.done == 12
    slow = CacheProgress(10, clock, label="cache text encoder outputs")
    slow.update(1)
    clock.t = 83.0
    slow.update(3)
    assert slow.status_line() == "cache text encoder outputs: 3/10 items  20.0 s/item  ETA 2m20s"
    slow.update(10)
    assert slow.status_line() == "cache text encoder outputs: 10/10 items  4.4 s/item" and slow.eta_s == 0.0


# ---------------------------------------------------------------------------------------------------------------
# TensorBoard


def _standin_writer():
    spec = importlib.util.spec_from_file_location("standin_tfevents", STANDIN_TFEVENTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EventWriter


def test_read_tb_scalars_incrementally(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "tensorboard" / "20261201101500" / "network_train"
    writer = _standin_writer()(run)
    for step in (1, 2):
        writer.scalars(step, {"loss/current": 0.1 * step, "loss/average": 0.05, "lr/unet": 1e-4, "other": 3.0})
    rows, state = read_tb_scalars(tmp_path / "tensorboard")
    assert [(r["run"], r["step"]) for r in rows] == [
        ("20261201101500/network_train", 1),
        ("20261201101500/network_train", 2),
    ]
    assert rows[1]["loss/current"] == pytest.approx(0.2) and rows[1]["lr/unet"] == pytest.approx(1e-4)
    assert "other" not in rows[0] and rows[0]["wall_time"] > 0
    writer.scalars(2, {"loss/epoch": 0.07})  # per-epoch tag: not asked for
    writer.scalars(3, {"loss/current": 0.3})
    rows, state = read_tb_scalars(tmp_path / "tensorboard", state=state)
    assert [(r["step"], r["loss/current"]) for r in rows] == [(3, pytest.approx(0.3))]
    rows, state = read_tb_scalars(tmp_path / "tensorboard", state=state)
    assert rows == []
    writer.close()
    state.close()


def test_read_tb_scalars_waits_for_a_cut_record(tmp_path):
    pytest.importorskip("tensorboard")
    src = tmp_path / "src"
    writer = _standin_writer()(src)
    writer.scalars(1, {"loss/current": 0.5})
    writer.scalars(2, {"loss/current": 0.4})
    writer.close()
    data = writer.path.read_bytes()
    cut = tmp_path / "tb" / "run" / "network_train" / writer.path.name
    cut.parent.mkdir(parents=True)
    cut.write_bytes(data[:-7])  # the writer is mid-record
    rows, state = read_tb_scalars(tmp_path / "tb")
    assert [r["step"] for r in rows] == [1]
    with open(cut, "ab") as f:
        f.write(data[-7:])
    rows, state = read_tb_scalars(tmp_path / "tb", state=state)
    assert [(r["step"], r["loss/current"]) for r in rows] == [(2, pytest.approx(0.4))]


def test_read_tb_scalars_from_torch_summary_writer(tmp_path):
    """accelerate's TensorBoard tracker writes with torch's SummaryWriter, one add_scalar per tag."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "lora20261201101500" / "network_train"))
    for step in (1, 2, 3):
        for tag, v in {"loss/current": 1.0 / step, "loss/average": 0.5, "lr/unet": 1e-4}.items():
            w.add_scalar(tag, v, global_step=step)
    w.flush()
    rows, state = read_tb_scalars(tmp_path)
    w.close()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[2]["loss/current"] == pytest.approx(1 / 3) and rows[2]["loss/average"] == 0.5
    assert read_tb_scalars(tmp_path / "missing")[0] == []
