"""Capture the argparse parsers of the musubi-tuner v0.3.4 entry points we run (HunyuanVideo 1.5's five, Kandinsky 5's
four), as data (musubi_flags.json).

Run it with the interpreter that has the real musubi-tuner installed (the rig venv; on CPU the torchvision stub
must be importable):

    PYTHONPATH=../shared/realrig/shims /work/rig/venv/bin/python tests/standin/dump_musubi_flags.py          # write
    PYTHONPATH=../shared/realrig/shims /work/rig/venv/bin/python tests/standin/dump_musubi_flags.py --check  # diff

How a parser is obtained (the same trick as shared/realrig/contract.py): ArgumentParser.parse_args is patched to
raise with the parser, then the module's `main()` is called; the converter builds its parser under
`if __name__ == "__main__"`, so it is run as __main__ with runpy. hv_1_5_generate_video imports wan/modules/t5.py,
whose class body calls torch.cuda.current_device() at import: on a CPU-only torch that raises, so while a module is
imported here current_device answers 0 when CUDA is unavailable (see `_cuda_device_probe`; the real script needs a
CUDA GPU to even import, which the project says). Nothing of musubi runs past parse_args and no
musubi code is copied: the JSON holds each action's option strings, dest, kind, nargs, const, type name, choices,
default, required and metavar (no help texts), which is all `standin/musubi_tuner/_flags.py` needs to rebuild a
parser that accepts and rejects exactly what the real one does.

--check exits 1 and prints the differences when the JSON no longer matches the installed musubi (e.g. after a
musubi upgrade); exit 0 when equal.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This script lives beside the stand-in package `musubi_tuner/`: drop our own folder from sys.path, or `import
# musubi_tuner` would find the stand-in instead of the real package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

JSON_PATH = HERE / "musubi_flags.json"
MODULES = (
    "musubi_tuner.hv_1_5_cache_latents",
    "musubi_tuner.hv_1_5_cache_text_encoder_outputs",
    "musubi_tuner.hv_1_5_train_network",
    "musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy",
    "musubi_tuner.hv_1_5_generate_video",
    "musubi_tuner.kandinsky5_cache_latents",
    "musubi_tuner.kandinsky5_cache_text_encoder_outputs",
    "musubi_tuner.kandinsky5_train_network",
    "musubi_tuner.kandinsky5_generate_video",
)
# argparse's action classes -> the `action=` keyword that creates them.
ACTION_KINDS = {
    "_StoreAction": "store",
    "_StoreTrueAction": "store_true",
    "_StoreFalseAction": "store_false",
    "_StoreConstAction": "store_const",
    "_AppendAction": "append",
    "_AppendConstAction": "append_const",
    "_CountAction": "count",
    "_HelpAction": "help",
    "_VersionAction": "version",
    "_ExtendAction": "extend",
    "BooleanOptionalAction": "boolean_optional",
}


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__("parser captured")
        self.parser = parser


def capture_parser(module: str) -> argparse.ArgumentParser:
    """Run MODULE's entry point until its first parse_args/parse_known_args and return that parser."""

    def fake(self, *a, **k):
        raise _Captured(self)

    saved = (argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args)
    probe = _cuda_device_probe()
    argparse.ArgumentParser.parse_args = fake
    argparse.ArgumentParser.parse_known_args = fake
    argv0, sys.argv = sys.argv, [module]
    logging.disable(logging.CRITICAL)
    try:
        # musubi prints "Trying to import sageattention" at import time: keep our output clean.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            mod = importlib.import_module(module)
            main = getattr(mod, "main", None)
            if main is not None and not inspect.signature(main).parameters:
                main()
            else:  # the converter: its parser is built under `if __name__ == "__main__":`
                runpy.run_module(module, run_name="__main__")
    except _Captured as c:
        return c.parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved
        probe()
        sys.argv = argv0
        logging.disable(logging.NOTSET)
    raise RuntimeError(f"{module} finished without calling parse_args")


def _cuda_device_probe():
    """On a torch without a usable CUDA device, make torch.cuda.current_device() answer 0 (only a default argument
    evaluated at import needs it; nothing runs on a device) and return the function that restores it."""
    import torch

    if torch.cuda.is_available():
        return lambda: None
    original = torch.cuda.current_device
    torch.cuda.current_device = lambda: 0

    def restore():
        torch.cuda.current_device = original

    return restore


