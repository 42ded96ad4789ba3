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
from ot_ray.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
USAGE_ERROR = 2


def config_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the ``--config`` / ``--set`` options every job shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"YAML config file (default: {DEFAULT_CONFIG.relative_to(REPO_ROOT)})",
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
    return load_config(args.config, args.overrides)


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None):
    """Run ``main`` and exit: user errors print one message to stderr and exit with status 2."""
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    sys.exit(code or 0)


def show_config(argv: Sequence[str] | None = None) -> int:
    """``jobs/show_config.py``: validate a config with its overrides and print it resolved."""
    from ot_ray.config import dump_config

    parser = config_parser("Validate a config (with overrides) and print it resolved as YAML.")
    config = config_from_args(parser.parse_args(argv))
    print(dump_config(config), end="")
    return 0
