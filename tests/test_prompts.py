"""Sample-prompt files as musubi-tuner v0.3.4 reads them (training/prompts.py): what we write reaches musubi as
exactly the prompts meant (any caption: line breaks, " --", text that begins like an option), and a user's
--sample_prompts that musubi would misread, or could not open, is refused before stage 1.

`prompts.read` mirrors musubi's `load_prompts`; where a Python with musubi-tuner is at hand (MUSUBI_PYTHON, e.g. the
real-engine rig's venv) the mirror is checked against musubi's own function on the same files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mediafactory import dataset_zip, make_image

from hvlora.core import pipeline
from hvlora.core.errors import UserError
from hvlora.families.hunyuan_video_1_5.rules import SAMPLES as HV15_SAMPLES
from hvlora.families.kandinsky5.rules import SAMPLES as K5_SAMPLES
from hvlora.stages import extract
from hvlora.training import plan, prompts, sampling

MUSUBI_PYTHON = os.environ.get("MUSUBI_PYTHON")

# captions as people and captioning tools write them: several lines, " --" inside, text that starts like one of
# musubi's options, a leading '#', quotes, non-ASCII
TRICKY = [
    "a person walks\nalong a beach",
    "a cat --w 99 on a sofa",
    "n dogs playing in the park",
    "I walk to school",
    "# not a comment here",
    '  spaced  "HELLO" sign, café ☕ --\tx  ',
    "w 64 wide\r\nwindows line end",
]


def musubi_load(path: Path) -> list[dict]:
    """musubi's own load_prompts on `path`, run by MUSUBI_PYTHON."""
    code = (
        "import json, sys\n"
        "from musubi_tuner.training.sampling_prompts import load_prompts\n"
        "print(json.dumps(load_prompts(sys.argv[1])))\n"
    )
    r = subprocess.run([MUSUBI_PYTHON, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def as_musubi_gives(p: dict) -> dict:
    return json.loads(json.dumps(p))  # tuples/paths as JSON has them


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(TRICKY), st.text(min_size=1, max_size=40)), min_size=1, max_size=4))
def test_what_we_write_is_read_back_as_exactly_the_prompts_meant(tmp_path, captions):
    meant = [{"prompt": c, "width": 64, "height": 48, "frame_count": 5, "sample_steps": 20, "seed": i}
             for i, c in enumerate(captions)]  # fmt: skip
    path = prompts.write(tmp_path / "p.json", meant)
    assert prompts.read(path) == [{**p, "enum": i} for i, p in enumerate(meant)]


@pytest.mark.skipif(not MUSUBI_PYTHON, reason="set MUSUBI_PYTHON to a Python with musubi-tuner v0.3.4")
def test_the_mirror_reads_as_musubi_itself_does(tmp_path):
    lines = [
        "plain prompt --w 64 --h 48 --f 5 --d 7 --s 2000 --fs 7.0 --l 6.0 --g 3.5",
        "n dogs --n blurry --i img.png --ei end.png --ci a.png --ci b.png --of out",
        "W 64 upper case --W 32 --unknown 5 --w abc --l 1.2.3",
        "  # not a comment (indented)",
        "#a comment",
        "trailing spaces   --w 16   ",
        "I walk --i  spaced.png ",
        *TRICKY,
    ]
    txt = tmp_path / "p.txt"
    txt.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    assert prompts.read(txt) == musubi_load(txt)
    ours = prompts.write(tmp_path / "ours.json", [{"prompt": c, "width": 64, "seed": 1} for c in TRICKY])
    assert prompts.read(ours) == musubi_load(ours) and [p["prompt"] for p in musubi_load(ours)] == TRICKY
    toml = tmp_path / "p.toml"
    toml.write_text('[prompt]\nwidth = 64\nsample_steps = 2\n[[prompt.subset]]\nprompt = "a"\n[[prompt.subset]]\n'
                    'prompt = "b"\nseed = 3\n')  # fmt: skip
    assert prompts.read(toml) == musubi_load(toml)
    # a subset that sets a key of [prompt] again: musubi's dict(**prompt, **subset) raises, and so do we
    toml.write_text('[prompt]\nwidth = 64\n[[prompt.subset]]\nprompt = "a"\nwidth = 32\n')
    with pytest.raises(TypeError):
        prompts.read(toml)
    with pytest.raises(AssertionError, match="multiple values for keyword argument 'width'"):
        musubi_load(toml)
    assert "musubi cannot read it (TypeError" in refused(toml)


