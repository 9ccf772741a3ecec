"""Model families: every registered family answers everything the generic code asks (its commands parse with musubi's
own parsers), nothing outside a family's folder knows a family's facts (checked on the modules' syntax trees), and a
second family registered here drives the real CLI and pipeline through a dry run with its own rules."""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from mediafactory import dataset_zip

from hvlora import families
from hvlora.core import config, pipeline, runs
from hvlora.core.cli import build_parser
from hvlora.core.errors import ConfigError
from hvlora.data.frames import FrameRules
from hvlora.families import CacheInputs, Converter, Family, HintAdvice, SampleDefaults
from hvlora.training import lorainfo, plan, prompts
from hvlora.training import musubi as trainer
from hvlora.training.plan import Launch
from hvlora.training.presets import KNOBS, Estimate, MemoryModel, MemoryPlan
from hvlora.weights.files import TokenizerRepo, WeightFile, WeightFolder

sys.path.insert(0, str(Path(__file__).resolve().parent / "standin"))
from musubi_tuner import _flags  # noqa: E402  (musubi's parsers, captured from v0.3.4)

PACKAGE = Path(families.__file__).resolve().parents[1]
MUSUBI_MODULES = set(json.loads(_flags.FLAGS_JSON.read_text())["modules"])
REGISTERED = families.names()


def parses(cmd: trainer.Command) -> None:
    """musubi's own parser accepts the command (argparse's SystemExit otherwise)."""
    assert cmd.module in MUSUBI_MODULES, f"{cmd.module}: capture its parser (tests/standin/dump_musubi_flags.py)"
    _flags.build_parser(cmd.module).parse_args(list(cmd.argv))


# --- what every registered family answers ---------------------------------------------------------------------------


def test_the_registry_defaults_to_hunyuan_video_1_5_and_names_each_family_by_its_folder():
    assert REGISTERED[0] == families.DEFAULT == "hunyuan_video_1_5"
    for name in REGISTERED:
        family = families.get(name)
        assert isinstance(family, Family) and family.name == name
        assert (PACKAGE / "families" / name / "__init__.py").is_file()
    with pytest.raises(KeyError):
        families.get("no_such_family")


@pytest.mark.parametrize("name", REGISTERED)
def test_every_family_answers_every_question(name):
    f = families.get(name)
    assert f.title and f.tasks and f.variants and f.defaults["dit_variant"] in f.variants
    for task in f.tasks:
        with pytest.raises(ConfigError, match="not-a-variant"):
            f.weights_for(task, "not-a-variant")
    components: set[str] = set()
    for task in f.tasks:
        trainable = []
        for variant in f.variants:
            try:  # a task and variant together may be refused, with the family's reason
                weights = f.weights_for(task, variant)
            except ConfigError as e:
                assert variant in str(e) and task in str(e), e
                continue
            trainable.append(variant)
            assert all(isinstance(w, (WeightFile, WeightFolder)) and task in w.tasks for w in weights.values())
            assert isinstance(weights["dit"], WeightFile) and weights["dit"].variant == variant
            components |= set(weights)
        assert trainable, f"{name}: no variant trains {task}"
    assert "dit" in f.weights_for(f.tasks[0], f.defaults["dit_variant"])
    assert all(isinstance(t, TokenizerRepo) for t in f.tokenizers)
    option_names = set(config.OPTION_BY_NAME)
    settings_fields = {fld.name for fld in dataclasses.fields(config.Settings)}
    for cache in (f.latent_cache, f.text_encoder_cache):
        assert isinstance(cache, CacheInputs)
        assert set(cache.components) <= components and set(cache.settings) <= settings_fields
        assert all(set(cache.knobs) <= set(m.knobs) <= set(KNOBS) for m in f.memory_models())
    assert isinstance(f.frames, FrameRules) and f.frames.architecture.isidentifier()
    assert f.frames.target_fps > 0 and f.frames.reso_step > 0 and f.frames.frame_step > 0
    assert f.text_encoder_max_tokens > 0
    assert set(f.still_images_refused) <= set(f.tasks)
    assert isinstance(f.samples, SampleDefaults) and set(f.samples.image_tasks) <= set(f.tasks)
    assert isinstance(f.hints, HintAdvice) and all(vars(f.hints).values())
    assert f.converter is None or isinstance(f.converter, Converter)
    assert set(f.help) <= option_names and set(f.defaults) <= option_names and set(f.variant_memory) <= set(f.variants)
    assert all(config.OPTION_BY_NAME[k].family_default for k in f.defaults)
    for part, protocol in ((f.generator, families.Generator), (f.card, families.HubCard)):  # --generate, --push_to_hub
        wanted = {n for n in dir(protocol) if not n.startswith("_")} | set(protocol.__annotations__)
        assert part is None or not [n for n in wanted if not hasattr(part, n)], (name, protocol.__name__)


