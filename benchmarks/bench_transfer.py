"""Does alignment help zero-shot transfer? Methods x seeds on the demo world, one table.

Runs complete trials (alignment, XNLI, XQuAD, evaluation) in-process with the same library code
a Ray Train worker runs, for each method and seed, and prints per-language test scores as
mean +- std over seeds, the averages over seen and unseen languages, and alignment quality
(bitext retrieval accuracy@1, AER of the links read off the transport plan).

    python benchmarks/bench_transfer.py --methods none l2 l2-noisy wordot subot  # the README
    python benchmarks/bench_transfer.py --seeds 0 --methods none wordot

(15 trials for the README's table, 5 to 9 minutes each on 2 CPU cores.) Finished trials are
kept under ``--out``, in a folder named by digests of their settings, the demo world, the
library's and this script's code, and (for a local ``model.name_or_path``) the encoder's
weights, and reused, so an interrupted run continues, and a run with other settings (``--config``,
``--set``), another world, changed code or another encoder in the same folder never reads
another's.
No selection happens here (every variant runs with the config's settings, chosen before on dev
scores: e.g. the fixed-pivot joint weight 0.03, see the README; ``task.<task>.select_every``
chooses a trial's task model on the pivot's dev set only), and only test scores are reported:
dev scores are in each trial's metrics.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import time
from pathlib import Path

from ot_ray.cli import run
from ot_ray.config import load_config
from ot_ray.demo.build import world_dir
from ot_ray.fingerprint import settings_digest
from ot_ray.launch import resolve_paths
from ot_ray.preflight import check_data
from ot_ray.reporters import LocalReporter
from ot_ray.summary import mean_std
from ot_ray.trial import run_trial

REPO = Path(__file__).resolve().parent.parent

#: Each variant is a method plus its overrides of the config.
VARIANTS: dict[str, list[str]] = {
    "none": ["alignment.method=none"],
    "l2": ["alignment.method=l2"],
    "l2-noisy": ["alignment.method=l2", "alignment.link_noise={drop: 0.3, move: 0.2}"],
    "wordot": ["alignment.method=wordot"],
    "subot": ["alignment.method=subot"],
    "wordot-joint": ["alignment.method=wordot", "alignment.joint_weight=1.0"],
    "wordot-joint-fixed-pivot": [
        "alignment.method=wordot",
        "alignment.joint_weight=0.03",
        "alignment.joint_detach_pivot=true",
    ],
}
SCORES = (("XNLI acc", "xnli/test/acc"), ("XQuAD F1", "xquad/test/f1"))
QUALITY = (("retrieval@1", "align/retrieval_acc"), ("AER", "align/aer"))
AVERAGES = ("avg_seen_targets", "avg_unseen", "avg_seen", "avg_all")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "transfer")
    parser.add_argument(
        "--report-only", action="store_true", help="tabulate finished trials, run nothing"
    )
    return parser.parse_args()


def run_variant(args: argparse.Namespace, variant: str, seed: int) -> dict[str, float] | None:
    overrides = [*args.overrides, *VARIANTS[variant], f"train.seed={seed}"]
    overrides.append("train.checkpoint_every=100000")
    given = load_config(args.config, overrides)
    # the settings (where it writes is neutral) and the demo world's identity (its generator's
    # code included): a changed generator makes other data under the same settings
    world = world_dir(given.data.demo).name.rsplit("-", 1)[-1]
    # and the code and the encoder the settings name: a trial of older code, or of another
    # encoder saved at the same path, is not this one
    code = files_digest([*sorted((REPO / "ot_ray").rglob("*.py")), Path(__file__)])
    key = f"seed{seed}-{settings_digest(given)}-{world}-{code}{encoder_digest(given)}"
    out = (args.out / variant / key).resolve()
    done = out / "metrics.json"
    if done.exists():
        return json.loads(done.read_text())
    if args.report_only:
        return None
    config = resolve_paths(load_config(args.config, [*overrides, f"train.output_dir={out}"]))
    check_data(config)
    start = time.perf_counter()
    metrics = run_trial(config, LocalReporter(out), show_progress=False)
    print(f"  {variant} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return metrics


def files_digest(paths: list[Path]) -> str:
    """12 hex digits of the files' names (relative to the repository) and contents."""
    digest = hashlib.sha256()
    for path in paths:
        name = path.resolve()
        digest.update(str(name.relative_to(REPO) if name.is_relative_to(REPO) else name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def encoder_digest(config) -> str:
    """``-`` and the digest of a local encoder's weight files; nothing for the demo encoder
    (the world's digest covers it) or a Hub id (its revision is a setting)."""
    folder = Path(config.model.name_or_path).expanduser()
    if config.model.name_or_path == "demo" or not folder.is_dir():
        return ""
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return f"-{files_digest(weights)}" if weights else ""


def cell(values: list[float]) -> str:
    return mean_std(values, sep="±")


def table(runs: dict[str, list[dict]], prefix: str, rows: list[str]) -> list[str]:
    lines = ["| | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for row in rows:
        cells = [
            cell([m[f"{prefix}/{row}"] for m in ms if f"{prefix}/{row}" in m])
            for ms in runs.values()
        ]
        if any(cells):
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def selection_table(runs: dict[str, list[dict]]) -> list[str]:
    """With ``task.<task>.select_every``: the step whose model was tested, and the stage's steps
    (empty when no trial selected)."""
    rows = [
        f"{task}/{key}"
        for task in ("xnli", "xquad")
        if any(f"{task}/select/step" in m for ms in runs.values() for m in ms)
        for key in ("select/step", "steps")
    ]
    lines = ["| | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for row in rows:
        lines.append(
            f"| {row} | "
            + " | ".join(cell([m[row] for m in ms if row in m]) for ms in runs.values())
            + " |"
        )
    return lines if rows else []


def main() -> None:
    args = parse_args()
    config = load_config(args.config, args.overrides)
    languages = config.data.all_eval_languages
    runs: dict[str, list[dict]] = {}
    for variant in args.methods:
        finished = [run_variant(args, variant, seed) for seed in args.seeds]
        runs[f"{variant} (n={sum(m is not None for m in finished)})"] = [
            m for m in finished if m is not None
        ]
    print(f"\n# Zero-shot transfer on the demo world (seeds {args.seeds}; n = trials per cell)")
    print(f"pivot {config.data.pivot}; seen: {', '.join(config.data.seen)}")
    for title, prefix in SCORES:
        lines = table(runs, prefix, languages + list(AVERAGES))
        if len(lines) > 2:  # a task the trials did not run has no rows
            print(f"\n## {title} (test, mean ± sample std over seeds)\n")
            print("\n".join(lines))
    selected = selection_table(runs)
    if selected:
        print("\n## Model tested: its optimizer step, chosen on the pivot's dev set, of all\n")
        print("\n".join(selected))
    for title, prefix in QUALITY:
        print(f"\n## {title} on held-out parallel pairs\n")
        print("\n".join(table(runs, prefix, [*languages[1:], "avg_seen_targets", "avg_unseen"])))
    by_method = {name.split(" ")[0]: ms for name, ms in runs.items() if ms}
    if "none" in by_method and "wordot" in by_method:
        print("\n## Targets (wordot - none)\n")
        for title, prefix in SCORES:
            for row, goal in (("avg_seen_targets", 10.0), (config.data.pivot, -1.0)):
                delta = mean_of(by_method["wordot"], f"{prefix}/{row}") - mean_of(
                    by_method["none"], f"{prefix}/{row}"
                )
                if math.isnan(delta):  # a task this run did not measure
                    continue
                verdict = "met" if delta >= goal else "NOT met"
                print(f"- {title} {row}: {delta:+.1f} points (target >= {goal:+.0f}: {verdict})")


def mean_of(trials: list[dict], key: str) -> float:
    """The mean of ``key`` over the trials that measured it; NaN if none did."""
    values = [m[key] for m in trials if isinstance(m.get(key), int | float)]
    values = [v for v in values if math.isfinite(v)]
    return statistics.fmean(values) if values else math.nan


if __name__ == "__main__":
    run(lambda _: main())  # a config or data error: one line, exit 2
