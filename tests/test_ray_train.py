"""Ray Train: sharded evaluation is exact; ``jobs/train.py`` rejects bad data before Ray starts.

The whole two-worker trial through ``jobs/train.py`` runs in ``test_sweep.py`` (two nodes)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import ray
import ray.cloudpickle
from conftest import SMALL_DEMO, tiny_trial_overrides

from ot_ray.config import DemoConfig
from ot_ray.demo.build import ensure_demo_world

REPO = Path(__file__).resolve().parent.parent
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return ensure_demo_world(DemoConfig(**SMALL_DEMO, cache_dir=str(tmp_path_factory.mktemp("w"))))


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    ray.init(  # "local": a new cluster, never one a `ray start` on this machine left running
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    yield
    ray.shutdown()


def evaluate_fixed_model(loop_config: dict) -> None:
    """Every worker builds the same model (seeded head) and runs the library's evaluations."""
    import ray.train
    import torch
    from transformers import (
        AutoModel,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from ot_ray.align.quality import alignment_quality
    from ot_ray.config import AlignmentConfig, QATrainConfig
    from ot_ray.data.parallel import read_parallel_tsv
    from ot_ray.data.tasks import read_squad, read_xnli
    from ot_ray.data.tokenized import tokenize_parallel
    from ot_ray.tasks.xnli import evaluate_nli, nli_dataset
    from ot_ray.tasks.xquad import evaluate_qa, qa_eval_dataset

    torch.set_num_threads(1)
    world = Path(loop_config["world"])
    tokenizer = AutoTokenizer.from_pretrained(world / "encoder")
    options = {"batch_size": 16, "device": torch.device("cpu"), "bf16": False}
    metrics, answers = {}, {}
    torch.manual_seed(0)
    nli = AutoModelForSequenceClassification.from_pretrained(world / "encoder", num_labels=3)
    torch.manual_seed(0)
    qa = AutoModelForQuestionAnswering.from_pretrained(world / "encoder")
    encoder = AutoModel.from_pretrained(world / "encoder")
    qa_settings = QATrainConfig(lr=1e-3, epochs=1, max_length=64, doc_stride=32)
    for lang in ("en", "de", "el"):
        data = nli_dataset(read_xnli(world / "xnli" / f"test-{lang}.tsv"), tokenizer, 64, None)
        accuracy, labels = evaluate_nli(nli, data, tokenizer, **options)
        metrics[f"xnli/{lang}"] = accuracy
        metrics[f"xnli/{lang}/checksum"] = float(sum(i * label for i, label in enumerate(labels)))
        examples = read_squad(world / "xquad" / f"test-{lang}.json")
        windows = qa_eval_dataset(examples, tokenizer, qa_settings, None)
        scores, predicted = evaluate_qa(qa, examples, windows, qa_settings, **options)
        metrics[f"xquad/{lang}/f1"] = scores["f1"]
        answers[lang] = predicted
        if lang != "en":
            corpus = read_parallel_tsv(
                world / "parallel" / "dev" / f"{lang}-en.tsv",
                world / "parallel" / "dev" / f"{lang}-en.align",
            )
            quality = alignment_quality(
                encoder,
                tokenize_parallel(corpus, tokenizer, 48, cache_dir=None),
                corpus.links,
                AlignmentConfig(),
                pad_id=tokenizer.pad_token_id,
                batch_size=16,
                device=torch.device("cpu"),
            )
            metrics[f"align/{lang}/retrieval"] = quality.retrieval
            metrics[f"align/{lang}/aer"] = quality.aer
    metrics["rows"] = float(sum(len(a) for a in answers.values()))
    digest = hashlib.sha256(json.dumps(answers, sort_keys=True).encode()).hexdigest()
    metrics["answers_digest"] = float(int(digest[:12], 16))
    # Ray Train V2 keeps the metrics of reports that carry a checkpoint (rank 0's).
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


def run_evaluation(world: Path, workers: int, storage: Path) -> dict:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        evaluate_fixed_model,
        train_loop_config={"world": str(world)},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"eval-{workers}", storage_path=str(storage)),
    )
    return trainer.fit().metrics


def test_two_workers_evaluate_exactly_like_one(world, local_ray, tmp_path):
    """90 NLI rows and ~40 QA windows in batches of 16 do not split evenly over 2 workers:
    nothing may be counted twice or dropped."""
    one = run_evaluation(world, 1, tmp_path)
    two = run_evaluation(world, 2, tmp_path)
    keys = [k for k in one if k.startswith(("xnli/", "xquad/", "align/", "rows", "answers"))]
    assert len(keys) > 10
    assert {k: two[k] for k in keys} == {k: one[k] for k in keys}


def test_bad_data_stops_the_job_with_one_line_before_training(world, tmp_path):
    out = tmp_path / "out"
    bad = tmp_path / "bad.tsv"
    bad.write_text("ein satz\n", encoding="utf-8")
    overrides = [
        *tiny_trial_overrides(str(world.parent), str(out)),
        f"data.parallel.train={{path: {bad}}}",
    ]
    command = [sys.executable, "jobs/train.py"]
    for override in overrides:
        command += ["--set", override]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {bad}:1: expected source<TAB>target, found no tab"
    )
    assert "Traceback" not in done.stderr  # checked before any Ray worker starts


def test_a_nan_loss_in_a_worker_ends_the_job_with_one_line(world, tmp_path):
    """A worker's :class:`TrainingError` reaches the user through Ray's wrapping as the CLI's
    one line (exit 2), not as Ray's traceback: a learning rate of 1e30 blows the weights up in
    the first step, so the second step's loss is not finite. Restarts are allowed, and a
    checkpoint precedes the error, yet the worker group is not restarted: it would fail alike."""
    out = tmp_path / "out"
    overrides = [
        *tiny_trial_overrides(str(world.parent), str(out)),
        "alignment.lr=1e30",
        "task.tasks=[]",
        "train.max_failures=2",
        "train.checkpoint_every=1",
    ]
    command = [sys.executable, "jobs/train.py"]
    for override in overrides:
        command += ["--set", override]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_DEDUP_LOGS="1")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: alignment: the loss is (nan|inf) at step 2; lower the .*", last)
    failed_workers = set(re.findall(r"RayTrainWorker pid=(\d+)\S* .*the loss is", done.stderr))
    assert len(failed_workers) == 1, done.stderr[-3000:]  # one attempt, no restart