@pytest.mark.parametrize(
    ("name", "variant"), [(name, variant) for name in REGISTERED for variant in families.get(name).variants]
)
def test_every_variants_memory_model_resolves_flags_and_estimates(name, variant):
    m = families.get(name).memory_for(variant)
    assert isinstance(m, MemoryModel) and m.presets
    assert 0 < m.max_blocks_to_swap < m.num_blocks
    assert m.swap_ladder[0] == 0 and list(m.swap_ladder) == sorted(set(m.swap_ladder))
    assert m.swap_ladder[-1] <= m.max_blocks_to_swap
    for task in families.get(name).tasks:
        for preset in (None, *m.presets):
            plan = m.resolve(preset, {})
            assert isinstance(plan, MemoryPlan) and plan.blocks_to_swap <= m.max_blocks_to_swap
            flags = m.musubi_flags(plan, sampling=True)
            assert set(flags) == {"cache_latents", "cache_text_encoder_outputs", "train"}
            est = m.estimate(plan, (960, 544, 25), 32, "adamw8bit", 1, sampling=True, task=task)
            assert isinstance(est, Estimate) and est.peak_vram_gb > 0 and est.host_ram_gb > 0
            caches = m.cache_estimates(plan, (960, 544, 25), task=task)
            assert set(caches) == {"cache_latents", "cache_text_encoder_outputs"}
    assert m.tokens(960, 544, 25) > m.tokens(960, 544, 1) > 0
    assert m.preset_for_vram(1000.0) == m.presets[-1] and m.preset_warning(1.0)


@pytest.mark.parametrize("name", REGISTERED)
def test_every_familys_commands_parse_with_musubis_parsers(name, make_settings):
    f = families.get(name)
    segment = trainer.TrainSegment(Path("/r/seg"), Path("/r/tb"), 10, 10, sample_prompts=Path("/r/p.txt"))
    for task in f.tasks:
        variant = next(v for v in f.variants if _trains(f, task, v))
        s = make_settings("--model_family", name, "--task", task, "--dit_variant", variant)
        weights = {c: w.local_path(s.models_dir) for c, w in f.weights_for(task, s.dit_variant).items()}
        model = f.memory_for(s.dit_variant)
        for preset in (None, *model.presets):
            memory = model.resolve(preset, {})
            parses(f.scripts.cache_latents(s, Path("/r/d.toml"), weights, memory))
            parses(f.scripts.cache_text_encoder_outputs(s, Path("/r/d.toml"), weights, memory))
            parses(f.scripts.train(s, Path("/r/d.toml"), weights, segment, memory, Launch(1, 1)))
    if f.converter is not None:
        parses(f.converter.command(Path("/r/lora.safetensors"), Path("/r/lora_x.safetensors")))


def _trains(f: Family, task: str, variant: str) -> bool:
    try:
        f.weights_for(task, variant)
        return True
    except ConfigError:
        return False


# --- nothing outside a family's folder knows its facts ----------------------------------------------------------------


def _generic_modules() -> list[Path]:
    """Every module of the package outside the family folders (families/__init__.py, the interface, included)."""
    inside = [PACKAGE / "families" / name for name in REGISTERED]
    return [p for p in sorted(PACKAGE.rglob("*.py")) if not any(p.is_relative_to(folder) for folder in inside)]


def _code_strings(tree: ast.AST) -> list[str]:
    """The string constants of a module that are code, not docstrings."""
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def _family_facts(name: str, make_settings) -> set[str]:
    """Strings only the family may know: its name, musubi's architecture name in cache files, its repos, its
    scripts' modules and network module."""
    f = families.get(name)
    facts = {f.name, f"_{f.frames.architecture}.", f"_{f.frames.architecture}_", *(t.repo_id for t in f.tokenizers)}
    facts |= {
        p.repo_id
        for task in f.tasks
        for v in f.variants
        if _trains(f, task, v)
        for w in f.weights_for(task, v).values()
        for p in w.parts()
    }
    s = make_settings("--model_family", name)
    weights = {c: w.local_path(s.models_dir) for c, w in f.weights_for(s.task, s.dit_variant).items()}
    memory, seg, cfg = f.memory.resolve(None, {}), trainer.TrainSegment(Path("/r"), Path("/t"), 1, 1), Path("/d")
    train = f.scripts.train(s, cfg, weights, seg, memory, Launch(1, 1))
    facts |= {train.module, train.argv[train.argv.index("--network_module") + 1]}
    facts |= {f.scripts.cache_latents(s, cfg, weights, memory).module}
    facts |= {f.scripts.cache_text_encoder_outputs(s, cfg, weights, memory).module}
    if f.converter is not None:
        facts.add(f.converter.command(Path("/a"), Path("/b")).module)
    return facts