def _jsonable(value):
    """A default as JSON when it round-trips, else {"repr": ...} (never the case in v0.3.4, but stay honest)."""
    try:
        if json.loads(json.dumps(value)) == value:
            return value
    except (TypeError, ValueError):
        pass
    return {"repr": repr(value)}


def _type_name(t) -> str | None:
    return None if t is None else getattr(t, "__name__", repr(t))


def describe_action(a: argparse.Action) -> dict:
    kind = ACTION_KINDS.get(type(a).__name__)
    if kind is None:
        raise RuntimeError(f"unknown argparse action class {type(a).__name__} for {a.dest}")
    d = {
        "option_strings": list(a.option_strings),
        "dest": a.dest,
        "action": kind,
        "nargs": a.nargs,
        "const": _jsonable(a.const),
        "type": _type_name(a.type),
        "choices": None if a.choices is None else [_jsonable(c) for c in a.choices],
        "default": _jsonable(a.default),
        "required": bool(a.required),
        "metavar": a.metavar,
    }
    if a.help == argparse.SUPPRESS:  # hidden options are left out of usage lines; keep that visible
        d["help_suppressed"] = True
    return d


def describe_parser(module: str, parser: argparse.ArgumentParser) -> dict:
    mod_file = sys.modules[module].__file__ if module in sys.modules else None
    if mod_file is None:  # the converter ran under runpy: find its file the same way python -m would
        mod_file = importlib.util.find_spec(module).origin
    if parser._mutually_exclusive_groups:
        raise RuntimeError(f"{module}: mutually exclusive groups are not supported by the stand-in")
    return {
        # `python -m pkg.mod` sets sys.argv[0] to the module's file, so argparse's prog is its basename.
        "prog": os.path.basename(mod_file),
        "description": parser.description,
        "allow_abbrev": parser.allow_abbrev,
        "prefix_chars": parser.prefix_chars,
        "actions": [describe_action(a) for a in parser._actions],
        "positionals": [a.dest for a in parser._actions if not a.option_strings],
    }


def build_spec() -> dict:
    import importlib.metadata as md

    try:
        version = md.version("musubi-tuner")
    except md.PackageNotFoundError:
        version = None
    return {
        "comment": "Generated by tests/standin/dump_musubi_flags.py from the real musubi-tuner parsers; "
        "do not edit by hand (re-run the script).",
        "musubi_tuner_version": version,
        "modules": {m: describe_parser(m, capture_parser(m)) for m in MODULES},
    }


def diff(old, new, path="") -> list[str]:
    """Human-readable differences between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            if k not in old:
                out.append(f"{path}/{k}: added {json.dumps(new[k])[:200]}")
            elif k not in new:
                out.append(f"{path}/{k}: removed")
            else:
                out += diff(old[k], new[k], f"{path}/{k}")
        return out
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(x, dict) and "dest" in x for x in old + new):
        o = {x["dest"]: x for x in old}
        n = {x["dest"]: x for x in new}
        out = diff(o, n, path)
        if [x["dest"] for x in old] != [x["dest"] for x in new] and not out:
            out.append(f"{path}: order of actions changed")
        return out
    return [] if old == new else [f"{path}: {json.dumps(old)} -> {json.dumps(new)}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare musubi_flags.json with the installed musubi")
    ap.add_argument("--output", type=Path, default=JSON_PATH, help="JSON file (default: beside this script)")
    args = ap.parse_args(argv)
    spec = build_spec()
    if args.check:
        old = json.loads(args.output.read_text())
        problems = diff(old, spec)
        for p in problems:
            print(f"DIFF {p}")
        print(
            "OK musubi_flags.json matches the installed musubi-tuner"
            if not problems
            else f"{len(problems)} difference(s): re-run without --check to regenerate"
        )
        return 1 if problems else 0
    args.output.write_text(json.dumps(spec, indent=1, ensure_ascii=False) + "\n")
    n = {m: len(s["actions"]) for m, s in spec["modules"].items()}
    print(f"wrote {args.output}: " + ", ".join(f"{m.rsplit('.', 1)[1]} {k} actions" for m, k in n.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
