"""What does Ray cost? The same trial in-process and through Ray Train, on this machine.

Runs one small demo trial (configs/demo_sweep.yaml sizes unless --config/--set say otherwise)
``--repeats`` times each way and prints medians:

* in-process (``run_trial`` with a local reporter, torch using ``train.cpus_per_worker`` threads)
  against Ray Train with one worker of the same CPUs, wall clock excluding cluster start-up:
  the Ray overhead ratio (target <= 1.10);
* the start-up time of a local Ray cluster (``ray.init``);
* Ray Train with 1 worker and with 2 workers (the CPUs split between them): trials per hour.

The extra time of a Ray trial is mostly fixed (starting the Train controller and the worker
group, tearing them down), so the ratio depends on the trial's length: compare a short trial
(the default) with a full-size one (``--config configs/demo.yaml --worker-counts 1``).

    python benchmarks/bench_ray.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ot_ray.cli import positive_int, run
from ot_ray.config import Config, load_config
from ot_ray.launch import fit, resolve_paths
from ot_ray.reporters import LocalReporter
from ot_ray.trial import run_trial

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo_sweep.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--cpus", type=positive_int, default=2, help="CPUs given to the trial")
    parser.add_argument(
        "--worker-counts",
        nargs="+",
        type=positive_int,
        default=[1, 2],
        help="Ray Train worker groups",
    )
    return parser.parse_args()


def trial_config(args: argparse.Namespace, out: Path, workers: int) -> Config:
    overrides = [
        *args.overrides,
        f"train.output_dir={out}",
        f"train.num_workers={workers}",
        f"train.cpus_per_worker={args.cpus / workers}",
        "train.checkpoint_every=100000",  # stage ends only, as a sweep's small trials do
    ]
    return resolve_paths(load_config(args.config, overrides))


def in_process(config: Config) -> float:
    import torch

    torch.set_num_threads(int(config.train.cpus_per_worker))
    start = time.perf_counter()
    run_trial(config, LocalReporter(Path(config.train.output_dir)), show_progress=False)
    return time.perf_counter() - start


def on_ray(config: Config) -> tuple[float, dict]:
    start = time.perf_counter()
    metrics = fit(config, show_progress=False)
    return time.perf_counter() - start, metrics


def pairs(config: Config) -> int:
    return len(config.data.languages) * int(config.data.pairs_per_language or 0)


def main() -> None:
    import ray

    args = parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    scratch = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    names = {n: f"ray {n} worker{'s' * (n > 1)}" for n in args.worker_counts}
    times: dict[str, list[float]] = {"in-process": [], **{name: [] for name in names.values()}}
    startup: list[float] = []
    try:
        # Warm the tokenisation cache and the demo world once, outside the measurements.
        warm = trial_config(args, scratch / "warm", 1)
        in_process(warm)
        for repeat in range(args.repeats):
            config = trial_config(args, scratch / f"local-{repeat}", 1)
            times["in-process"].append(in_process(config))
            start = time.perf_counter()
            # As the jobs start it (with the dashboard: Ray Train V2 polls the State API).
            ray.init(num_cpus=args.cpus, logging_level="ERROR")
            startup.append(time.perf_counter() - start)
            try:
                for workers, name in names.items():
                    config = trial_config(args, scratch / f"ray{workers}-{repeat}", workers)
                    seconds, _ = on_ray(config)
                    times[name].append(seconds)
            finally:
                ray.shutdown()
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base = statistics.median(times["in-process"])
    print(f"\n# Ray overhead, {args.repeats} repeats, {args.cpus} CPUs, config {args.config.name}")
    print(f"trial: {pairs(warm)} alignment pairs, tasks {', '.join(warm.task.tasks)}\n")
    print("| run | median wall (s) | ratio to in-process | extra (s) |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / base:.2f} | {median - base:+.1f} |")
    print(f"\nRay cluster start-up (ray.init, local): median {statistics.median(startup):.1f} s")
    rates = {name: 3600 / statistics.median(times[name]) for name in names.values()}
    print("throughput: " + ", ".join(f"{r:.0f} trials/hour with {n}" for n, r in rates.items()))
    print("overhead target: ray 1 worker / in-process <= 1.10")


if __name__ == "__main__":
    run(lambda _: main())  # a config or data error: one line, exit 2