def test_no_module_outside_the_family_folders_imports_a_family():
    for path in _generic_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not any(f"families.{n}" in module for n in REGISTERED), (path, module)
                if module.endswith("families") or (node.level and module == "families"):
                    assert not {a.name for a in node.names} & set(REGISTERED), (path, ast.unparse(node))
            if isinstance(node, ast.Import):
                assert not any(f"families.{n}" in a.name for a in node.names for n in REGISTERED), path


@pytest.mark.parametrize("name", REGISTERED)
def test_no_code_outside_the_family_folder_names_a_familys_facts(name, make_settings):
    """No `if family == ...`, no script module, architecture suffix or repo of a family in the generic code: its
    string constants (docstrings aside) never hold one. The registry line in families/__init__.py is the exception."""
    facts = _family_facts(name, make_settings)
    registry = Path(families.__file__).resolve()
    for path in _generic_modules():
        strings = _code_strings(ast.parse(path.read_text(encoding="utf-8")))
        if path == registry:  # its one line per family: the name and where the family lives
            strings = [s for s in strings if name not in s]
        leaked = [(s, fact) for s in strings for fact in facts if fact in s]
        assert not leaked, (path.relative_to(PACKAGE), leaked)


# --- a second family, registered here, through the real CLI and pipeline ----------------------------------------------

HV15 = families.get("hunyuan_video_1_5")
FAKE_REPO = "fake-org/Fake-Video"


def _fake_weights(task: str, variant: str) -> dict[str, WeightFile]:
    if variant not in ("small", "large"):
        raise ConfigError(f"dit_variant {variant!r} is not a Fake Video DiT; use small or large")
    if task == "i2v" and variant == "small":
        raise ConfigError("dit_variant small trains t2v only; i2v needs large")
    return {
        "dit": WeightFile("dit", FAKE_REPO, f"dit/{variant}.safetensors", (task,), "--dit", 10, "bf16", variant),
        "vae": WeightFile("vae", FAKE_REPO, "vae.safetensors", (task,), "--vae", 10, "fp32"),
    }


def _fake_flags(plan: MemoryPlan, sampling: bool = False) -> dict[str, list[str]]:
    train = ["--blocks_to_swap", str(plan.blocks_to_swap)] if plan.blocks_to_swap else []
    return {"cache_latents": [], "cache_text_encoder_outputs": [], "train": train}


def _fake_cache(name: str):
    def command(s, dataset_config, weights, memory) -> trainer.Command:
        return trainer.Command(name, f"fake_tuner.{name}", ("--dataset_config", str(dataset_config)))

    return command


def _fake_train(s, dataset_config, weights, seg, memory, launch) -> trainer.Command:
    return trainer.train(
        s,
        dataset_config,
        seg,
        launch,
        module="fake_tuner.train",
        model=["--dit", str(weights["dit"]), "--task", f"fake-{s.task}"],
        network_module="networks.lora_fake",
        memory=_fake_flags(memory)["train"],
        sample_models=["--vae", str(weights["vae"])] if seg.sample_prompts else [],
    )


FAKE_SMALL = dataclasses.replace(
    HV15.memory,
    title="Fake Video",
    table={12: {"fp8": True, "blocks_to_swap": 4}},
    num_blocks=10,
    max_blocks_to_swap=8,
    swap_ladder=(0, 4, 8),
    musubi_flags=_fake_flags,
    knobs=("fp8", "blocks_to_swap", "block_swap_h2d_only", "gradient_checkpointing_cpu_offload"),
)
FAKE_LARGE = dataclasses.replace(  # a variant several times the size: its own presets and limits
    FAKE_SMALL, title="Fake Video large", table={40: {"fp8": True, "blocks_to_swap": 20}}, num_blocks=40,
    max_blocks_to_swap=37, swap_ladder=(0, 20, 37),
)  # fmt: skip

