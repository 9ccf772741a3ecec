"""argparse parsers rebuilt from musubi_flags.json (captured from the real musubi-tuner v0.3.4 parsers).

Every action is added in the real order with the real option strings, dest, kind, nargs, const, type, choices,
default, required flag and metavar, and the parser gets the real prog (the module file's name, as under
`python -m`). So the usage line and every argparse error ("unrecognized arguments: ...", "invalid int value: ...",
"invalid choice: ...", "the following arguments are required: ...", abbreviation handling) come out exactly as
musubi's; only --help lacks the help texts.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

FLAGS_JSON = Path(__file__).resolve().parent.parent / "musubi_flags.json"
PREFIX = "musubi_tuner."


def _int_or_float(value):
    """Same contract as musubi's training/parser_common._int_or_float (the type of --lr_warmup_steps and
    --lr_decay_steps): "N%" is a ratio, an integral value >= 1 is an int, anything else a float."""
    if value.endswith("%"):
        try:
            return float(value[:-1]) / 100.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"Value '{value}' is not a valid percentage") from None
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not an int or float") from None
    return int(number) if number >= 1 and number.is_integer() else number


# Type names in the JSON -> callables. argparse names a failed conversion by the callable's __name__, which these
# share with musubi's ("invalid Path value", "invalid int value").
TYPES = {None: None, "str": str, "int": int, "float": float, "Path": Path, "_int_or_float": _int_or_float}


@functools.cache
def load_spec() -> dict:
    """The whole musubi_flags.json."""
    return json.loads(FLAGS_JSON.read_text())


def module_spec(module: str) -> dict:
    """The spec of one module; accepts the name with or without the `musubi_tuner.` prefix."""
    name = module if module.startswith(PREFIX) else PREFIX + module
    return load_spec()["modules"][name]


def _default(value):
    """JSON defaults are plain values; a {"repr": ...} default (not used in v0.3.4) cannot be rebuilt."""
    if isinstance(value, dict) and set(value) == {"repr"}:
        raise ValueError(f"cannot rebuild default {value['repr']}")
    return value


def _add_action(parser: argparse.ArgumentParser, a: dict) -> None:
    """Add one captured action with the keywords its kind accepts."""
    kind = a["action"]
    kw: dict = {"dest": a["dest"]} if a["option_strings"] else {}
    if kind == "help":
        parser.add_argument(*a["option_strings"], action="help")
        return
    kw["default"] = _default(a["default"])
    if a["option_strings"]:
        kw["required"] = a["required"]
    if a.get("help_suppressed"):
        kw["help"] = argparse.SUPPRESS
    if kind in ("store", "append", "extend"):
        kw.update(nargs=a["nargs"], type=TYPES[a["type"]], choices=a["choices"], metavar=a["metavar"])
        if a["nargs"] == "?":
            kw["const"] = _default(a["const"])
    elif kind in ("store_const", "append_const"):
        kw.update(const=_default(a["const"]), metavar=a["metavar"])
    elif kind in ("store_true", "store_false", "count", "boolean_optional"):
        pass
    else:
        raise ValueError(f"unsupported action kind {kind!r} for {a['dest']}")
    action = argparse.BooleanOptionalAction if kind == "boolean_optional" else kind
    if not a["option_strings"]:  # positional: dest is the name, `required` is implied by nargs
        parser.add_argument(a["dest"], action=action, **kw)
    else:
        parser.add_argument(*a["option_strings"], action=action, **kw)


def build_parser(module: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of `module` (e.g. "hv_1_5_train_network"). `prog` defaults to the real one: the module file's name,
    which is what argparse derives from sys.argv[0] when the real script runs with `python -m`."""
    spec = module_spec(module)
    parser = argparse.ArgumentParser(
        prog=prog or spec["prog"],
        description=spec["description"],
        allow_abbrev=spec["allow_abbrev"],
        prefix_chars=spec["prefix_chars"],
        add_help=False,
    )
    for a in spec["actions"]:
        _add_action(parser, a)
    return parser


def option_strings(module: str) -> set[str]:
    """Every option string the real parser of `module` accepts (e.g. {"--dit", "-h", ...})."""
    return {o for a in module_spec(module)["actions"] for o in a["option_strings"]}
