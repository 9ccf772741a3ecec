"""Which run a command continues (runs.choose) and what defines a run (runs.identity), on real data checks, plans
and run records: the exact output name, the newest unfinished run, normalised identities (alpha, frame settings,
model files by revision and resolved commit)."""

from __future__ import annotations

import json

import pytest
from mediafactory import dataset_zip

from hvlora.cache import caches
from hvlora.core import pipeline, runs
from hvlora.core.context import new_run_paths
from hvlora.core.errors import UserError
from hvlora.data import preflight
from hvlora.families.hunyuan_video_1_5 import catalog
from hvlora.training import plan
from hvlora.weights.manifest import Manifest, Record


def identity_of(tmp_path, make_settings, *flags, videos=True):
    z = tmp_path / "data" / ("v.zip" if videos else "i.zip")
    if not z.exists():
        dataset_zip(
            tmp_path / "src",
            z,
            images={"a.png": "a cat"},
            videos={"v.mp4": ("a walk", 9)} if videos else None,
        )
    s = make_settings(
        "--resolution", "64x64", "--target_frames", "1,5", "--device", "cpu", "--input_zip", str(z), *flags
    )
    report = preflight.run(s, pipeline.media_store(s))
    p = plan.make(s, report.buckets(), [], host_ram=64 * 2**30)
    return s, p, runs.identity(s, report, caches.plan(s, report, p.memory, None), p)


def make_run(s, p, ident, stamp: str, status: str | None = "failed", name: str | None = None):
    """A run folder as the pipeline leaves it: run.json and summary.json."""
    import datetime as dt

    when = dt.datetime.strptime(stamp, "%Y%m%d-%H%M%S").replace(tzinfo=dt.timezone.utc)
    root = new_run_paths(s.output_dir, name or s.output_name, when).root
    runs.record(root, {**ident, "output_name": name or s.output_name}, s, p)
    (root / "summary.json").write_text(json.dumps({"status": status}))
    return root


def test_choose_continues_the_newest_unfinished_run_of_exactly_this_output_name(tmp_path, make_settings):
    s, p, ident = identity_of(tmp_path, make_settings)
    older = make_run(s, p, ident, "20250101-000000")
    newer = make_run(s, p, ident, "20250102-000000")
    # runs of other output names that share the prefix: `lora-v2-2024...` sorts before `lora-2025...` in reverse
    # name order; it must never be a candidate, and it must not stop the search
    make_run(s, p, {**ident, "rank": 99}, "20240101-000000", name=f"{s.output_name}-v2")
    make_run(s, p, {**ident, "rank": 99}, "20990101-000000", name=f"{s.output_name}-x")
    choice = runs.choose(s, ident)
    assert choice.run_dir == newer and choice.messages == []
    assert runs.runs_of(s.output_dir, s.output_name) == [newer, older]


def test_choose_skips_finished_runs_and_reports_a_changed_newest_candidate(tmp_path, make_settings):
    s, p, ident = identity_of(tmp_path, make_settings)
    make_run(s, p, ident, "20250101-000000")
    make_run(s, p, ident, "20250103-000000", status="succeeded")  # finished: never continued by itself
    assert runs.choose(s, ident).run_dir.name.endswith("20250101-000000")
    changed = make_run(s, p, {**ident, "rank": 8}, "20250102-000000")
    choice = runs.choose(s, ident)
    assert choice.run_dir is None and choice.messages == [
        f"not continuing the unfinished run {changed.name}: rank 8 -> {s.rank} changed"
    ]
    s_new = make_settings(*s_flags(s), "--new_run")
    assert runs.choose(s_new, ident) == runs.Choice(None, ["--new_run: starting a new run"])


def s_flags(s) -> list[str]:
    return ["--output_dir", str(s.output_dir)]


def test_choose_with_resume_refuses_what_is_not_a_run_of_this_folder_or_another_lora(tmp_path, make_settings):
    s, p, ident = identity_of(tmp_path, make_settings)
    run = make_run(s, p, ident, "20250101-000000")
    ok = make_settings(*s_flags(s), "--resume", str(run))
    assert runs.choose(ok, ident).run_dir == run
    with pytest.raises(UserError, match="not a run folder of this trainer"):
        runs.choose(make_settings(*s_flags(s), "--resume", str(tmp_path)), ident)
    with pytest.raises(UserError, match=r"trains another LoRA than that run \(rank 32 -> 4\)"):
        runs.choose(ok, {**ident, "rank": 4})