FAMILY = Family(  # what families.get("fake_family") finds in this module once the test registers it
    name="fake_family",
    title="Fake Video",
    tasks=("t2v", "i2v", "v2v"),
    variants=("small", "large"),
    defaults={"dit_variant": "small", "resolution": (128, 128)},
    weights_for=_fake_weights,
    tokenizers=(),
    scripts=SimpleNamespace(
        cache_latents=_fake_cache("cache_latents"),
        cache_text_encoder_outputs=_fake_cache("cache_text_encoder_outputs"),
        train=_fake_train,
    ),
    memory=FAKE_SMALL,
    variant_memory={"large": FAKE_LARGE},
    frames=FrameRules(architecture="fk", target_fps=16.0, reso_step=32, frame_step=8),
    latent_cache=CacheInputs(settings=("resolution",), components=("vae",), knobs=()),
    text_encoder_cache=CacheInputs(settings=(), components=("dit",), knobs=()),
    text_encoder_max_tokens=512,
    samples=SampleDefaults(
        steps=7,
        guidance=3.0,
        flow_shift=None,
        video_frames=9,
        area=128 * 128,
        image_tasks=(),
        auto_above_preset=0,
        prompt_keys=("width", "height", "frame_count", "seed", "sample_steps", "cfg_scale"),
    ),
    hints=dataclasses.replace(HV15.hints, dit_fp8="`--fp8`: the fake DiT in fp8"),
    converter=None,
    help={"task": "only t2v (the fake family's note)."},
)


@pytest.fixture
def fake_family(monkeypatch):
    """fake_family registered beside the real families (one registry line), for this test only."""
    monkeypatch.setitem(families.REGISTRY, "fake_family", __name__)
    monkeypatch.setattr(families, "_loaded", dict(families._loaded))
    return families.get("fake_family")


def fake_dry_run(tmp_path, make_settings, *flags):
    zip_path = tmp_path / "data" / "d.zip"
    dataset_zip(tmp_path / "src", zip_path, images={"a.png": "a cat"}, videos={"v.mp4": ("a walk", 30)})
    s = make_settings("--model_family", "fake_family", "--dry_run", "--resolution", "128x128", *flags)
    ctx = pipeline.run(s)
    return s, ctx, json.loads(ctx.paths.plan.read_text())


def test_a_second_family_drives_the_dry_run_with_its_own_scripts_rules_and_defaults(
    fake_family, tmp_path, make_settings
):
    s, ctx, plan = fake_dry_run(
        tmp_path, make_settings, "--target_frames", "1,9", "--frame_extraction", "full", "--vram", "12",
        "--sample_every_n_steps", "5", "--trigger_word", "ohwx",
    )  # fmt: skip
    assert s.family is fake_family and s.dit_variant == "small"  # the family's default variant
    assert 'model_family = "fake_family"' in ctx.paths.config_toml.read_text()
    # its scripts, and no convert stage: the family has no converter
    assert [st["module"] for st in plan["stages"]] == [
        f"fake_tuner.{n}" for n in ("cache_latents", "cache_text_encoder_outputs", "train")
    ]
    argv = plan["stages"][-1]["argv"]
    assert (
        argv[argv.index("--task") + 1] == "fake-t2v"
        and argv[argv.index("--network_module") + 1] == "networks.lora_fake"
    )
    assert argv[argv.index("--blocks_to_swap") + 1] == "4"  # its preset 12 through its own musubi flags
    assert argv[argv.index("--metadata_tags") + 1] == "fake_family,t2v,ohwx"
    assert argv[argv.index("--metadata_description") + 1] == "Fake Video t2v LoRA; trigger word: ohwx"
    assert str(s.models_dir / FAKE_REPO / "dit/small.safetensors") in argv
    # its frame rules: videos resampled to 16 fps and cut to 8n+1 frames (30 frames at 24 fps -> 20 -> 17), its
    # buckets step by 32, its cache names end in _fk
    video = next(f for f in ctx.data.planned if f.kind == "video")
    assert video.clips == [fake_family.frames.video_clips(30, 24.0, (1, 9), "full")[0]]
    assert [(c.start, c.frames) for c in video.clips] == [(0, 17)]
    assert [(c.start, c.frames) for c in HV15.frames.video_clips(30, 24.0, (1, 9), "full")] == [(0, 29)]
    assert all(side % 32 == 0 for f in ctx.data.planned for side in f.bucket)
    assert all(n.endswith("_fk.safetensors") for f in ctx.data.planned for n in f.cache_files)
    assert all(e.view_name.endswith("_fk_te.safetensors") for e in ctx.caches.te)
    # its sample defaults: 7 steps, no flow shift option, sizes in its bucket step
    for p in prompts.read(ctx.paths.root / "sample_prompts.json"):
        assert p["sample_steps"] == 7 and "discrete_flow_shift" not in p
        assert (p["width"], p["height"], p["frame_count"]) == (160, 96, 9)


