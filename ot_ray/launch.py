"""Run a trial on Ray Train: a ``TorchTrainer`` whose workers each call :func:`run_trial`.

The driver resolves every path to an absolute one (workers do not share its working
directory), builds the demo world once if the config uses it, and turns a user error raised in
a worker (bad data, NaN loss) back into that error so the CLI can print it in one line.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ot_ray.config import LOCAL_FILE_BUILDERS, Config, SourceSpec
from ot_ray.errors import ConfigError, UserError
from ot_ray.fingerprint import settings_digest
from ot_ray.uris import redacted_text


def writable_folder(path: Path, key: str) -> Path:
    """``path``, once it is clear a folder can be made or written there: a file in its place
    (or above it) or a read-only parent would otherwise fail mid-run with a traceback."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == path else f"is inside {existing}, which is a file"
        raise ConfigError(f"{path} {what}, not a folder", key=key)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: cannot write in {existing}", key=key)
    return path


def resolve_paths(config: Config) -> Config:
    """A copy of ``config`` with local paths made absolute and checked as folders ot-ray can
    write, the encoder checked (loadable, with the layers asked for), and the demo world built.
    First of all, the word segmenters ``data.parallel.pretokenize: moses`` needs are checked
    installed (pythainlp for Thai), as the workers would stop only at that language."""
    if config.data.parallel.pretokenize == "moses":
        from ot_ray.data.moses import check_word_segmenters, pretokenized_languages

        check_word_segmenters(pretokenized_languages(config.data))
    config = absolute_locations(config)  # a copy
    from ot_ray.demo.build import default_cache_root, ensure_demo_world

    demo = config.data.demo
    cache_key = "data.demo.cache_dir" if demo.cache_dir else "data.demo.cache_dir ($OT_RAY_CACHE)"
    demo_cache = (
        Path(demo.cache_dir).expanduser().resolve()
        if demo.cache_dir
        else default_cache_root().resolve()
    )
    demo.cache_dir = str(demo_cache)
    train = config.train
    output_dir = Path(train.output_dir).expanduser().resolve()
    train.output_dir = str(writable_folder(output_dir, "train.output_dir"))
    storage = Path(train.storage_path or output_dir / "ray").expanduser().resolve()
    train.storage_path = str(writable_folder(storage, "train.storage_path"))
    if config.data.cache_dir:
        cache = Path(config.data.cache_dir).expanduser().resolve()
        config.data.cache_dir = str(writable_folder(cache, "data.cache_dir"))
    from ot_ray.preflight import check_model

    demo_model = config.model.name_or_path == "demo"
    if not demo_model:  # a wrong model said now, not after minutes of building the demo world
        check_model(config)
    if config.data.root == "demo" or demo_model:
        # checked only when used: a run of real data must not need a writable home folder
        writable_folder(demo_cache, cache_key)
        ensure_demo_world(demo)  # minutes the first time: after the cheap checks
    if demo_model:  # the demo encoder lives in the world just built
        check_model(config)
    return config


def absolute_locations(config: Config) -> Config:
    """A copy of ``config`` whose data and model locations are absolute: ``data.root``, the
    sources' relative local paths, a local model folder. A relative path means another place
    from another working directory (a worker's, a resumed sweep's)."""
    config = config.model_copy(deep=True)
    if config.data.root != "demo":
        config.data.root = str(Path(config.data.root).expanduser().resolve())
    for spec in source_specs(config):
        absolute_sources(spec)
    local_model = Path(config.model.name_or_path).expanduser()
    if config.model.name_or_path != "demo" and local_model.exists():
        config.model.name_or_path = str(local_model.resolve())
    return config


def source_specs(config: Config) -> list[SourceSpec]:
    """Every data source of the config (parallel text, XNLI, XQuAD; all splits)."""
    data = config.data
    specs = [data.parallel.train, data.parallel.dev]
    specs += [spec for listed in data.parallel.by_language.values() for spec in listed]
    for task in (data.xnli, data.xquad):
        specs += [task.train, task.dev, task.test]
    return specs


def absolute_sources(spec: SourceSpec) -> None:
    """A source's relative local paths made absolute against this working directory
    (placeholders kept): workers and a resumed sweep read them from another one."""

    def absolute(template: str | None) -> str | None:
        if template is None or template.startswith("{root}") or "://" in template:
            return template  # data.root is made absolute itself; a URL (https://, hf://) stays
        path = Path(template).expanduser()
        return str(path if path.is_absolute() else Path.cwd() / path)

    spec.path = absolute(spec.path)
    spec.second_path = absolute(spec.second_path)
    spec.alignments = absolute(spec.alignments)
    if spec.hub in LOCAL_FILE_BUILDERS:  # a Hub repository's data_files are paths inside it
        spec.data_files = absolute(spec.data_files)


