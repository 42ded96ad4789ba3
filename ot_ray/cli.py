"""Shared command-line plumbing for the scripts in ``jobs/``.

Every job takes ``--config FILE`` and repeatable ``--set key=value`` overrides, and every job
reports user errors (bad config, bad data) as a short message with exit status 2 instead of a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ot_ray.config import Config, load_config
from ot_ray.config.loading import written_at
from ot_ray.errors import ConfigError, UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DEMO_SWEEP_CONFIG = REPO_ROOT / "configs" / "demo_sweep.yaml"  # sized for a laptop
USAGE_ERROR = 2

#: Where each key of the config this command loaded was written (``file:line``, ``--set ...``):
#: a setting refused after loading (a folder, the data, the model) is then said with its place.
WRITTEN: dict[str, str] = {}


def positive_int(text: str) -> int:
    """An argparse type: a count of at least 1 (a repeat count of 0 ended in a statistics
    error after minutes of setup)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of at least 1")
    return value


def config_parser(description: str, default: Path = DEFAULT_CONFIG) -> argparse.ArgumentParser:
    """An argument parser with the ``--config`` / ``--set`` options every job shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        help=f"YAML config file (default: {default.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set alignment.ot.epsilon=0.01 (repeatable)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated config named by parsed ``--config`` / ``--set`` arguments."""
    WRITTEN.clear()
    return load_config(args.config, args.overrides, written=WRITTEN)


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None):
    """Run ``main`` and exit: user errors print one message to stderr and exit with status 2."""
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {located(err)}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    sys.exit(code or 0)


def located(err: UserError) -> str:
    """The error's message, led by where its key was written when only the key is known (a
    setting refused after loading): ``configs/x.yaml:12: train.output_dir: ... is a file``."""
    if isinstance(err, ConfigError) and err.key and not err.source:
        where = written_at(err.key.split(" ")[0], WRITTEN)
        if where:
            return f"{where}: {err}"
    return str(err)


def show_config(argv: Sequence[str] | None = None) -> int:
    """``jobs/show_config.py``: validate a config with its overrides and print it resolved."""
    from ot_ray.config import dump_config

    parser = config_parser("Validate a config (with overrides) and print it resolved as YAML.")
    config = config_from_args(parser.parse_args(argv))
    print(dump_config(config), end="")
    return 0


def prepare_demo(argv: Sequence[str] | None = None) -> int:
    """``jobs/prepare_demo.py``: build the offline demo world (data + tiny encoder)."""
    from ot_ray.demo.build import ensure_demo_world, world_dir
    from ot_ray.launch import writable_folder

    parser = config_parser(
        "Build the offline demo world: generated multilingual data in the real formats and a tiny "
        "encoder pre-trained on its monolingual text."
    )
    parser.add_argument(
        "--out", type=Path, help="output directory (default: the cache dir of the config)"
    )
    parser.add_argument("--seed", type=_world_seed, help="world seed (default: data.demo.seed)")
    parser.add_argument("--force", action="store_true", help="rebuild even if it exists")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"data.demo.seed={args.seed}")
    demo = load_config(args.config, overrides).data.demo
    if args.out is not None:
        writable_folder(args.out.expanduser().resolve(), "--out")
    target = args.out or world_dir(demo)
    existed = (target / "manifest.json").exists() and not args.force
    path = ensure_demo_world(demo, args.out, force=args.force)
    print(describe_world(path, reused=existed))
    return 0


def _world_seed(text: str) -> int:
    """``--seed`` checked where it is typed (as a ``--set`` its error would name an override
    the user never wrote)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, found {text!r}") from None
    if not 0 <= seed < 2**31:  # the range of data.demo.seed
        raise argparse.ArgumentTypeError(f"a world seed is 0 to 2**31 - 1, found {seed}")
    return seed


def describe_world(path: Path, *, reused: bool) -> str:
    """A short listing of a demo world: files, sizes, languages and the encoder's report."""
    import json

    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    lines = [f"{'reused' if reused else 'built'} demo world (seed {manifest['seed']}) at {path}"]
    for name in manifest["files"]:
        file = path / name
        count = file.read_bytes().count(b"\n")
        lines.append(f"  {name:<28} {file.stat().st_size / 1024:8.0f} KiB {count:7d} lines")
    encoder = manifest["encoder"]
    lines.append(
        f"  encoder/  {encoder['parameters']:,} parameters, vocab {encoder['vocab_size']}, "
        f"held-out MLM accuracy {encoder['heldout_mlm_accuracy']:.3f}"
    )
    seen = ", ".join(manifest["seen_in_alignment"])
    lines.append(f"  pivot {manifest['pivot']}; seen in alignment: {seen}")
    return "\n".join(lines)


