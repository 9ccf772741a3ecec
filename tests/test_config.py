"""Settings: defaults, train.toml, precedence CLI > file > defaults, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from hvlora.core import config
from hvlora.core.cli import DEFAULT_CONFIG, build_parser, load_settings
from hvlora.core.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_train_toml_is_the_rendered_defaults():
    """The committed train.toml documents every key with exactly the built-in default."""
    assert DEFAULT_CONFIG.read_text(encoding="utf-8") == config.render_toml()


def test_train_toml_values_equal_builtin_defaults():
    with open(DEFAULT_CONFIG, "rb") as f:
        data = tomllib.load(f)
    for key, raw in data.items():
        opt = config.OPTION_BY_NAME[key]
        assert opt.parse(raw) == opt.default, key
    # every option that a file may hold is present, or commented out when it has no default
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    for opt in config.OPTIONS:
        if opt.toml:
            assert (opt.name in data) or (f"# {opt.name} = " in text), opt.name


def test_defaults_without_any_file(tmp_path):
    s = load_settings(["--config", str(write(tmp_path / "empty.toml", ""))], cwd=tmp_path)
    assert (s.task, s.rank, s.alpha, s.epochs, s.max_train_steps) == ("t2v", 32, 32.0, 10, -1)
    assert (s.learning_rate, s.optimizer, s.resolution, s.target_frames) == (1e-4, "adamw8bit", (960, 544), (1, 13, 25))
    assert (s.frame_extraction, s.num_repeats, s.output_name, s.seed) == ("head", 1, "lora", 42)
    assert (s.save_every_n_epochs, s.save_precision, s.device, s.save_every_n_steps) == (1, "bf16", "cuda", 250)
    # memory knobs are unset: the --vram preset (auto) decides them, unless the user sets one
    assert s.vram == "auto" and s.fp8 is None and s.blocks_to_swap is None and s.vae_sample_size is None
    assert (s.lr_scheduler, s.lr_warmup_steps, s.num_gpus, s.keep_last_n_states) == ("constant", 0, 1, 2)
    assert s.skip_download is False and s.skip_cache is False and s.dry_run is False
    assert s.input_zip is None and s.trigger_word == ""
    # relative paths of the file are relative to the file's folder
    assert s.data_dir == tmp_path / "data" and s.models_dir == tmp_path / "models"


def test_precedence_cli_over_file_over_defaults(tmp_path):
    cfg = write(
        tmp_path / "c.toml",
        'rank = 16\nepochs = 3\nfp8 = true\ntrigger_word = "ohwx"\n'
        'target_frames = [1, 5]\nresolution = [512, 512]\noutput_dir = "out"\n',
    )
    s = load_settings(
        ["--config", str(cfg), "--rank", "64", "--no-fp8", "--output_dir", "elsewhere"], cwd=tmp_path / "cwd"
    )
    assert s.rank == 64 and s.epochs == 3 and s.fp8 is False and s.trigger_word == "ohwx"
    assert s.target_frames == (1, 5) and s.resolution == (512, 512)
    assert s.output_dir == tmp_path / "cwd" / "elsewhere"  # CLI paths are relative to the working directory
    assert s.network_alpha is None and s.alpha == 64.0


def test_unknown_key_is_an_error_naming_it(tmp_path):
    cfg = write(tmp_path / "c.toml", "rank = 16\nlearning_rte = 1e-4\n")
    with pytest.raises(ConfigError, match="learning_rte"):
        load_settings(["--config", str(cfg)])


def test_dry_run_is_not_a_file_key(tmp_path):
    with pytest.raises(ConfigError, match="dry_run"):
        load_settings(["--config", str(write(tmp_path / "c.toml", "dry_run = true\n"))])


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(["--config", str(tmp_path / "nope.toml")])
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(["--config", str(write(tmp_path / "bad.toml", "rank = = 3\n"))])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--rank", "2"], "rank: 2 is outside 4..128"),
        (["--rank", "129"], "rank: 129 is outside"),
        (["--rank", "x"], "--rank: 'x' is not a whole number"),
        (["--target_frames", "1,12,25"], "target_frames: 12 is not of the form 4n"),
        (["--target_frames", "1,12,25"], "the nearest: --target_frames 1,13,25"),
        (["--target_frames", "4"], "the nearest: --target_frames 5"),
        (["--target_frames", "1,,5"], "'1,,5' has an empty entry"),
        (["--target_frames", ","], "has an empty entry"),
        (["--max_frames", "4"], "max_frames: 4 is not of the form 4n"),
        (["--max_frames", "4"], "musubi would cut each video to 1 frame"),
        (["--max_frames", "4"], "pass 5 "),
        (["--learning_rate", "-1e-4"], "learning_rate: -0.0001 must be a finite number in"),
        (["--learning_rate", "-.5"], "learning_rate: -0.5 must be"),
        (["--target_frames", "a,b"], "comma-separated"),
        (["--resolution", "960"], "WIDTHxHEIGHT"),
        (["--resolution", "950x544"], "multiples of 16"),
        (["--blocks_to_swap", "52"], "blocks_to_swap: 52 is outside 0..51"),
        (["--max_train_steps", "0"], "max_train_steps"),
        (["--epochs", "0"], "epochs: 0"),
        (["--learning_rate", "0"], "learning_rate"),
        (["--network_alpha", "-1"], "network_alpha"),
        (["--output_name", "a/b"], "output_name"),
        (["--num_repeats", "0"], "num_repeats"),
    ],
)
def test_invalid_values_are_reported_with_the_fix(tmp_path, flags, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_settings(["--config", str(write(tmp_path / "e.toml", "")), *flags])


def test_all_problems_are_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings(["--config", str(write(tmp_path / "e.toml", "")), "--rank", "1", "--epochs", "0"])
    assert "rank" in str(e.value) and "epochs" in str(e.value)


def test_bad_choice_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--optimizer", "sgd"])
    assert e.value.code == 2
    assert "invalid choice: 'sgd'" in capsys.readouterr().err


def test_bad_choice_in_file(tmp_path):
    with pytest.raises(ConfigError, match="frame_extraction: 'random' is not one of"):
        load_settings(["--config", str(write(tmp_path / "c.toml", 'frame_extraction = "random"\n'))])


def test_help_lists_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for opt in config.OPTIONS:
        assert f"--{opt.name}" in out
    for expected in [
        "(default: 32)",
        "(default: 0.0001)",
        "(default: the family's (hunyuan_video_1_5: 960x544",  # the family's default since Kandinsky 5
        "(default: 1,13,25)",
        "(default: adamw8bit)",
        "(default: = rank)",
        "(default: -1)",
    ]:
        assert expected in out


def test_warnings_for_likely_mistakes(tmp_path):
    s = load_settings(
        [
            "--config",
            str(write(tmp_path / "e.toml", "")),
            "--frame_extraction",
            "chunk",
            "--max_train_steps",
            "100",
            "--epochs",
            "5",
        ]
    )
    w = config.warnings_for(s)
    assert any("chunk" in x for x in w) and any("epochs 5 is ignored" in x for x in w)


def test_toml_saved_with_a_utf8_bom_is_read(tmp_path):
    """Windows Notepad before 2019 saves "UTF-8" with a byte-order mark, which tomllib refuses at line 1."""
    cfg = tmp_path / "bom.toml"
    cfg.write_bytes('\ufefftrigger_word = "café"\nrank = 16\n'.encode("utf-8"))
    with pytest.raises(tomllib.TOMLDecodeError):  # what the user got before
        tomllib.loads(cfg.read_text(encoding="utf-8"))
    s = load_settings(["--config", str(cfg)])
    assert (s.trigger_word, s.rank) == ("café", 16)


def test_target_frames_order_and_repeats_are_normalised_as_documented(tmp_path):
    s = load_settings(["--config", str(write(tmp_path / "e.toml", "")), "--target_frames", "5,1,5"])
    assert s.target_frames == (1, 5)
    assert "In any order; a length given twice counts once" in config.OPTION_BY_NAME["target_frames"].help


def test_network_alpha_above_rank_is_warned_with_its_scale(tmp_path):
    s = load_settings(["--config", str(write(tmp_path / "e.toml", "")), "--network_alpha", "1000"])
    [w] = config.warnings_for(s)
    assert "network_alpha 1000 is above rank 32" in w and "alpha/rank = 31.2" in w and "alpha = rank" in w
    assert config.warnings_for(load_settings(["--config", str(tmp_path / "e.toml"), "--network_alpha", "16"])) == []


def test_negative_numbers_reach_the_setting_check_not_argparse(tmp_path, capsys):
    """`--learning_rate -1e-4`: argparse alone takes '-1e-4' for a flag ("expected one argument")."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--learning_rate", "-1e-4"])
    assert "expected one argument" in capsys.readouterr().err
    cfg = str(write(tmp_path / "e.toml", ""))
    for value in ("-1e-4", "-1E-4", "-.5", "-inf"):
        with pytest.raises(ConfigError, match="learning_rate: .* must be a finite number in"):
            load_settings(["--config", cfg, "--learning_rate", value])
    with pytest.raises(ConfigError, match="seed: -5 is outside the valid range"):
        load_settings(["--config", cfg, "--seed", "-5"])
    assert load_settings(["--config", cfg, "--trigger_word", "x", "--rank", "8"]).rank == 8