def test_the_config_checks_a_second_familys_own_limits(fake_family, make_settings):
    for flags, message in (
        (("--task", "i2v"), "dit_variant small trains t2v only; i2v needs large"),  # the family's reason
        (("--dit_variant", "720p"), "'720p' is not a Fake Video DiT"),
        (("--dit_variant", "large", "--vram", "12"), "vram: Fake Video large has presets 40, not 12"),
        (("--dit_variant", "large", "--blocks_to_swap", "38"), "blocks_to_swap: 38 is outside 0..37"),
        (("--resolution", "960x528"), "multiples of 32 \\(Fake Video's buckets step by 32\\)"),
        (("--target_frames", "1,5"), "5 is not of the form 8n\\+1.*--target_frames 1,9"),
        (("--blocks_to_swap", "9"), "blocks_to_swap: 9 is outside 0..8"),
        (("--vram", "24"), "vram: Fake Video has presets 12, not 24"),
    ):
        with pytest.raises(ConfigError, match=message):
            make_settings("--model_family", "fake_family", "--resolution", "128x128", "--target_frames", "1,9", *flags)
    with pytest.raises(ConfigError, match="vram: HunyuanVideo 1.5 has presets 16, 24, 32, 48, 80, not 12"):
        make_settings("--vram", "12")  # 12 is a choice only because fake_family has it
    with pytest.raises(ConfigError, match="task: HunyuanVideo 1.5 trains t2v, i2v, not v2v"):
        make_settings("--task", "v2v")  # likewise
    large = make_settings("--model_family", "fake_family", "--dit_variant", "large", "--task", "i2v", "--vram", "40",
                          "--resolution", "128x128", "--target_frames", "1,9")  # fmt: skip
    assert plan.make(large, {(128, 128, 9): 4}, gpus=[]).memory.blocks_to_swap == 20  # the large variant's preset
    with pytest.raises(ConfigError, match=f"model_family: 'nope' is not one of {', '.join(families.names())}"):
        config.build_settings({"model_family": "nope"}, Path("/"), {})  # as train.toml gives it


def test_help_and_train_toml_document_every_registered_family(fake_family, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"--model_family {{{','.join(families.names())}}}" in out and "Fake Video (fake_family)" in out
    assert families.names()[-1] == "fake_family"
    assert "--task {t2v,i2v,v2v}" in out and "--vram auto|12|16|24|32|40|48|80" in out
    assert "Fake Video: only t2v (the fake family's note)." in out
    assert "(default: the family's (hunyuan_video_1_5: 720p, kandinsky5: lite-sft-5s, fake_family: small))" in out
    assert "(default: the family's (hunyuan_video_1_5: 960x544, kandinsky5: 768x512, fake_family: 128x128))" in out
    assert "Fake Video: only t2v (the fake family's note)." in " ".join(config.render_toml().replace("#", "").split())


def test_the_default_family_is_hunyuan_video_1_5_and_every_lora_names_its_family(make_settings):
    s = make_settings()
    assert s.model_family == "hunyuan_video_1_5" and s.family is HV15 and s.dit_variant == "720p"
    assert lorainfo.base_metadata(s, {}, "", s.models_dir)["hvlora.model_family"] == "hunyuan_video_1_5"


def test_the_family_defines_the_run_and_runs_recorded_before_families_continue(make_settings):
    s = make_settings()
    fake = SimpleNamespace
    ident = runs.identity(s, fake(planned=[]), fake(media_keys={}), fake(items=0, launch=fake(num_processes=1)))
    assert ident["model_family"] == "hunyuan_video_1_5"
    run = s.output_dir / "runs" / "lora-20260101-000000"
    run.mkdir(parents=True)
    old = {k: v for k, v in ident.items() if k != "model_family"}  # run.json of a version without families
    (run / runs.RUN_RECORD).write_text(json.dumps({"identity": old, "settings": {}}))
    assert runs.choose(s, ident).run_dir == run
    other = runs.choose(s, {**ident, "model_family": "another_family"})
    assert other.run_dir is None and "model_family hunyuan_video_1_5 -> another_family" in other.messages[0]
