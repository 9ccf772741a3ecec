"""The stages in order, the checks before them, and what the user sees: progress, failures, how to resume.

Order: environment check (musubi installed, GPU visible: seconds) -> data preflight (every file checked, the
exact items musubi will cache planned: before any download) -> [1/7] download -> [2/7] extract -> [3/7] dataset
TOML -> [4/7] cache latents -> [5/7] cache text-encoder outputs -> [6/7] train -> [7/7] convert.
`--dry_run` runs the preflight and stages 2 and 3, then writes plan.json; `--check_data` runs only the preflight.
After training: `--generate` compares base model and LoRA of a finished run (compare/) and trains nothing;
`--push_to_hub` uploads the run once it has finished (share/), also on its own for a finished `--resume` run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import tomli_w

from ..cache import caches, cachestore
from ..compare import generate as compare
from ..compare import locate
from ..data import preflight
from ..data import report as data_report
from ..share import push
from ..stages import cache_latents, cache_text_encoder, convert, dataset_toml, download, extract, train
from ..training import hints, plan, sampling
from ..training.musubi import launcher
from . import runs
from .config import Settings
from .context import RunContext, RunPaths, Summary, child_env, new_run_paths
from .errors import DataError, InternalError, Interrupted, StageFailed, UserError
from .fsutil import atomic_write_json, atomic_write_text
from .lock import LockHeld, RunLock, find_live_lock
from .runner import log_tail

STAGES = (download, extract, dataset_toml, cache_latents, cache_text_encoder, train, convert)
PLANNED = (cache_latents, cache_text_encoder, train, convert)  # the musubi stages a dry run plans


def run(settings: Settings) -> RunContext | None:
    """Run the whole pipeline, the dry run or the data check (their RunContext), or --generate / an upload alone
    (None). Raises UserError, StageFailed, Interrupted or InternalError (an unexpected exception: its traceback is
    in the run folder's logs/internal_error.log)."""
    with _sigterm_raises():
        return _run(settings)


def _run(settings: Settings) -> RunContext | None:
    if settings.generate:
        return _generate(settings)
    if settings.push_to_hub and settings.resume is not None and locate.status(settings.resume) == "succeeded":
        print(f"{settings.resume.name} has finished: uploading it as it is (nothing is trained)", flush=True)
        push.push(settings, settings.resume)
        return None
    training = not (settings.dry_run or settings.check_data or settings.download_only)
    if training:
        check_environment(settings)
    check_folders(settings)
    if training or settings.dry_run:
        runs.check_resume(settings)  # seconds, before the data check; the same message for both
    if training:
        _refuse_a_live_run(settings)
    if settings.download_only:
        ctx = _open_run(settings)
        with _guard(ctx):
            _run_stage(ctx, 1, download)
            print(f"\nModel files ready in {settings.models_dir}.", flush=True)
        return _finish(ctx)
    try:
        report, wall = _preflight(settings)
    except (KeyboardInterrupt, Interrupted) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        print(
            f"\nStopped ({signal.Signals(signum).name}) during the data check; nothing was started or "
            "downloaded. Run the same command again.",
            file=sys.stderr,
            flush=True,
        )
        raise Interrupted(signum, "preflight") from None
    except UserError:
        raise
    except Exception:  # a bug in the data check: it gets a run folder for its traceback
        with _guard(_open_run(settings)):
            raise
    if settings.check_data or report.errors:
        ctx = _open_run(settings)
        with _guard(ctx):
            _record_preflight(ctx, report, wall)
            print(f"\nThe data is usable. Report: {ctx.paths.root / 'dataset_report.json'}", flush=True)
        return _finish(ctx)
    the_plan, the_caches, ident = _plan(settings, report)
    if settings.dry_run:
        _describe_choice(runs.choose(settings, ident))  # refuses a --resume the real run would refuse
        ctx = _open_run(settings, plan=the_plan, caches=the_caches)
        with _guard(ctx):
            _record_preflight(ctx, report, wall)
            dry_run(ctx)
        return _finish(ctx)
    unfinished_upload = push.pending_run(settings, ident)
    if unfinished_upload is not None:
        print(f"{unfinished_upload.name} has finished training but not its upload: resuming the upload", flush=True)
        push.push(settings, unfinished_upload)
        return None
    choice = runs.choose(settings, ident)
    for message in choice.messages:
        print(message, flush=True)
    with RunLock(choice.run_dir or new_run_paths(settings.output_dir, settings.output_name).root, sys.argv) as lock:
        for stale in lock.took_over:
            print(f"taking over the stale lock of {stale.describe()}", flush=True)
        ctx = _open_run(settings, lock.run_dir, plan=the_plan, caches=the_caches)
        with _guard(ctx):
            runs.record(ctx.paths.root, ident, settings, the_plan)
            if settings.push_to_hub:  # so that the same command resumes an upload cut after training
                push.mark(ctx.paths.root, settings.push_to_hub, "pending")
            ctx.summary.put("run_identity", ident["data"])
            _record_preflight(ctx, report, wall)
            for i, stage in enumerate(STAGES, 1):
                _run_stage(ctx, i, stage)
            _report_success(ctx)
        result = _finish(ctx)
    if settings.push_to_hub:  # after the run is recorded as trained: a failed upload does not fail the training
        push.push(settings, result.paths.root)
    return result


def _generate(settings: Settings) -> None:
    """--generate (then --push_to_hub of that run, if asked)."""
    check_environment(settings)
    check_folders(settings)
    plan = compare.run(settings)
    if settings.push_to_hub and plan.trained.run_dir is not None:
        push.push(settings, plan.trained.run_dir)


def _describe_choice(choice: runs.Choice) -> None:
    """What a real run with these settings would continue (the dry run's view of runs.choose)."""
    for message in choice.messages:
        print(message, flush=True)
    if choice.run_dir is not None:
        print(f"a real run would continue {choice.run_dir}", flush=True)


def _plan(settings: Settings, report):
    """The plan, the cache entries and the run's identity, before anything is downloaded (--skip_cache and the
    items-vs-GPUs check are decided here)."""
    the_plan = plan.make(settings, report.buckets())
    print("\n[plan]", flush=True)
    for line in plan.describe(settings, the_plan) + [sampling.describe(settings, the_plan)]:
        print(f"  {line}", flush=True)
    if the_plan.items * settings.num_repeats < the_plan.launch.num_processes:
        raise DataError(
            f"{the_plan.items * settings.num_repeats} training item(s) per epoch for {the_plan.launch.num_processes} "
            "GPU processes: every GPU needs at least one. Add data, raise --num_repeats or use fewer --num_gpus"
        )
    index = cachestore.DigestIndex(settings.output_dir / "cache" / "digests.json")
    the_caches = caches.plan(settings, report, the_plan.memory, index)
    index.save()
    if settings.skip_cache:  # decided now, not after a 40 GB download
        missing = caches.missing(the_caches)
        if missing:
            shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
            raise UserError(
                f"--skip_cache: {len(missing)} cache file(s) are missing (the data, a caption or a cache "
                f"setting changed, or caching never finished):\n  {shown}\nRun without --skip_cache."
            )
    return the_plan, the_caches, runs.identity(settings, report, the_caches, the_plan)


def _open_run(settings: Settings, run_dir: Path | None = None, plan=None, caches=None) -> RunContext:
    """A new run folder, or (resume) the existing `run_dir`, with its config.toml and summary.json."""
    resumed = run_dir is not None and (run_dir / "summary.json").exists()
    paths = RunPaths(run_dir) if run_dir is not None else new_run_paths(settings.output_dir, settings.output_name)
    paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.config_toml, "# effective settings of this run\n" + tomli_w.dumps(settings.to_toml_dict()))
    ctx = RunContext(
        settings, paths, Summary(paths.summary, settings, resume=resumed), child_env(), plan=plan, caches=caches
    )
    print(f"{'continuing' if resumed else 'run folder:'} {paths.root}", flush=True)
    return ctx