def test_help_and_train_toml_say_which_flags_are_not_keys(capsys):
    """The actions of one command are not keys of train.toml: --help's epilog, train.toml and README say exactly
    which, and a file with one of them is refused."""
    assert set(config.COMMAND_LINE_ONLY) == {
        *("check_data", "dry_run", "download_only", "new_run", "resume"),
        *("generate", "lora", "prompt", "push_to_hub", "hub_public", "hub_include_captions"),
        *("caption_only", "recaption"),
    }
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    listed = ", ".join("--" + n for n in config.COMMAND_LINE_ONLY)
    assert (
        f"Every flag above is also a key of that file, except --config and the actions of one command: {listed}" in out
    )
    assert "below" not in out.split("Boolean flags")[0].rsplit("Settings come from", 1)[1]
    assert f"Flags that are actions of one command are not keys: {listed}." in DEFAULT_CONFIG.read_text()
    readme = " ".join((DEFAULT_CONFIG.parent / "README.md").read_text(encoding="utf-8").split())
    claim = "Every flag is also a key of `train.toml` (the defaults, one comment per key) except `--config` and "
    assert readme.count("Every flag is also a key") == 1 and f"{claim}{_md(listed)}, the actions" in readme


def _md(flags: str) -> str:
    return ", ".join(f"`{f}`" for f in flags.split(", "))