def test_musubis_line_syntax_as_mirrored():
    p = prompts.parse_line("a cat --w 64 --H 48 --f 5 --s 5000 --fs 7.0 --l 6 --ci a --ci b --zz 1 --d x")
    assert p == {
        "prompt": "a cat",
        "width": 64,
        "height": 48,
        "frame_count": 5,
        "sample_steps": 1000,  # musubi clamps to 1..1000
        "discrete_flow_shift": 7.0,
        "cfg_scale": 6.0,
        "control_image_path": ["a", "b"],
    }
    # every part is matched, the prompt text too: a caption beginning "n " is also a negative prompt in musubi
    assert prompts.parse_line("n dogs --w 64")["negative_prompt"] == "dogs"
    assert prompts.parse_line("a\nb") == {"prompt": "a\nb"}


def planned(make_settings, make_ctx, tmp_path, captions: dict[str, str], *flags: str):
    dataset_zip(
        tmp_path / "src",
        tmp_path / "data" / "d.zip",
        videos={name: (caption, 9) for name, caption in captions.items()},
    )
    s = make_settings("--target_frames", "1,5", "--input_zip", str(tmp_path / "data" / "d.zip"), *flags)
    ctx = make_ctx(s)
    pipeline.check_data(ctx)
    extract.run(ctx)
    ctx.plan = plan.make(s, ctx.data.buckets(), [], host_ram=64 * 2**30)
    return ctx


def test_captions_of_several_lines_or_with_option_text_are_one_prompt_each(make_settings, make_ctx, tmp_path):
    """The sample prompts made from the data, as musubi reads the file (i2v: each with its image)."""
    captions = {"a.mp4": "a person walks\nalong a beach", "b.mp4": "a cat --w 99 on a sofa", "c.mp4": "n dogs"}
    ctx = planned(make_settings, make_ctx, tmp_path, captions, "--task", "i2v", "--sample_every_n_steps", "5")
    path = sampling.prompt_file(ctx)
    read = prompts.read(path)
    assert [p["prompt"] for p in read] == sampling.default_prompts(ctx)[:2] == [captions["a.mp4"], captions["b.mp4"]]
    assert all(Path(p["image_path"]).is_file() and p["width"] % 16 == 0 for p in read)
    assert all("negative_prompt" not in p for p in read)  # musubi defaults it to "", as meant
    if MUSUBI_PYTHON:
        assert musubi_load(path) == [as_musubi_gives(p) for p in read]
    prompts.check_file(path, "i2v", HV15_SAMPLES)  # what we write passes our own check


# --- a user's --sample_prompts, checked before stage 1 ------------------------------------------------------------


def refused(path: Path, task: str = "t2v", samples=HV15_SAMPLES) -> str:
    with pytest.raises(UserError) as e:
        prompts.check_file(path, task, samples)
    return str(e.value)


def test_a_missing_file_a_folder_or_another_extension_is_refused(tmp_path):
    assert "no such file" in refused(tmp_path / "nope.txt")
    assert "is a folder, not a prompt file" in refused(tmp_path)
    (tmp_path / "p.csv").write_text("a cat\n")
    assert "musubi reads only .txt, .toml, .json" in refused(tmp_path / "p.csv")