@contextmanager
def _guard(ctx: RunContext):
    """Every way a run can end besides success: the summary says how, the console what to do next."""
    try:
        yield
    except (KeyboardInterrupt, Interrupted) as e:
        err = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        ctx.summary.finish("interrupted")
        _report_interrupted(ctx, err)
        raise err from None
    except StageFailed as e:
        ctx.summary.finish("failed")
        _report_failure(ctx, e)
        raise
    except UserError:
        ctx.summary.finish("failed")
        raise
    except Exception as e:  # a bug: one line for the user, the traceback for the report
        log = ctx.paths.logs / "internal_error.log"
        ctx.summary.data["error"] = {"internal": describe_exception(e), "log": str(log)}
        ctx.summary.finish("failed")
        raise internal_error(e, log) from None


def internal_error(e: BaseException, log_path: Path) -> InternalError:
    """Write `e`'s traceback to `log_path` and return the InternalError that names it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as f:
        f.write("".join(traceback.format_exception(e)))
    return InternalError(f"internal error: {describe_exception(e)}", log_path)


def describe_exception(e: BaseException) -> str:
    """'ValueError: msg (in func, hvlora/x.py:12)': the exception and the innermost frame of our code."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if f"{Path(__file__).parents[1].name}{os.sep}" in f.filename] or frames
    where = f" (in {ours[-1].name}, {Path(ours[-1].filename).name}:{ours[-1].lineno})" if ours else ""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}{': ' + text[:300] if text else ''}{where}"


