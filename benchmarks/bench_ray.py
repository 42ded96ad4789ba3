"""What does Ray cost? The same trial in-process and through Ray Train, on this machine.

Runs one small demo trial (configs/demo_sweep.yaml sizes unless --config/--set say otherwise)
``--repeats`` times each way and prints medians:

* in-process (``run_trial`` with a local reporter, torch using ``train.cpus_per_worker`` threads)
  against Ray Train with one worker of the same CPUs, wall clock excluding cluster start-up:
  the Ray overhead ratio (target <= 1.10);
* the start-up time of a local Ray cluster (``ray.init``);
* Ray Train with 1 worker and with 2 workers (the CPUs split between them): trials per hour.

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

from ot_ray.config import Config, load_config
from ot_ray.launch import fit, resolve_paths
from ot_ray.reporters import LocalReporter
from ot_ray.trial import run_trial

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo_sweep.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to the trial")
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
    times: dict[str, list[float]] = {"in-process": [], "ray 1 worker": [], "ray 2 workers": []}
    startup: list[float] = []
    try:
        # Warm the tokenisation cache and the demo world once, outside the measurements.
        warm = trial_config(args, scratch / "warm", 1)
        in_process(warm)
        for repeat in range(args.repeats):
            config = trial_config(args, scratch / f"local-{repeat}", 1)
            times["in-process"].append(in_process(config))
            start = time.perf_counter()
            ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
            startup.append(time.perf_counter() - start)
            try:
                for workers, name in ((1, "ray 1 worker"), (2, "ray 2 workers")):
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
    print("| run | median wall (s) | ratio to in-process |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values):.1f} | {statistics.median(values) / base:.2f} |"
        )
    print(f"\nRay cluster start-up (ray.init, local): median {statistics.median(startup):.1f} s")
    one, two = statistics.median(times["ray 1 worker"]), statistics.median(times["ray 2 workers"])
    print(
        f"throughput: {3600 / one:.0f} trials/hour with 1 worker x {args.cpus} CPUs, "
        f"{3600 / two:.0f} with 2 workers x {args.cpus / 2:g} CPUs ({one / two:.2f}x)"
    )
    print("overhead target: ray 1 worker / in-process <= 1.10")


if __name__ == "__main__":
    main()