def check_ray_address(timeout: float = 5.0) -> None:
    """Say in one line that nobody answers at ``RAY_ADDRESS``: ``ray.init`` would retry for
    minutes and then raise a traceback. Cheap, so the CLIs check it before any other work."""
    address = os.environ.get("RAY_ADDRESS", "")
    if address != address.strip():  # Ray reads it as it is: the host would be " 10.0.0.1"
        raise UserError(f"RAY_ADDRESS={redacted_text(address)!r}: remove the spaces around it")
    if not address or address == "local":
        return
    shown = redacted_text(address)  # a dashboard address may carry user:token@
    if address == "auto":
        found = _running_cluster()
        if found is None:  # a Ray without the lookup: ray.init says it, later
            return
        address, shown = found, f"auto (the cluster found here: {found})"
    scheme, _, rest = address.rpartition("://")
    if scheme in ("http", "https"):
        raise UserError(
            f"RAY_ADDRESS={shown} is a dashboard address, the one `ray job submit --address` "
            "takes; code on the cluster joins it at host:6379 (Ray sets RAY_ADDRESS so in a "
            "submitted job): set that, or unset RAY_ADDRESS to run on a local cluster"
        )
    try:
        parts = urllib.parse.urlsplit(f"//{rest}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if scheme == "ray" and host and port is None:  # the Ray Client's port: an ingress's
        return
    if scheme not in ("", "ray") or not host or port is None:
        raise UserError(
            f"RAY_ADDRESS={shown}: not an address Ray joins (host:port, ray://host:port, "
            "auto or local)"
        )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(
            f"RAY_ADDRESS={shown}: no Ray cluster answers at {host}:{port} ({reason}); start "
            "one there (ray start --head) or unset RAY_ADDRESS to run on a local one"
        ) from None


def _running_cluster() -> str | None:
    """The cluster ``RAY_ADDRESS=auto`` joins (the last ``ray start`` on this machine, or the
    one Ray process found here), found as ``ray.init`` finds it; ``ray.init`` would only fail
    on none after the data checks and the demo world's build. None where this Ray has no such
    lookup (it is Ray's internal API, checked with Ray 2.60)."""
    import ray._private.services as services

    lookup = getattr(services, "canonicalize_bootstrap_address_or_die", None)
    if lookup is None:
        return None
    try:
        return lookup("auto")
    except ConnectionError:
        raise UserError(
            "RAY_ADDRESS=auto: no Ray cluster runs on this machine; start one (ray start "
            "--head), name one (host:port), or unset RAY_ADDRESS to run on a local one"
        ) from None
    except ValueError as err:  # a damaged record of the last `ray start`
        raise UserError(f"RAY_ADDRESS=auto: {err} (Ray's record of the last `ray start`)") from None


def connect_ray() -> None:
    """Join the cluster of ``RAY_ADDRESS`` (a submitted job's, or one the user named) or start
    a local one, with driver logs kept readable."""
    import ray

    check_ray_address()
    try:
        ray.init(log_to_driver=True, configure_logging=True, logging_level="WARNING")
    except (ConnectionError, ValueError) as err:  # auto without a cluster, one gone since
        address = redacted_text(os.environ.get("RAY_ADDRESS", ""))
        reason = redacted_text(" ".join(str(err).split())[:300])
        raise UserError(f"cannot join the Ray cluster at RAY_ADDRESS={address}: {reason}") from None


def run_name(config: Config) -> str:
    """A stable name for the Ray Train run, so a resubmitted trial resumes from its checkpoint."""
    if config.train.run_name:
        return config.train.run_name
    # only what changes results: a trial resubmitted with more restarts allowed, or on fewer
    # workers, goes on from its checkpoint rather than silently starting over
    return f"trial-{config.alignment.method}-{settings_digest(config)}"


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: the plain library trial with a Ray reporter."""
    import torch

    from ot_ray.reporters import RayReporter
    from ot_ray.trial import run_trial

    config = Config.model_validate(loop_config["config"])
    quiet_report_log(config.train.log_level)
    if not config.train.use_gpu:
        torch.set_num_threads(max(1, int(config.train.cpus_per_worker)))
    run_trial(config, RayReporter(), show_progress=loop_config.get("show_progress", True))


def quiet_report_log(level: str) -> None:
    """Apply ``train.log_level`` to the worker logger that prints every report's metrics.

    Ray names that logger after its file path, so Ray Train's own ``log_level`` filter (which
    matches ``ray.train.*`` names) does not reach it and every report's ~150 metrics would be
    printed at INFO.
    """
    import logging

    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # a Ray without this module has no such logger
        return
    logging.getLogger(context.__file__).setLevel(level)


def build_trainer(config: Config, *, show_progress: bool = True, callbacks: Sequence[Any] = ()):
    """The ``TorchTrainer`` for one trial of an already resolved config; ``callbacks`` are Ray
    Train user callbacks (Tune reporting, MLflow metrics)."""
    from ray.train import (
        CheckpointConfig,
        FailureConfig,
        LoggingConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchTrainer

    from ot_ray.failures import StopOnUserError

    train = config.train
    resources = {"CPU": train.cpus_per_worker}
    if train.use_gpu:
        resources["GPU"] = 1
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "show_progress": show_progress,
        },
        scaling_config=ScalingConfig(
            num_workers=train.num_workers, use_gpu=train.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=run_name(config),
            storage_path=train.storage_path,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=[StopOnUserError(), *callbacks],
            logging_config=LoggingConfig(log_level=train.log_level),
        ),
    )


def fit(config: Config, *, show_progress: bool = True) -> dict[str, float]:
    """Run one trial on the connected Ray cluster; its final metrics (also in metrics.json)."""
    from ray.train import TrainingFailedError

    from ot_ray.failures import find_user_error

    trainer = build_trainer(config, show_progress=show_progress)
    try:
        result = trainer.fit()
    except TrainingFailedError as err:
        user_error = find_user_error(err)
        if user_error is not None:
            raise user_error from None
        raise
    # Rank 0's last report carries every metric (metrics.json may be on another node).
    return {k: v for k, v in result.metrics.items() if k not in PROGRESS_KEYS}


#: Reported with every checkpoint to say where the trial is; not results.
PROGRESS_KEYS = ("stage", "step", "global_step", "milestone", "objective")