def _finish(ctx: RunContext) -> RunContext:
    ctx.summary.finish("succeeded")
    return ctx


def _refuse_a_live_run(s: Settings) -> None:
    """One run at a time per output folder: another live training process there stops this one in seconds."""
    live = find_live_lock(s.output_dir)
    if live is not None and not live.stale:
        raise LockHeld(live)


def check_environment(s: Settings) -> None:
    """What can fail in seconds before the data is read: musubi and accelerate installed, a GPU visible.
    Raises UserError."""
    _require_module("musubi_tuner", "musubi-tuner is not installed in this Python")
    _require_module("accelerate", "accelerate is not installed in this Python")
    if s.device == "cuda":
        visible = _require_cuda()
        if isinstance(s.num_gpus, int) and s.num_gpus > visible:
            raise UserError(
                f"--num_gpus {s.num_gpus}, but PyTorch sees {visible} GPU(s) (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): use --num_gpus {visible} or all"
            )


def check_folders(s: Settings) -> None:
    """output_dir must be a writable folder (created if missing) outside input_dir; models_dir, if it exists, a
    folder. Raises UserError naming the folder and the fix."""
    out = s.output_dir
    if s.input_dir is not None and _inside(out, s.input_dir):
        raise UserError(
            f"output_dir {out} is inside input_dir {s.input_dir}: the outputs would become part of the input (and "
            "be refused by the next data check). Pass an --output_dir outside it"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"output_dir {out} is not a folder (a file is in the way): pass another --output_dir") from None
    except OSError as e:
        raise UserError(
            f"output_dir {out} cannot be created or written ({e.strerror or e}): pass a writable --output_dir"
        ) from None
    if s.models_dir.exists() and not s.models_dir.is_dir():
        raise UserError(f"models_dir {s.models_dir} is not a folder: pass another --models_dir")


def _inside(path: Path, folder: Path) -> bool:
    """True when `path` is `folder` or below it, links resolved (the folder need not exist yet)."""
    return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(folder)))


def media_store(s: Settings) -> Path:
    """Where a zip's media are unpacked, named by content and shared by every run of OUTPUT_DIR."""
    return s.output_dir / "cache" / "media"


def _preflight(s: Settings):
    """The data check, before any run folder exists: (report, wall seconds). --check_data unpacks into a
    temporary folder that is removed afterwards; a run unpacks into the shared media store (kept: the next run
    of the same zip unpacks nothing)."""
    print("\n[preflight] check data", flush=True)
    t0 = time.monotonic()
    if s.check_data:
        with tempfile.TemporaryDirectory(prefix=".check-", dir=s.output_dir) as tmp:
            report = preflight.run(s, Path(tmp))
    else:
        report = preflight.run(s, media_store(s))
    print(data_report.text(report), flush=True)
    return report, time.monotonic() - t0


def check_data(ctx: RunContext) -> None:
    """The data preflight for an open run: check, then record (see _record_preflight). Raises DataError."""
    report, wall = _preflight(ctx.settings)
    _record_preflight(ctx, report, wall)


