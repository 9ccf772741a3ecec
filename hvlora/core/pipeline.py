"""The stages in order, the checks before them, and what the user sees: progress, failures, how to resume.

Order: environment check (musubi installed, GPU visible: seconds) -> data preflight (every file checked, the
exact items musubi will cache planned: before any download) -> [1/7] download -> [2/7] extract -> [3/7] dataset
TOML -> [4/7] cache latents -> [5/7] cache text-encoder outputs -> [6/7] train -> [7/7] convert.
`--dry_run` runs the preflight and stages 2 and 3, then writes plan.json; `--check_data` runs only the preflight.
After training: `--generate` compares base model and LoRA of a finished run (compare/) and trains nothing;
`--push_to_hub` uploads the run once it has finished (share/), also on its own for a finished `--resume` run.
With captions to generate, a caption stage follows the download ([2/8] caption media; the others move up
by one); `--caption_only` runs the download (of the captioner's file only) and the caption stage.
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
from ..data import preflight
from ..data import report as data_report
from ..stages import cache_latents, cache_text_encoder, caption, convert, dataset_toml, download, extract, train
from ..training import hints, nodes, plan, prompts, sampling
from ..training.musubi import launcher
from . import runs
from .config import Settings
from .context import RunContext, RunPaths, Summary, child_env, new_run_paths, say
from .errors import DataError, InternalError, Interrupted, StageFailed, UserError
from .fsutil import atomic_write_json, atomic_write_text
from .lock import TOKEN_VAR, LockHeld, RunLock, find_live_lock, stop_leftovers
from .runner import log_tail
from .timefmt import format_duration

STAGES = (download, extract, dataset_toml, cache_latents, cache_text_encoder, train, convert)
PLANNED = (cache_latents, cache_text_encoder, train, convert)  # the musubi stages a dry run plans


def stages_for(report) -> tuple:
    """The stages of a run: the caption stage after the download when it has something to do."""
    return (download, caption, *STAGES[1:]) if caption.needed(report) else STAGES


def run(settings: Settings) -> RunContext | None:
    """Run the whole pipeline, the dry run or the data check (their RunContext), or --generate / an upload alone, or,
    on machine R > 0 of a multi-node run, join machine 0's training (nodes.py) (None). Raises UserError, StageFailed, Interrupted or InternalError (an unexpected exception: its traceback is
    in the run folder's logs/internal_error.log)."""
    with _sigterm_raises():
        return _run(settings)


def _push():
    """share.push, imported on use: it and --generate's compare need the training stack (numpy), which --check_data
    and --dry_run must not (README: checking data without it)."""
    from ..share import push

    return push


def _run(settings: Settings) -> RunContext | None:
    if settings.generate:
        return _generate(settings)
    if settings.push_to_hub and settings.resume is not None and _push().locate.status(settings.resume) == "succeeded":
        print(f"{settings.resume.name} has finished: uploading it as it is (nothing is trained)", flush=True)
        _push().push(settings, settings.resume)
        return None
    training = not (settings.dry_run or settings.check_data or settings.download_only)
    if training:
        check_environment(settings)
    if training and settings.machine_rank > 0:  # machine 0 prepares and writes everything; this one joins
        nodes.join(settings)
        return None
    check_folders(settings)
    if training or settings.dry_run:
        runs.check_resume(settings)  # seconds, before the data check; the same message for both
    if not settings.download_only:  # musubi reads it only when training starts: refuse a bad one before stage 1
        prompts.check_file(settings.sample_prompts, settings.task, settings.family.samples)
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
    if settings.caption_only:
        return _caption_only(settings, report, wall)
    the_plan, the_caches, ident = _plan(settings, report)
    if settings.dry_run:
        _describe_choice(runs.choose(settings, ident))  # refuses a --resume the real run would refuse
        ctx = _open_run(settings, plan=the_plan, caches=the_caches)
        with _guard(ctx):
            _record_preflight(ctx, report, wall)
            dry_run(ctx)
        return _finish(ctx)
    unfinished_upload = _push().pending_run(settings, ident)
    if unfinished_upload is not None:
        print(f"{unfinished_upload.name} has finished training but not its upload: resuming the upload", flush=True)
        _push().push(settings, unfinished_upload)
        return None
    choice = runs.choose(settings, ident)
    for message in choice.messages:
        print(message, flush=True)
    with RunLock(choice.run_dir or new_run_paths(settings.output_dir, settings.output_name).root, sys.argv) as lock:
        for stale in lock.took_over:
            print(f"taking over the stale lock of {stale.describe()}", flush=True)
            stopped = stop_leftovers(stale)
            if stopped:
                print(stopped, flush=True)
        ctx = _open_run(settings, lock.run_dir, plan=the_plan, caches=the_caches)
        ctx.env[TOKEN_VAR] = lock.token  # every child carries it: a later takeover finds what this run left
        ctx.on_child = lock.record_child
        with _guard(ctx):
            runs.record(ctx.paths.root, ident, settings, the_plan)
            if settings.push_to_hub:  # so that the same command resumes an upload cut after training
                _push().mark(ctx.paths.root, settings.push_to_hub, "pending")
            ctx.summary.put("run_identity", ident["data"])
            _record_preflight(ctx, report, wall)
            stages = stages_for(report)
            for i, stage in enumerate(stages, 1):
                _run_stage(ctx, i, stage, len(stages))
                if stage is download:
                    _settle_weights(ctx)
            _report_success(ctx)
        result = _finish(ctx)
    if settings.push_to_hub:  # after the run is recorded as trained: a failed upload does not fail the training
        _push().push(settings, result.paths.root)
    return result