def test_alpha_unset_is_alpha_equal_to_rank(tmp_path, make_settings):
    _, _, unset = identity_of(tmp_path, make_settings, "--rank", "16")
    _, _, same = identity_of(tmp_path, make_settings, "--rank", "16", "--network_alpha", "16")
    _, _, half = identity_of(tmp_path, make_settings, "--rank", "16", "--network_alpha", "8")
    assert runs.differences(unset, same) == []
    assert runs.differences(unset, half) == ["network_alpha None -> 8.0"]
    _, _, rank8 = identity_of(tmp_path, make_settings, "--rank", "8")
    assert runs.differences(unset, rank8) == ["rank 16 -> 8"]  # alpha follows an unset rank: one change, said once


@pytest.mark.parametrize(
    ("mode", "used", "ignored"),
    [
        ("head", (), ("--frame_stride", "--frame_sample", "--max_frames")),
        ("slide", ("--frame_stride",), ("--frame_sample", "--max_frames")),
        ("uniform", ("--frame_sample",), ("--frame_stride", "--max_frames")),
        ("full", ("--max_frames",), ("--frame_stride", "--frame_sample")),
    ],
)
def test_frame_settings_count_only_where_the_extraction_mode_reads_them(tmp_path, make_settings, mode, used, ignored):
    base = ("--frame_extraction", mode, "--frame_sample", "2")
    _, _, ident = identity_of(tmp_path, make_settings, *base)
    values = {"--frame_stride": "3", "--frame_sample": "3", "--max_frames": "5"}
    for flag in ignored:
        _, _, other = identity_of(tmp_path, make_settings, *base, flag, values[flag])
        assert runs.differences(ident, other) == [], flag
    for flag in used:
        _, _, other = identity_of(tmp_path, make_settings, *base, flag, values[flag])
        assert runs.differences(ident, other), flag


def test_without_videos_no_frame_setting_defines_the_lora(tmp_path, make_settings):
    _, _, ident = identity_of(tmp_path, make_settings, videos=False)
    _, _, other = identity_of(
        tmp_path, make_settings, "--target_frames", "1,9", "--frame_extraction", "chunk", videos=False
    )
    assert runs.differences(ident, other) == []
    # uniform with frame_sample 1 is what musubi turns it into: head
    _, _, head = identity_of(tmp_path, make_settings)
    _, _, uniform1 = identity_of(tmp_path, make_settings, "--frame_extraction", "uniform", "--frame_sample", "1")
    assert runs.differences(head, uniform1) == []


def test_the_model_files_commit_and_revision_define_the_lora(tmp_path, make_settings):
    s, p, before = identity_of(tmp_path, make_settings)
    assert before["weights"]["dit"] == {
        "file": catalog.weights_for("t2v")["dit"].key,
        "revision": "main",
        "commit": None,  # not downloaded yet
    }
    _, _, pinned = identity_of(tmp_path, make_settings, "--revision", "abc123")
    assert any(
        line.startswith("dit (") and "revision main -> abc123" in line for line in runs.differences(before, pinned)
    )
    run = make_run(s, p, before, "20250101-000000")
    # after the download the commit is known and recorded
    manifest = Manifest(s.models_dir)
    for w in catalog.weights_for("t2v").values():
        manifest.put(w.key, Record(w.repo_id, w.filename, "main", "c" * 40, 1, "0" * 64, 0, ""))
    assert runs.settle_weights(run, s) == []
    recorded = json.loads((run / "run.json").read_text())["identity"]["weights"]["dit"]["commit"]
    assert recorded == "c" * 40
    _, _, after = identity_of(tmp_path, make_settings)
    assert runs.differences(recorded_identity(run), after) == []
    # main moved on the hub: the same command would continue on another DiT
    dit = catalog.weights_for("t2v")["dit"]
    manifest.put(dit.key, Record(dit.repo_id, dit.filename, "main", "d" * 40, 1, "1" * 64, 0, ""))
    _, _, moved = identity_of(tmp_path, make_settings)
    assert runs.differences(recorded_identity(run), moved) == [f"dit ({dit.key}) commit {'c' * 40} -> {'d' * 40}"]
    assert runs.settle_weights(run, s) == [f"{dit.key}: commit {'c' * 40} -> {'d' * 40}"]


def recorded_identity(run) -> dict:
    return json.loads((run / "run.json").read_text())["identity"]
