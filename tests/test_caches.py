"""Item-keyed caches: what changes a store's key, what changes an item's entry, and the store's handling of real
safetensors files (complete, truncated, made from another caption), staging salvage and the run's hard-link view."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from mediafactory import dataset_zip
from safetensors.torch import save_file

from hvlora.cache import caches, cachestore
from hvlora.core import pipeline
from hvlora.data import preflight
from hvlora.families.hunyuan_video_1_5 import FRAMES
from hvlora.families.hunyuan_video_1_5 import memory as presets
from hvlora.training.presets import KNOBS


def report_of(tmp_path, make_settings, flags=(), images=None, videos=None):
    z = tmp_path / "data" / "d.zip"
    if not z.exists():
        dataset_zip(tmp_path / "src", z, images=images or {"a.png": "a cat"}, videos=videos or {"v.mp4": ("a walk", 9)})
    s = make_settings("--resolution", "64x64", "--target_frames", "1,5", "--input_zip", str(z), *flags)
    return s, preflight.run(s, pipeline.media_store(s))


def plan_caches(tmp_path, make_settings, flags=(), preset=None, **kw):
    s, report = report_of(tmp_path, make_settings, flags, **kw)
    knobs = {k: getattr(s, k) for k in KNOBS if getattr(s, k) is not None}  # the knobs set by flags
    return caches.plan(s, report, presets.resolve(preset, knobs), None)


def test_latent_key_follows_what_changes_latents_and_nothing_else(tmp_path, make_settings):
    base = plan_caches(tmp_path, make_settings)
    for flags in (("--task", "i2v"), ("--resolution", "128x128"), ("--device", "cpu")):
        other = plan_caches(tmp_path, make_settings, flags)
        assert other.latent_store.root != base.latent_store.root, flags
    # captions, the trigger word, frame settings, training settings and the memory knobs (VAE tiling, presets) do
    # not change what a latent file holds: following "--vram 16" after an OOM re-encodes nothing
    for flags in (
        ("--trigger_word", "ohwx"),
        ("--target_frames", "1,5,9"),
        ("--frame_extraction", "chunk"),
        ("--rank", "8"),
        ("--learning_rate", "3e-4"),
        ("--output_name", "other"),
        ("--vae_sample_size", "64"),
        ("--vae_sample_size", "0"),
        ("--vae_enable_patch_conv",),
    ):
        assert plan_caches(tmp_path, make_settings, flags).latent_store.root == base.latent_store.root, flags
    for preset in (16, 24):
        assert plan_caches(tmp_path, make_settings, preset=preset).latent_store.root == base.latent_store.root


def test_fp8_text_encoder_outputs_reuse_the_bf16_ones_and_not_the_other_way(tmp_path, make_settings):
    base = plan_caches(tmp_path, make_settings)
    fp8 = plan_caches(tmp_path, make_settings, ("--fp8_vl",))
    assert fp8.te_store.root != base.te_store.root and [st.root for st in fp8.te_reuse] == [base.te_store.root]
    assert base.te_reuse == []  # bf16 asked: fp8 outputs (lower precision) are never used
    assert plan_caches(tmp_path, make_settings, ("--device", "cpu")).te_store.root != base.te_store.root
    assert plan_caches(tmp_path, make_settings, ("--resolution", "128x128")).te_store.root == base.te_store.root
    # bf16 outputs on disk: an fp8 run counts them as cached and links them in (no extra disk); the reverse never
    for e in base.te:
        _tensor_file(base.te_store.path(e), e.caption)
    assert not [m for m in caches.missing(fp8) if m.endswith("_te.safetensors")]
    assert fp8.te_store.reuse_from(fp8.te_reuse, fp8.te) == {base.te_store.root: 2}
    assert all(fp8.te_store.path(e).stat().st_ino == base.te_store.path(e).stat().st_ino for e in fp8.te)
    elsewhere = ("--output_dir", str(tmp_path / "o" / "output"))
    other = plan_caches(tmp_path, make_settings, ("--fp8_vl", *elsewhere))
    for e in other.te:
        _tensor_file(other.te_store.path(e), e.caption)
    bf16 = plan_caches(tmp_path, make_settings, elsewhere)
    assert len([m for m in caches.missing(bf16) if m.endswith("_te.safetensors")]) == 2
    assert bf16.te_store.reuse_from(bf16.te_reuse, bf16.te) == {}


def test_one_changed_caption_changes_one_text_encoder_entry_and_no_latent(tmp_path, make_settings):
    a = plan_caches(tmp_path / "a", make_settings, images={"a.png": "a cat", "b.png": "a dog"})
    b = plan_caches(tmp_path / "b", make_settings, images={"a.png": "a cat", "b.png": "a black dog"})
    assert {e.store_name for e in a.latents} == {e.store_name for e in b.latents}
    changed = {e.store_name for e in b.te} - {e.store_name for e in a.te}
    assert len(changed) == 1
    # the trigger word is part of every final caption: a new trigger word is new text for every item
    c = plan_caches(tmp_path / "b", make_settings, ("--trigger_word", "ohwx"))
    assert not {e.store_name for e in c.te} & {e.store_name for e in b.te}


def _tensor_file(path: Path, caption: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"architecture": "hunyuan_video_1_5"} | ({"caption1": caption} if caption is not None else {})
    save_file({"latents": torch.arange(4096, dtype=torch.float32)}, str(path), metadata=meta)
    return path


def test_store_accepts_only_complete_files_from_the_right_caption(tmp_path):
    store = cachestore.Store(tmp_path / "te-x")
    e = cachestore.te_entry("images", "a", "a cat", FRAMES.te_suffix)
    assert store.missing([e]) == ([e], [])
    _tensor_file(store.path(e), "a cat")
    assert store.valid(e) and store.missing([e]) == ([], [])
    _tensor_file(store.path(e), "a dog")  # made from another caption: stale
    todo, removed = store.missing([e])
    assert todo == [e] and "another caption" in removed[0] and not store.path(e).exists()
    data = _tensor_file(store.path(e), "a cat").read_bytes()
    store.path(e).write_bytes(data[: len(data) // 2])  # a kill mid-write
    todo, removed = store.missing([e])
    assert todo == [e] and "bytes" in removed[0]


def test_staging_salvages_complete_files_of_a_killed_run(tmp_path):
    store = cachestore.Store(tmp_path / "latents-x")
    entries = cachestore.latent_entries(
        "videos",
        "zabc-10",
        "clip",
        ["clip_00000-001_0064x0064_hv15.safetensors", "clip_00000-005_0064x0064_hv15.safetensors"],
    )
    done, cut = (store.staged_path(e) for e in entries)
    _tensor_file(done)
    cut.write_bytes(_tensor_file(cut).read_bytes()[:100])
    stray = _tensor_file(store.staging / "cache" / "videos" / "other_0064x0064_hv15.safetensors")
    assert store.prepare_staging(entries) == [cut.name]
    assert done.exists() and not cut.exists() and not stray.exists()
    _tensor_file(cut)  # musubi encodes the missing one (--skip_existing keeps the complete one)
    assert store.take_staged(entries) == []
    assert all(store.valid(e) for e in entries) and not done.exists()
    view = tmp_path / "run" / "cache"
    store.link_view(entries, view)
    linked = view / "videos" / "clip_00000-005_0064x0064_hv15.safetensors"
    assert linked.stat().st_ino == store.path(entries[1]).stat().st_ino  # a hard link: no extra disk
    assert entries[0].store_name == "zabc-10/00000-001_0064x0064_hv15.safetensors"


def test_take_staged_reports_what_musubi_did_not_write(tmp_path):
    store = cachestore.Store(tmp_path / "latents-x")
    e = cachestore.latent_entries("images", "zk-1", "a", ["a_0080x0048_hv15.safetensors"])[0]
    problems = store.take_staged([e])
    assert len(problems) == 1 and "missing" in problems[0] and not store.valid(e)


def test_digest_index_hashes_a_folder_file_once(tmp_path):
    f = tmp_path / "a.png"
    f.write_bytes(b"one")
    index = cachestore.DigestIndex(tmp_path / "digests.json")
    first = cachestore.media_key("file:3:0", f, index)
    index.save()
    again = cachestore.DigestIndex(tmp_path / "digests.json")
    assert cachestore.media_key("file:3:0", f, again) == first and not again.changed
    f.write_bytes(b"two")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert cachestore.media_key("file:3:0", f, again) != first
    assert cachestore.media_key("zip:123:0000abcd", f, None) == "z0000abcd-123"


@pytest.mark.parametrize("recache", [False, True])
def test_recache_encodes_everything(tmp_path, recache):
    store = cachestore.Store(tmp_path / "te-x")
    e = cachestore.te_entry("images", "a", "a cat", FRAMES.te_suffix)
    _tensor_file(store.path(e), "a cat")
    assert store.missing([e], recache=recache)[0] == ([e] if recache else [])