def _generate(settings: Settings) -> None:
    """--generate (then --push_to_hub of that run, if asked)."""
    check_environment(settings)
    check_folders(settings)
    from ..compare import generate as compare

    plan = compare.run(settings)
    if settings.push_to_hub and plan.trained.run_dir is not None:
        _push().push(settings, plan.trained.run_dir)


def _describe_choice(choice: runs.Choice) -> None:
    """What a real run with these settings would continue (the dry run's view of runs.choose)."""
    for message in choice.messages:
        print(message, flush=True)
    if choice.run_dir is not None:
        print(f"a real run would continue {choice.run_dir}", flush=True)


def _caption_only(settings: Settings, report, wall: float) -> RunContext:
    """--caption_only: the captioner's file, the caption stage, then stop (one writer of OUTPUT_DIR at a time)."""
    the_plan = plan.make(settings, report.buckets())
    print("\n[plan]", flush=True)
    print(f"  {plan.describe(settings, the_plan)[0]}", flush=True)
    print(f"  {_captions_line(report, the_plan)}", flush=True)
    with RunLock(new_run_paths(settings.output_dir, settings.output_name).root, sys.argv) as lock:
        ctx = _open_run(settings, lock.run_dir, plan=the_plan)
        with _guard(ctx):
            _record_preflight(ctx, report, wall)
            stages = (download, caption) if caption.needed(report) else ()
            for i, stage in enumerate(stages, 1):
                _run_stage(ctx, i, stage, len(stages))
            if not report.overlay.root.is_dir():
                print("\nNothing to caption: every media file has a caption in the data.", flush=True)
            else:
                print(
                    f"\n{'Captions' if stages else 'Nothing to caption; the captions'}: {report.overlay.root} (a .txt "
                    "per media file, and captions.jsonl). Edit any of them: an edited caption is never overwritten. "
                    "Training on the same data uses them.",
                    flush=True,
                )
        return _finish(ctx)


def _captions_line(report, the_plan) -> str:
    """The plan's line about captions: where each comes from, and how the caption stage generates."""
    counts = data_report.caption_sources(report)
    line = "captions: " + (", ".join(f"{n} {data_report.CAPTION_SOURCES[k]}" for k, n in counts.items()) or "none")
    if report.to_caption:
        knob = report.settings.family.captioner.fp8_knob
        fp8 = f"fp8 (--{knob})" if caption.in_fp8(report.settings, the_plan.memory) else "bf16"
        line += f"; Qwen2.5-VL in {fp8} writes them into {report.overlay.root}"
    return line


def _settle_weights(ctx: RunContext) -> None:
    """The commits the model files resolved to join the run's record; a run recorded on other commits (a branch such
    as main moved on the hub) is not continued on them."""
    changed = runs.settle_weights(ctx.paths.root, ctx.settings)
    if changed:
        raise UserError(
            f"the model files changed under this run since it began ({'; '.join(changed)}): its LoRA would continue on "
            "other weights. Pass --revision with the run's commit (REPO_ID=COMMIT) to continue it, or --new_run"
        )


