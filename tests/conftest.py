"""Shared fixtures: settings and a run context in a temporary project layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hvlora.core.cli import load_settings
from hvlora.core.context import RunContext, Summary, child_env, new_run_paths


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Path:
    """A folder for a module's shared workspace, removed when the module's tests are done unless one of them failed.
    The end-to-end modules each leave 0.3-2 GB of full-size LoRA files (the stand-in writes every HV1.5 module, as
    musubi does); kept to the end of the session they would fill a small CI disk (pytest.ini drops passing tests'
    own tmp_path folders the same way)."""
    failed_before = request.session.testsfailed
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield root
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_settings(tmp_path):
    """make_settings(*flags) -> Settings with data/models/output under tmp_path and no config file defaults."""
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")

    def make(*flags: str):
        base = [
            "--config",
            str(cfg),
            "--data_dir",
            str(tmp_path / "data"),
            "--models_dir",
            str(tmp_path / "models"),
            "--output_dir",
            str(tmp_path / "output"),
        ]
        return load_settings([*base, *flags], cwd=tmp_path)

    return make


@pytest.fixture
def make_ctx():
    """make_ctx(settings, env=None) -> RunContext with a fresh run folder."""

    def make(settings, env: dict | None = None) -> RunContext:
        paths = new_run_paths(settings.output_dir, settings.output_name)
        return RunContext(settings, paths, Summary(paths.summary, settings), child_env(env or {}))

    return make


def tree(root: Path) -> set[str]:
    """All file paths below root, relative and in posix form."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