def _record_preflight(ctx: RunContext, report, wall: float) -> None:
    """The preflight's report into the run folder (logs/preflight.log, dataset_report.json) and summary.json;
    sets ctx.data. Raises DataError when anything stops the run (before any download)."""
    _log_to_file(ctx.paths.log("preflight"), data_report.text(report))
    json_path = data_report.write(report, ctx.paths.root)
    totals = data_report.totals(report)
    keys = ("images", "videos", "left_out", "items", "training_items_per_epoch", "items_per_bucket")
    ctx.summary.update("items", {k: totals[k] for k in keys})
    status = "failed" if report.errors else "ok"
    ctx.summary.stage(
        "preflight", status, wall, report=str(json_path), errors=len(report.errors), warnings=totals["warnings"]
    )
    if report.errors:
        lines = "\n  ".join(str(p) for p in report.errors[:50])
        more = f"\n  ... and {len(report.errors) - 50} more" if len(report.errors) > 50 else ""
        raise DataError(
            f"the data cannot be trained on as it is ({len(report.errors)} error(s); nothing was "
            f"downloaded or started):\n  {lines}{more}\nFull report (kept in the run folder): {json_path}"
        )
    print(f"[preflight] check data: done in {format_seconds(wall)}", flush=True)
    ctx.data = report


def _require_module(name: str, what: str) -> None:
    if importlib.util.find_spec(name) is None:
        raise UserError(
            f"{what} ({sys.executable}). Use `docker compose run train`, or install musubi-tuner "
            "v0.3.4 and this project's requirements into this environment."
        )


def _require_cuda() -> int:
    try:
        import torch
    except ImportError:
        raise UserError(
            f"PyTorch is not installed in this Python ({sys.executable}); use `docker compose run "
            "train` or install musubi-tuner's environment."
        ) from None
    if not torch.cuda.is_available():
        raise UserError(
            "--device cuda, but no CUDA GPU is visible to PyTorch. Check `nvidia-smi` on the host; in "
            "Docker install the NVIDIA Container Toolkit (compose reserves the GPU for the train "
            "service). For a CPU smoke run, pass --device cpu."
        )
    return torch.cuda.device_count()


def _run_stage(ctx: RunContext, index: int, stage) -> None:
    title = stage.title(ctx) if hasattr(stage, "title") else stage.TITLE  # some stages are named by the family
    label = f"[{index}/{len(STAGES)}] {title}"
    print(f"\n{label}", flush=True)
    t0 = time.monotonic()
    try:
        info = stage.run(ctx) or {}
    except BaseException as e:
        status = "interrupted" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "failed"
        extra = {"error": str(e) or type(e).__name__, "log": str(ctx.paths.log(stage.NAME))}
        if isinstance(e, StageFailed):
            extra.update(command=e.command, exit_code=e.returncode)
        ctx.summary.stage(stage.NAME, status, time.monotonic() - t0, **extra)
        _log_to_file(ctx.paths.log(stage.NAME), f"{status.upper()}: {extra['error']}")
        raise
    wall = time.monotonic() - t0
    status = "skipped" if info.pop("skipped", False) else "ok"
    ctx.summary.stage(stage.NAME, status, wall, log=str(ctx.paths.log(stage.NAME)), **info)
    print(f"{label}: {'skipped' if status == 'skipped' else 'done'} in {format_seconds(wall)}", flush=True)