def _plan(settings: Settings, report):
    """The plan, the cache entries and the run's identity, before anything is downloaded (--skip_cache and the
    items-vs-GPUs check are decided here)."""
    the_plan = plan.make(settings, report.buckets())
    print("\n[plan]", flush=True)
    lines = plan.describe(settings, the_plan) + [sampling.describe(settings, the_plan)]
    if settings.generates_captions or any(f.caption_source in ("generated", "edited") for f in report.planned):
        lines.append(_captions_line(report, the_plan))
    for line in lines:
        print(f"  {line}", flush=True)
    if the_plan.items * settings.num_repeats < the_plan.launch.num_processes:
        raise DataError(
            f"{the_plan.items * settings.num_repeats} training item(s) per epoch for {the_plan.launch.num_processes} "
            "GPU processes: every GPU needs at least one. Add data, raise --num_repeats or use fewer --num_gpus"
        )
    index = cachestore.DigestIndex(settings.output_dir / "cache" / "digests.json")
    the_caches = caches.plan(settings, report, the_plan.memory, index)
    index.save()
    if settings.skip_cache and report.to_caption:
        raise UserError(
            f"--skip_cache: {len(report.to_caption)} caption(s) are still to be generated, so their text-encoder "
            "outputs cannot be cached yet. Run without --skip_cache (or --caption_only first)."
        )
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
        settings,
        paths,
        Summary(paths.summary, settings, resume=resumed),
        child_env(device=settings.device),
        plan=plan,
        caches=caches,
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
    print(f"[preflight] check data: done in {format_duration(wall)}", flush=True)
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


def _run_stage(ctx: RunContext, index: int, stage, total: int = len(STAGES)) -> None:
    title = stage.title(ctx) if hasattr(stage, "title") else stage.TITLE  # some stages are named by the family
    label = f"[{index}/{total}] {title}"
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
    print(f"{label}: {'skipped' if status == 'skipped' else 'done'} in {format_duration(wall)}", flush=True)


def _log_to_file(path: Path, line: str) -> None:
    """The stage's log gets its own failure too (the console shows it already)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def dry_run(ctx: RunContext) -> dict:
    """Stages 2 and 3 for real; then report model files, print the musubi commands, write plan.json."""
    s = ctx.settings
    stages = stages_for(ctx.data)
    for st in (extract, dataset_toml):
        _run_stage(ctx, stages.index(st) + 1, st, len(stages))
    found = download.presence(s.family, s.task, s.models_dir, ctx.env, s.dit_variant, download.tokenizer_repos(s))
    ctx.weights = found.weights
    print("\nmodel files:", flush=True)
    for line in found.present:
        print(f"  present  {line}")
    for line in found.missing:
        print(f"  missing  {line}  (the download stage would fetch it)")
    commands = {st: st.command(ctx) for st in PLANNED}  # None: a stage this family skips
    planned = {st: cmd for st, cmd in commands.items() if cmd is not None}
    plan = {"dataset_config": str(ctx.dataset_toml), "stages": [cmd.plan_entry() for cmd in planned.values()]}
    if caption in stages:
        plan["captions_to_generate"] = len(ctx.data.to_caption)
    atomic_write_json(ctx.paths.plan, plan)
    print("\ncommands a real run would start (nothing was started):", flush=True)
    if caption in stages:
        print(
            f"  [2/{len(stages)}] {len(ctx.data.to_caption)} caption(s) to generate into {ctx.data.overlay.root}: "
            f"python -m {caption.WORKER} RUN/caption_job.json (Qwen2.5-VL, one model load)"
        )
    for st, cmd in planned.items():
        print(f"  [{stages.index(st) + 1}/{len(stages)}] {cmd.display()}")
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
    print(f"\nDone in {format_duration(total)}.", flush=True)
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
        fp8_vl=m.fp8_vl if m else bool(s.fp8_vl),
        blocks_to_swap=m.blocks_to_swap if m else (s.blocks_to_swap or 0),
        vae_sample_size=m.vae_sample_size if m else s.vae_sample_size,
        vae_enable_patch_conv=m.vae_enable_patch_conv if m else bool(s.vae_enable_patch_conv),
        samples_off=sampling.off_flags(s) if ctx.plan and sampling.enabled(s, ctx.plan) else (),
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
    say(
        f"\nStopped ({signal.Signals(e.signum).name}) during {stage}; every process it started has exited.\n"
        f"Nothing is lost: {ctx.paths.root} keeps the logs, summary.json and every checkpoint and training state "
        "written so far; cached items are kept one by one; downloaded model files are kept and a partial download "
        "resumes.\nTo continue, run the same command again: it continues this run from its newest saved state "
        "(steps after it are trained again).",
    )


@contextmanager
def _sigterm_raises():
    """In-process stages: SIGTERM (docker stop) and SIGHUP end them like Ctrl-C, with the resume message."""

    def handler(signum, _frame):
        raise Interrupted(signum)

    # SIGHUP (a closed terminal or SSH session) stops a run as SIGTERM does: never a half-dead run going on
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)} if _in_main_thread() else {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