def test_lines_musubi_would_misread_are_named(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text(
        "# ok\na cat --w 64 --h 64\n\nn dogs --w 64\na dog --x 5\na bird --w 64px --l 1.2.3\nN birds --n ugly\n"
    )
    text = refused(p)
    assert "line 4: the prompt text 'n dogs' begins like the option --n" in text
    assert "line 5: `--x 5` is not an option musubi reads" in text
    assert "line 6: `--w 64px`: not a valid value for --w" in text and "`--l 1.2.3`: not a valid value for --l" in text
    assert "line 2" not in text and "line 7" not in text  # a later --n sets what "N birds" would have set


def test_options_the_familys_sampler_does_not_read_are_named(tmp_path):
    """Kandinsky 5's sampler takes its guidance from --g and has no flow shift; HunyuanVideo 1.5's the other way."""
    p = tmp_path / "p.txt"
    p.write_text("a cat --w 64 --l 6.0 --fs 7.0\ng 3 dogs --w 64\n")
    k5 = refused(p, samples=K5_SAMPLES)
    assert "line 1: `--l 6.0`: this model's sampler does not read --l (cfg_scale" in k5
    assert "line 1: `--fs 7.0`: this model's sampler does not read --fs" in k5
    assert "line 2: the prompt text 'g 3 dogs' begins like the option --g" in k5
    prompts.check_file(p, "t2v", HV15_SAMPLES)  # HV1.5 reads --l and --fs, and not --g
    p.write_text("a cat --g 5.0\n")
    assert "does not read --g (guidance_scale" in refused(p)
    prompts.check_file(p, "t2v", K5_SAMPLES)


def test_encoding_bom_empty_and_structure_are_refused(tmp_path):
    p = tmp_path / "p.txt"
    p.write_bytes("a cat\n".encode("utf-16"))
    assert "is not UTF-8 text" in refused(p)
    p.write_bytes(b"\xef\xbb\xbfa cat\n")
    assert "byte order mark" in refused(p)
    p.write_text("# only a comment\n\n")
    assert "holds no prompt" in refused(p)
    j = tmp_path / "p.json"
    j.write_text('{"prompt": "a cat"}')
    assert "musubi cannot read it" in refused(j)


def test_i2v_prompts_need_an_image_that_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "first.png")
    p = tmp_path / "p.txt"
    p.write_text("a walk --i first.png\na run\na jump --i gone.png\n")
    text = refused(p, "i2v")
    assert "prompt 2: i2v samples need an image" in text and "prompt 3: its image gone.png does not exist" in text
    assert "prompt 1" not in text
    prompts.check_file(p, "t2v", HV15_SAMPLES)  # t2v needs no image


def test_good_files_pass(tmp_path):
    t = tmp_path / "p.txt"
    t.write_text("# tiny\nohwx, a card --w 64 --h 64 --f 1 --s 2 --d 7\n  a dog --n blurry --l 1.0\n")
    prompts.check_file(t, "t2v", HV15_SAMPLES)
    toml = tmp_path / "p.toml"
    toml.write_text('[prompt]\nwidth = 64\n[[prompt.subset]]\nprompt = "a"\n')
    prompts.check_file(toml, "t2v", HV15_SAMPLES)
    prompts.check_file(None, "t2v", HV15_SAMPLES)


@pytest.mark.parametrize("mode", ["--check_data", "--dry_run"])
def test_check_data_and_dry_run_refuse_a_bad_prompt_file_as_the_run_does(tmp_path, make_settings, mode):
    dataset_zip(tmp_path / "src", tmp_path / "data" / "d.zip", images={"a.png": "a cat"})
    for arg, message in ((tmp_path / "missing.txt", "no such file"), (tmp_path, "is a folder")):
        s = make_settings("--input_zip", str(tmp_path / "data" / "d.zip"), "--sample_prompts", str(arg), mode)
        with pytest.raises(UserError, match=message):
            pipeline.run(s)
        assert not (s.output_dir / "runs").exists()  # refused before the data check made a run folder