def _log_to_file(path: Path, line: str) -> None:
    """The stage's log gets its own failure too (the console shows it already)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def dry_run(ctx: RunContext) -> dict:
    """Stages 2 and 3 for real; then report model files, print the musubi commands, write plan.json."""
    s = ctx.settings
    _run_stage(ctx, 2, extract)
    _run_stage(ctx, 3, dataset_toml)
    found = download.presence(s.family, s.task, s.models_dir, ctx.env, s.dit_variant)
    ctx.weights = found.weights
    print("\nmodel files:", flush=True)
    for line in found.present:
        print(f"  present  {line}")
    for line in found.missing:
        print(f"  missing  {line}  (the download stage would fetch it)")
    commands = {STAGES.index(st) + 1: st.command(ctx) for st in PLANNED}  # None: a stage this family skips
    planned = {i: cmd for i, cmd in commands.items() if cmd is not None}
    plan = {"dataset_config": str(ctx.dataset_toml), "stages": [cmd.plan_entry() for cmd in planned.values()]}
    atomic_write_json(ctx.paths.plan, plan)
    print("\ncommands a real run would start (nothing was started):", flush=True)
    for i, cmd in planned.items():
        print(f"  [{i}/{len(STAGES)}] {cmd.display()}")
    _print_nodes(ctx)
    print(f"\nplan: {ctx.paths.plan}", flush=True)
    return plan


def _print_nodes(ctx: RunContext) -> None:
    """Multi-node: the same command on every machine, each with its own --machine_rank (accelerate's launch)."""
    s, launch = ctx.settings, ctx.plan.launch
    if launch.num_machines < 2:
        return
    print(
        f"\non each of the {launch.num_machines} machines (data, models and output on a shared path), the train "
        "command with its rank; machine 0 runs the cache stages first and writes every checkpoint:",
        flush=True,
    )
    for rank in range(launch.num_machines):
        node = dataclasses.replace(launch, machine_rank=rank)
        cmd = dataclasses.replace(train.command(ctx), launcher=launcher(s, node))
        print(f"  machine {rank}: {cmd.display()}", flush=True)


def _report_success(ctx: RunContext) -> None:
    outs = ctx.summary.data["outputs"]
    attempts = ctx.summary.data.get("attempts") or [{"first_stage": 0}]
    total = sum(st["wall_s"] for st in ctx.summary.data["stages"][attempts[-1]["first_stage"] :])  # this command
    print(f"\nDone in {format_seconds(total)}.", flush=True)
    converter = ctx.settings.family.converter
    for name, rec in outs.items():
        converted = converter is not None and name.endswith(f"{converter.suffix}.safetensors")
        kind = f"{converter.label} format" if converted else "musubi format"
        print(f"  {rec['path']}  ({kind})")
    print(f"  run folder: {ctx.paths.root} (logs, checkpoints, state, TensorBoard, summary.json)", flush=True)


def _report_failure(ctx: RunContext, e: StageFailed) -> None:
    """The stage, its command, the log's tail, and (when the log says) what happened and what to do next."""
    lines = [f"\nstage {e.stage} FAILED: {e}"]
    if e.command:
        lines.append(f"command: {shlex.join(e.command)}")
    hint = None
    if e.log_path:
        lines.append(f"log: {e.log_path}")
        tail = log_tail(Path(e.log_path))
        if tail:
            lines.append(f"last {len(tail)} lines of the log:")
            lines += [f"  | {ln}" for ln in tail]
        hint = hints.classify(log_tail(Path(e.log_path), 400), e.returncode, _hint_context(ctx, e.stage))
    if hint is not None:
        lines.append(hints.format_hint(hint))
        ctx.summary.put("failure", {"stage": e.stage, "kind": hint.kind, "what": hint.what, "todo": list(hint.todo)})
    print("\n".join(lines), file=sys.stderr, flush=True)


def _hint_context(ctx: RunContext, stage: str) -> hints.HintContext:
    s, m = ctx.settings, ctx.plan.memory if ctx.plan else None
    return hints.HintContext(
        stage=stage,
        family=s.family,
        dit_variant=s.dit_variant,
        vram_preset=m.preset if m else None,
        fp8=m.fp8 if m else bool(s.fp8),
        blocks_to_swap=m.blocks_to_swap if m else (s.blocks_to_swap or 0),
        resolution=s.resolution,
        target_frames=s.target_frames,
        num_gpus=ctx.plan.launch.num_processes if ctx.plan else 1,
        learning_rate=s.learning_rate,
        optimizer=s.optimizer,
        max_data_loader_n_workers=s.max_data_loader_n_workers,
        folders={"output_dir": s.output_dir, "models_dir": s.models_dir},
    )


def _report_interrupted(ctx: RunContext, e: Interrupted) -> None:
    stage = e.stage or (ctx.summary.data["stages"][-1]["name"] if ctx.summary.data["stages"] else "startup")
    print(
        f"\nStopped ({signal.Signals(e.signum).name}) during {stage}; every process it started has exited.\n"
        f"Nothing is lost: {ctx.paths.root} keeps the logs, summary.json and every checkpoint and training state "
        "written so far; cached items are kept one by one; downloaded model files are kept and a partial download "
        "resumes.\nTo continue, run the same command again: it continues this run from its newest saved state "
        "(steps after it are trained again).",
        file=sys.stderr,
        flush=True,
    )


@contextmanager
def _sigterm_raises():
    """In-process stages: SIGTERM (docker stop) ends them like Ctrl-C, with the resume message."""

    def handler(signum, _frame):
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, handler) if _in_main_thread() else None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def format_seconds(s: float) -> str:
    """1.23 -> '1.2 s', 75 -> '1m15s', 3725 -> '1h02m05s'."""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s"