def train(argv: Sequence[str] | None = None) -> int:
    """``jobs/train.py``: one complete trial (alignment, tasks, evaluation) on Ray Train."""
    from ot_ray.launch import check_ray_address, connect_ray, fit, resolve_paths
    from ot_ray.summary import summary_table

    parser = config_parser(
        "Run one trial: align the encoder on parallel text, fine-tune each task on the pivot, "
        "evaluate zero-shot on every language. Runs on Ray Train (train.num_workers workers)."
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run in this process without Ray (debugging; same code as one worker)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --in-process: continue from <output_dir>/checkpoint",
    )
    args = parser.parse_args(argv)
    if args.resume and not args.in_process:
        parser.error(
            "--resume is for --in-process runs; on Ray Train a trial submitted again with the "
            "same settings (or train.run_name) resumes from its last checkpoint by itself"
        )
    user_config = config_from_args(args)
    if args.resume:  # before the demo world's build and the data checks
        from ot_ray.reporters import require_checkpoint

        require_checkpoint(Path(user_config.train.output_dir).expanduser().resolve())
    if not args.in_process:
        check_ray_address()
    config = resolve_paths(user_config)
    from ot_ray.preflight import check_data

    check_data(config)
    if args.in_process:
        from ot_ray.reporters import LocalReporter
        from ot_ray.trial import run_trial

        reporter = LocalReporter(Path(config.train.output_dir), resume=args.resume)
        metrics = run_trial(config, reporter)
    else:
        import ray

        connect_ray()
        try:
            metrics = fit(config)
        finally:
            ray.shutdown()
    print(summary_table(metrics, config.data.all_eval_languages))
    print(f"outputs: {config.train.output_dir}")
    return 0


def tune(argv: Sequence[str] | None = None) -> int:
    """``jobs/tune.py``: the search service (Tune + Optuna + ASHA over Ray Train, MLflow)."""
    import os

    from ot_ray.launch import check_ray_address, connect_ray, resolve_paths
    from ot_ray.preflight import check_data
    from ot_ray.search.report import (
        NotRegistered,
        SweepNotRecorded,
        finish_sweep,
        register_best,
        served_layer,
    )
    from ot_ray.search.sweep import check_sweep_request, run_sweep
    from ot_ray.search.tracking import check_tracking, redacted, tracking_uri

    parser = config_parser(
        "Search OT alignment and training settings: Ray Tune + Optuna (+ ASHA pruning) over "
        "Ray Train trials, every trial tracked in MLflow. Runs on the Ray cluster of "
        "RAY_ADDRESS (ray job submit) or on a local one.",
        default=DEMO_SWEEP_CONFIG,
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the interrupted sweep tune.name"
    )
    args = parser.parse_args(argv)
    user_config = config_from_args(args)
    # Fail fast: the sweep's name and the tracking store before the demo world is built and the
    # data read.
    check_sweep_request(user_config, resume=args.resume)
    # nothing written yet (run_sweep creates the experiment once every check has passed)
    check_tracking(tracking_uri(user_config), user_config.tracking.experiment, create=False)
    check_ray_address()
    config = resolve_paths(user_config)
    check_data(config)

    def connect() -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's table with our columns
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        connect_ray()

    try:
        outcome = run_sweep(
            config, resume=args.resume, repo=REPO_ROOT, connect=connect, given=user_config
        )
        try:
            text = finish_sweep(outcome, config, user_config)
        except SweepNotRecorded as err:  # the summary, then the one line of error
            print(err.summary, flush=True)
            raise
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    # before registering: a registry that refuses must not lose the summary
    uri = redacted(outcome.tracking_uri)
    print(text)
    print(f"MLflow: {mlflow_view_hint(uri)}", flush=True)
    if config.tracking.registered_model_name and not outcome.interrupted:
        layer = served_layer(config, outcome)
        try:
            version = register_best(outcome, config.tracking.registered_model_name, layer=layer)
        except NotRegistered as err:  # the sweep's results are fine: said, not failed
            print(f"warning: {err}", file=sys.stderr, flush=True)
            version = None
        if version:
            print(f"registered model {config.tracking.registered_model_name} version {version}")
    if outcome.interrupted:
        print(
            "sweep interrupted: continue it with the same command and --resume",
            file=sys.stderr,
        )
        return 130  # the shell's code for a run stopped by Ctrl-C
    return 0 if outcome.best is not None else 1


def mlflow_view_hint(uri: str) -> str:
    """How to look at the sweep's runs: a server is opened as it is; a store (SQLite, a
    database) through a local ``mlflow ui``, which an http URI cannot be given as."""
    if uri.lower().startswith(("http://", "https://")):
        return f"open {uri} (a tracking server)"
    return f"mlflow ui --backend-store-uri {uri} (then http://127.0.0.1:5000)"
