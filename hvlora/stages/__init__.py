"""The seven pipeline stages, one module each, in the order `pipeline.STAGES` runs them.

Each module has NAME (the log file and summary key), TITLE (what the console shows) and `run(ctx) -> dict`
(summary info; `{"skipped": True}` marks a skipped stage). Stages 4-7 also have `command(ctx)`: the musubi
invocation, shared by the real run and --dry_run's plan.json.
"""
