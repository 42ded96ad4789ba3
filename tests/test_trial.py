"""One trial in-process on the small demo world: every output, every method, resume, NaN."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_encoder, tiny_trial_overrides
from transformers import AutoModel, AutoTokenizer

from ot_ray.checkpoints import (
    OPTIMIZER,
    SELECTED_MODEL,
    STATE,
    CheckpointError,
    TrialState,
    load_stage,
    read_state,
    save_checkpoint,
)
from ot_ray.config import load_config
from ot_ray.data.sources import data_root
from ot_ray.data.tasks import read_squad, read_xnli
from ot_ray.errors import ConfigError, DataError, UserError
from ot_ray.launch import resolve_paths, run_name
from ot_ray.metrics import language_averages, squad_scores
from ot_ray.preflight import _check_one_task_step, check_data
from ot_ray.reporters import LocalReporter
from ot_ray.tasks.selection import BestOnDev
from ot_ray.training import StageState, TrainingError, batch_count, epoch_batches, run_steps
from ot_ray.trial import run_trial

EVAL = ["en", "de", "fr", "bg", "es", "el"]


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("world-cache")


def tiny_config(cache: Path, out: Path, *extra: str):
    return resolve_paths(
        load_config(None, tiny_trial_overrides(str(cache), str(out)) + list(extra))
    )


@pytest.fixture(scope="module")
def finished(cache, tmp_path_factory):
    """A complete wordot trial with both tasks: its config, output directory and metrics."""
    out = tmp_path_factory.mktemp("trial")
    config = tiny_config(cache, out, f"tune.metric={SEARCHED}")
    metrics = run_trial(config, LocalReporter(out), show_progress=False)
    return config, out, metrics


#: A sweep may search on one dev score rather than the objective; QA's is measured last.
SEARCHED = "xquad/dev/f1/avg_targets"


def test_metrics_use_the_documented_names(finished):
    config, out, metrics = finished
    stored = json.loads((out / "metrics.json").read_text())
    assert stored == pytest.approx(metrics)
    for lang in EVAL:
        for split in ("dev", "test"):
            assert 0 <= stored[f"xnli/{split}/acc/{lang}"] <= 100
            assert 0 <= stored[f"xquad/{split}/f1/{lang}"] <= 100
            assert stored[f"xquad/{split}/em/{lang}"] <= stored[f"xquad/{split}/f1/{lang}"]
    for lang in EVAL[1:]:
        assert 0 <= stored[f"align/retrieval_acc/{lang}"] <= 100
        assert 0 <= stored[f"align/aer/{lang}"] <= 100
    for name in ("avg_seen", "avg_seen_targets", "avg_unseen", "avg_targets", "avg_all"):
        assert f"xnli/test/acc/{name}" in stored
    assert stored["align/steps"] > 0 and stored["align/loss"] > 0
    # the solver's effort, averaged over steps: at most max_iters sweeps at the target eps
    assert 0 < stored["align/ot/sweeps"] <= config.alignment.ot.solver.max_iters
    assert stored["align/ot/marginal_error"] >= 0
    seen = [stored[f"xnli/test/acc/{x}"] for x in ["de", "fr", "bg", "es"]]
    assert stored["xnli/test/acc/avg_seen_targets"] == pytest.approx(sum(seen) / 4)
    assert stored["xnli/test/acc/avg_unseen"] == pytest.approx(stored["xnli/test/acc/el"])
    # the demo world's training splits have no empty rows: the counts are there, and zero
    assert stored["data/xnli_train/skipped_empty"] == stored["data/xquad_train/skipped_empty"] == 0


def test_predictions_are_in_xtreme_format_and_match_the_metrics(finished):
    config, out, metrics = finished
    root = Path(data_root(config))
    for lang in EVAL:
        gold = read_xnli(root / "xnli" / f"test-{lang}.tsv", skip_empty=False)
        lines = (out / "predictions" / "xnli" / f"test-{lang}.tsv").read_text().splitlines()
        assert len(lines) == len(gold)
        labels = ["entailment", "neutral", "contradiction"]
        correct = sum(labels[g] == p for g, p in zip(gold.labels, lines, strict=True))
        assert 100 * correct / len(gold) == pytest.approx(metrics[f"xnli/test/acc/{lang}"])
        questions = read_squad(root / "xquad" / f"test-{lang}.json")
        answers = json.loads((out / "predictions" / "xquad" / f"test-{lang}.json").read_text())
        assert set(answers) == {q.id for q in questions}
        assert all(isinstance(text, str) for text in answers.values())
        gold_answers = {q.id: list(q.answers) for q in questions}
        scores = squad_scores(answers, gold_answers)  # the file is what was scored
        assert scores["f1"] == pytest.approx(metrics[f"xquad/test/f1/{lang}"])
        assert scores["em"] == pytest.approx(metrics[f"xquad/test/em/{lang}"])


def test_aligned_encoder_loads_offline_and_differs_from_the_start(finished):
    config, out, _ = finished
    aligned = AutoModel.from_pretrained(out / "aligned_encoder", local_files_only=True)
    AutoTokenizer.from_pretrained(out / "aligned_encoder", local_files_only=True)
    assert (out / "aligned_encoder" / "model.safetensors").exists()
    initial = AutoModel.from_pretrained(Path(data_root(config)) / "encoder")
    changed = [
        name
        for name, tensor in aligned.state_dict().items()
        if not torch.equal(tensor, initial.state_dict()[name])
    ]
    assert any("encoder.layer" in name for name in changed)


def test_word_alignments_are_written_in_pharaoh_format(finished):
    _, out, _ = finished
    for lang in EVAL[1:]:
        lines = (out / "predictions" / "alignments" / f"dev-{lang}.pharaoh").read_text()
        lines = lines.splitlines()
        assert len(lines) == 40
        assert any(lines) and all(
            all(link.count("-") == 1 for link in line.split()) for line in lines
        )


def test_transport_plans_of_a_few_dev_pairs_are_drawn(finished):
    _, out, _ = finished
    for lang in EVAL[1:]:
        pictures = sorted((out / "predictions" / "plots").glob(f"transport-dev-{lang}-*.png"))
        assert [p.name for p in pictures] == [f"transport-dev-{lang}-{k}.png" for k in (0, 1)]
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)


def test_progress_reports_milestones_and_the_dev_objective(finished):
    _, out, metrics = finished
    rows = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert [r["milestone"] for r in rows] == sorted(r["milestone"] for r in rows)
    assert rows[-1]["milestone"] == 2
    assert [r["global_step"] for r in rows] == sorted(r["global_step"] for r in rows)
    before_tasks = [r for r in rows if r["milestone"] == 0]
    assert before_tasks and all(r["objective"] != r["objective"] for r in before_tasks)  # NaN
    after_xnli = next(r for r in rows if r["milestone"] == 1)
    assert after_xnli["objective"] == pytest.approx(metrics["xnli/dev/acc/avg_targets"])
    final = (metrics["xnli/dev/acc/avg_targets"] + metrics["xquad/dev/f1/avg_targets"]) / 2
    assert rows[-1]["objective"] == pytest.approx(final)
    # the searched metric is in every report (Tune fails a sweep on a result without it)
    assert all(SEARCHED in r for r in rows)
    assert all(r[SEARCHED] != r[SEARCHED] for r in rows if r["milestone"] < 2)  # NaN until QA
    assert rows[-1][SEARCHED] == pytest.approx(metrics[SEARCHED])


def test_progress_log_has_intermediate_checkpoints(finished):
    _, out, _ = finished
    rows = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    stages = [row["stage"] for row in rows]
    assert stages.count("align") >= 1  # checkpoints inside stage 1
    assert stages[-1] == "done"
    assert read_state(out / "checkpoint").stage == "done"


def test_a_run_started_over_in_a_used_folder_keeps_nothing_of_the_old_run(
    finished, cache, tmp_path
):
    """Prediction files were merged into the folder: an XTREME submission built from it held the
    earlier run's XQuAD answers next to this run's XNLI labels; the progress log was appended."""
    _, used, _ = finished
    out = tmp_path / "out"
    shutil.copytree(used, out)
    assert (out / "predictions" / "xquad" / "test-fr.json").exists()
    config = tiny_config(cache, out, "task.tasks=[xnli]", "data.eval_languages=[de]")
    run_trial(config, LocalReporter(out), show_progress=False)
    predictions = out / "predictions"
    written = sorted(
        p.relative_to(predictions).as_posix()
        for task in ("xnli", "xquad")
        for p in (predictions / task).glob("*")
    )
    assert written == ["xnli/test-de.tsv", "xnli/test-en.tsv"]
    rows = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert rows[0]["milestone"] == 0 and rows[-1]["milestone"] == 1  # this run's rows only
    assert [r["global_step"] for r in rows] == sorted(r["global_step"] for r in rows)


def test_evaluation_counts_the_inputs_it_cut(cache, tmp_path):
    """Training counted its cut questions and truncated NLI pairs; evaluation, where a cut
    question changes what is scored, did not."""
    overrides = ["alignment.method=none", "data.eval_languages=[de]", "task.xnli.max_length=12"]
    root = Path(data_root(tiny_config(cache, tmp_path, *overrides)))
    tokenizer = AutoTokenizer.from_pretrained(root / "encoder")

    def question_lengths(split: str, lang: str) -> list[int]:
        questions = [e.question for e in read_squad(root / f"xquad/{split}-{lang}.json")]
        return [len(tokenizer(q, add_special_tokens=False)["input_ids"]) for q in questions]

    budget = statistics.median_low(question_lengths("dev", "en"))  # about half are cut
    stride = 8
    max_length = budget + stride + tokenizer.num_special_tokens_to_add(pair=True) + 1
    windows = [f"task.xquad.max_length={max_length}", f"task.xquad.doc_stride={stride}"]
    config = tiny_config(cache, tmp_path, *overrides, *windows)
    metrics = run_trial(config, LocalReporter(tmp_path), show_progress=False)
    # questions, not their windows (the stories are several windows long)
    cut_in_training = sum(length > budget for length in question_lengths("train", "en"))
    assert 0 < cut_in_training == metrics["data/xquad_train/question_truncated"]
    for split in ("dev", "test"):
        for lang in ("en", "de"):
            lengths = question_lengths(split, lang)
            cut = sum(length > budget for length in lengths)
            assert 0 < cut < len(lengths)
            assert metrics[f"data/xquad_{split}/question_truncated/{lang}"] == cut
            rows = read_xnli(root / f"xnli/{split}-{lang}.tsv", skip_empty=False)
            pairs = tokenizer(list(rows.premises), list(rows.hypotheses))["input_ids"]
            assert metrics[f"data/xnli_{split}/truncated/{lang}"] == sum(len(p) > 12 for p in pairs)


METHODS = {
    "none": ["alignment.method=none"],
    "wordot": ["alignment.method=wordot"],
    "subot": ["alignment.method=subot"],
    "l2": ["alignment.method=l2"],
    "l2-noisy": ["alignment.method=l2", "alignment.link_noise={drop: 0.3, move: 0.2}"],
}


@pytest.fixture(scope="module")
def by_method(cache, tmp_path_factory) -> dict[str, dict]:
    """Stage 1 alone (no task) with each method, the same seed and data."""
    runs = {}
    for name, extra in METHODS.items():
        out = tmp_path_factory.mktemp(name)
        config = tiny_config(cache, out, "task.tasks=[]", *extra)
        runs[name] = run_trial(config, LocalReporter(out), show_progress=False)
    return runs


def test_each_method_runs_its_own_loss_and_measures_alignment(by_method):
    for name, metrics in by_method.items():
        assert "align/retrieval_acc/de" in metrics and "align/aer/el" in metrics, name
        assert ("align/steps" in metrics) == (name != "none"), name
        # only the OT methods run the Sinkhorn solver
        assert ("align/ot/sweeps" in metrics) == (name in ("wordot", "subot")), name
    # each method's loss is its own (and link_noise is applied): the same data and seed give
    # four different losses
    losses = {name: by_method[name]["align/loss"] for name in METHODS if name != "none"}
    assert len(set(losses.values())) == len(losses), losses


def test_joint_variant_adds_the_alignment_loss_to_task_training(cache, tmp_path):
    config = tiny_config(cache, tmp_path, "task.tasks=[xnli]", "alignment.joint_weight=0.5")
    metrics = run_trial(config, LocalReporter(tmp_path), show_progress=False)
    assert "xnli/test/acc/de" in metrics
    # The task's last step carried the OT loss (without the stage-1 anchor).
    assert math.isfinite(metrics["xnli/joint/align/loss"]) and metrics["xnli/joint/align/loss"] > 0
    assert metrics["xnli/joint/align/empty_pairs"] == 0
    assert "xnli/joint/align/regulariser" not in metrics
    without = tiny_config(cache, tmp_path / "plain", "task.tasks=[xnli]")
    plain = run_trial(without, LocalReporter(tmp_path / "plain"), show_progress=False)
    assert not any("joint" in key for key in plain)


def test_quick_runs_can_evaluate_the_first_examples_only(cache, tmp_path):
    config = tiny_config(
        cache,
        tmp_path,
        "alignment.method=none",
        "task.xnli.max_eval=7",
        "task.xquad.max_eval=3",
        "alignment.eval_pairs=6",
    )
    metrics = run_trial(config, LocalReporter(tmp_path), show_progress=False)
    for lang in ("en", "el"):
        lines = (tmp_path / "predictions" / "xnli" / f"test-{lang}.tsv").read_text().splitlines()
        answers = json.loads((tmp_path / "predictions" / "xquad" / f"test-{lang}.json").read_text())
        assert len(lines) == 7 and len(answers) == 3
        assert metrics[f"xnli/test/acc/{lang}"] * 7 / 100 == pytest.approx(
            round(metrics[f"xnli/test/acc/{lang}"] * 7 / 100)
        )  # a whole number of 7 examples right
    pharaoh = (tmp_path / "predictions" / "alignments" / "dev-de.pharaoh").read_text()
    assert len(pharaoh.splitlines()) == 6


def test_the_task_stages_last_training_loss_is_recorded_whatever_the_checkpoints(cache, tmp_path):
    """It was set at checkpoints only: stale when the last step was not one, and missing
    without mid-stage checkpoints (``xnli/train_loss`` as a searched metric was NaN)."""
    losses = {}
    for every in (1, 3, 100000):
        out = tmp_path / str(every)
        config = tiny_config(
            cache,
            out,
            "alignment.method=none",
            "task.tasks=[xnli]",
            f"train.checkpoint_every={every}",
        )
        metrics = run_trial(config, LocalReporter(out), show_progress=False)
        losses[every] = metrics["xnli/train_loss"]
    assert metrics["xnli/steps"] % 3 != 0  # the last step is no checkpoint at every=3
    assert losses[3] == pytest.approx(losses[1]) and losses[100000] == pytest.approx(losses[1])


class CrashAfter(LocalReporter):
    """Reports like LocalReporter, then dies at the n-th report (a killed worker)."""

    def __init__(self, directory: Path, reports: int) -> None:
        super().__init__(directory)
        self.left = reports

    def report(self, metrics, checkpoint):
        super().report(metrics, checkpoint)
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt("simulated crash")


RESUME = ["task.tasks=[xnli]", "task.xnli.epochs=2"]


@pytest.fixture(scope="module")
def uninterrupted(cache, tmp_path_factory) -> tuple[dict, list[dict]]:
    """The trial run straight through: its final metrics and every report it made."""
    out = tmp_path_factory.mktemp("straight")
    final = run_trial(tiny_config(cache, out, *RESUME), LocalReporter(out), show_progress=False)
    reports = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    return final, reports


@pytest.mark.parametrize("stage", ["align", "xnli"])
def test_resuming_from_a_checkpoint_gives_the_uninterrupted_result(
    cache, tmp_path, uninterrupted, stage
):
    """Crash at the first mid-stage checkpoint of stage 1 or of the task stage (so the
    restored optimizer, scheduler and data position are used); resume; the same metrics."""
    straight, reports = uninterrupted
    crash_at = next(
        number
        for number, report in enumerate(reports, start=1)
        if report["stage"] == stage and report["step"] > 0
    )
    config = tiny_config(cache, tmp_path / "b", *RESUME)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, CrashAfter(tmp_path / "b", crash_at), show_progress=False)
    crashed = json.loads((tmp_path / "b" / "progress.jsonl").read_text().splitlines()[-1])
    assert crashed["stage"] == stage and crashed["step"] > 0
    resumed = run_trial(config, LocalReporter(tmp_path / "b", resume=True), show_progress=False)
    first_after = json.loads((tmp_path / "b" / "progress.jsonl").read_text().splitlines()[crash_at])
    assert first_after["global_step"] > crashed["global_step"]  # went on, did not start over
    scores = {k: v for k, v in straight.items() if k.startswith(("xnli/", "align/"))}
    assert {k: resumed[k] for k in scores} == pytest.approx(scores, abs=1e-9)
    assert resumed["restarts"] == 1 and "restarts" not in straight


def test_a_stage_resumed_against_another_initial_encoder_is_refused(cache, tmp_path, uninterrupted):
    """The frozen reference of stage 1 is loaded again on resume (from rank 0's node): a demo
    world built on another kind of CPU, or another Hub snapshot, anchored the rest of the stage
    to other states without a word."""
    from ot_ray.data.sources import model_path

    _, reports = uninterrupted
    crash_at = next(
        number
        for number, report in enumerate(reports, start=1)
        if report["stage"] == "align" and report["step"] > 0
    )
    base = shutil.copytree(model_path(tiny_config(cache, tmp_path)), tmp_path / "base")
    config = tiny_config(cache, tmp_path / "b", *RESUME, f"model.name_or_path={base}")
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, CrashAfter(tmp_path / "b", crash_at), show_progress=False)
    state = read_state(tmp_path / "b" / "checkpoint")
    assert state.stage == "align" and state.step > 0 and len(state.reference) == 64
    model = AutoModel.from_pretrained(base)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[5, 0] += 1e-3  # one weight of another copy
    model.save_pretrained(base, safe_serialization=True)
    with pytest.raises(CheckpointError, match=r"initial encoder .* is not the one this stage"):
        run_trial(config, LocalReporter(tmp_path / "b", resume=True), show_progress=False)


@pytest.mark.parametrize("stage", ["align", "xnli"])
def test_a_stage_resumed_on_other_training_data_is_refused(cache, tmp_path, stage):
    """The stage's batches are positions in a plan fixed by the seed and the data's size: a
    stage resumed on edited training data (or on data a newer ot-ray filters otherwise) went on
    with other examples at the same step, and nothing said so. Unedited, it resumes (the test
    above checks that it ends as an uninterrupted run does)."""
    world = Path(data_root(tiny_config(cache, tmp_path)))
    ours = tmp_path / "data"
    ours.mkdir()
    for name in ("xnli/train-en.tsv", "parallel/de-en.tsv", "parallel/de-en.align"):
        shutil.copy(world / name, ours / Path(name).name)
    config = tiny_config(
        cache,
        tmp_path / "b",
        *RESUME,
        f"data.xnli.train={{path: {ours / 'train-en.tsv'}}}",
        "data.parallel.by_language.de="
        f"[{{path: {ours / 'de-en.tsv'}, alignments: {ours / 'de-en.align'}}}]",
    )
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, CrashAtStep(tmp_path / "b", stage, 4), show_progress=False)
    state = read_state(tmp_path / "b" / "checkpoint")
    assert (state.stage, state.step) == (stage, 4) and len(state.data[stage]) == 16
    edited = ours / ("train-en.tsv" if stage == "xnli" else "de-en.tsv")
    lines = edited.read_text(encoding="utf-8").splitlines(keepends=True)
    first = 1 if stage == "xnli" else 0  # past the TSV's header; every pair (they are sampled)
    lines[first:] = [line.replace("\t", " again\t", 1) for line in lines[first:]]
    edited.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(CheckpointError, match=rf"the {stage} training data is not what"):
        run_trial(config, LocalReporter(tmp_path / "b", resume=True), show_progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_use_gpu_without_a_gpu_stops_instead_of_training_on_the_cpu(cache, tmp_path):
    config = tiny_config(cache, tmp_path, "train.use_gpu=true")
    with pytest.raises(UserError, match=r"train.use_gpu is set and this worker sees no usable GPU"):
        run_trial(config, LocalReporter(tmp_path), show_progress=False)


def test_a_model_saved_in_bf16_is_trained_in_float32(cache, tmp_path):
    """transformers 5 loads a checkpoint in the dtype it was saved in: a bf16 model was
    aligned and fine-tuned in bf16, where AdamW's small updates mostly round away."""
    from safetensors.torch import load_file

    from ot_ray.data.sources import model_path

    base = tmp_path / "bf16"
    source = model_path(tiny_config(cache, tmp_path))
    AutoModel.from_pretrained(source).to(torch.bfloat16).save_pretrained(base)
    AutoTokenizer.from_pretrained(source).save_pretrained(base)
    assert AutoModel.from_pretrained(base).dtype == torch.bfloat16  # as a trial loaded it
    config = tiny_config(
        cache, tmp_path / "out", f"model.name_or_path={base}", "task.tasks=[xnli]",
        "tune.objective=[xnli/dev/acc/avg_targets]", "task.xnli.max_train=64",
    )  # fmt: skip
    run_trial(config, LocalReporter(tmp_path / "out"), show_progress=False)
    weights = tmp_path / "out" / "aligned_encoder" / "model.safetensors"
    assert {tensor.dtype for tensor in load_file(weights).values()} == {torch.float32}


class CrashAtStep(LocalReporter):
    """Reports like LocalReporter, then dies after the checkpoint of ``stage`` at ``step``."""

    def __init__(self, directory: Path, stage: str, step: int) -> None:
        super().__init__(directory)
        self.stage, self.step = stage, step

    def report(self, metrics, checkpoint):
        super().report(metrics, checkpoint)
        if (metrics["stage"], metrics["step"]) == (self.stage, self.step) and checkpoint:
            raise KeyboardInterrupt("simulated crash")


def test_a_joint_trial_resumed_at_its_tasks_last_step_keeps_the_joint_terms(cache, tmp_path):
    """The joint terms came only from steps run in the process: resumed from a checkpoint of
    the task's last step (killed during evaluation), the trial ended without them."""
    joint = [*RESUME, "alignment.joint_weight=0.5"]
    straight = run_trial(
        tiny_config(cache, tmp_path / "a", *joint),
        LocalReporter(tmp_path / "a"),
        show_progress=False,
    )
    steps = int(straight["xnli/steps"])
    config = tiny_config(cache, tmp_path / "b", *joint, f"train.checkpoint_every={steps}")
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, CrashAtStep(tmp_path / "b", "xnli", steps), show_progress=False)
    resumed = run_trial(config, LocalReporter(tmp_path / "b", resume=True), show_progress=False)
    terms = {k: v for k, v in straight.items() if k.startswith("xnli/joint/")}
    assert "xnli/joint/align/loss" in terms
    assert {k: resumed.get(k) for k in terms} == pytest.approx(terms, abs=1e-9)


#: QA, whose dev F1 moves from step to step on the tiny world (its XNLI model stays at chance)
ONLY_QA = ["task.tasks=[xquad]"]
SELECT = [*ONLY_QA, "task.xquad.select_every=5"]


@pytest.fixture(scope="module")
def selection_runs(cache, tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    """The same QA trial testing its last model, and its model best on the pivot's dev set."""
    runs = {}
    for name, overrides in (("last", ONLY_QA), ("best", SELECT)):
        out = tmp_path_factory.mktemp(name)
        config = tiny_config(cache, out, *overrides)
        runs[name] = run_trial(config, LocalReporter(out), show_progress=False), out
    return runs


def _dev_curve(out: Path) -> tuple[dict[int, float], int]:
    curve = json.loads((out / "predictions" / "selection" / "xquad.json").read_text())
    return {int(step): score for step, score in curve["scores"].items()}, curve["chosen_step"]


def test_the_model_best_on_the_pivots_dev_set_is_the_one_tested(selection_runs):
    """XTREME's XNLI recipe: score English dev during training, test the best model. Scoring
    leaves training alone: the last score is what the run without selection ends with."""
    (last, _), (metrics, out) = selection_runs["last"], selection_runs["best"]
    scores, chosen_step = _dev_curve(out)
    steps = int(metrics["xquad/steps"])
    assert steps == last["xquad/steps"] and steps % 5 != 0  # so the last step is scored too
    assert sorted(scores) == [*range(5, steps, 5), steps]
    assert metrics["xquad/select/scored"] == len(scores)
    assert scores[steps] == pytest.approx(last["xquad/dev/f1/en"], abs=1e-9)
    best = max(scores.values())
    assert best > scores[steps], "the last step scored best: a restore could not be seen"
    first_best = min(step for step, score in scores.items() if score == best)
    assert chosen_step == metrics["xquad/select/step"] == first_best
    assert metrics["xquad/dev/f1/en"] == pytest.approx(best, abs=1e-9)  # the chosen model's
    assert (out / "predictions" / "plots" / "selection-xquad.png").read_bytes()[:4] == b"\x89PNG"
    assert "xquad/select/step" not in last


def test_a_resumed_stage_still_tests_the_best_model_it_saw_before(cache, tmp_path, selection_runs):
    """The kept weights travel in the mid-stage checkpoint: a crash after the best step, and a
    resume, end as the run straight through does."""
    straight, straight_out = selection_runs["best"]
    _, chosen_step = _dev_curve(straight_out)
    config = tiny_config(cache, tmp_path, *SELECT)
    every = config.train.checkpoint_every
    crash_at = every * math.ceil(chosen_step / every)
    assert chosen_step <= crash_at < straight["xquad/steps"]
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, CrashAtStep(tmp_path, "xquad", crash_at), show_progress=False)
    assert (tmp_path / "checkpoint" / SELECTED_MODEL).is_file()
    resumed = run_trial(config, LocalReporter(tmp_path, resume=True), show_progress=False)
    assert resumed["restarts"] == 1
    scores = {k: v for k, v in straight.items() if k.startswith("xquad/")}
    assert {k: resumed[k] for k in scores} == pytest.approx(scores, abs=1e-9)
    assert _dev_curve(tmp_path) == _dev_curve(straight_out)


def _best_on_dev(
    every: int, total_steps: int, scores: dict[int, float]
) -> tuple[BestOnDev, torch.nn.Linear]:
    """A selection whose model after step k scores ``scores[k]``; the model is a Linear whose
    bias holds the step it was offered at, so the kept weights say which step they are."""
    model = torch.nn.Linear(2, 1)
    return BestOnDev(
        task="xnli",
        metric="acc",
        language="en",
        every=every,
        total_steps=total_steps,
        score_of=lambda _: scores[int(model.bias.item())],
    ), model


def _run_steps(selection: BestOnDev, model: torch.nn.Module, steps: range) -> list[int]:
    scored = []
    for step in steps:
        with torch.no_grad():
            model.bias.fill_(step)
        if selection.score_if_due(model, step):
            scored.append(step)
    return scored


def test_dev_scores_are_taken_every_n_steps_and_at_the_last_and_ties_keep_the_first():
    scores = {1: 10.0, 2: 30.0, 3: 5.0, 4: 30.0, 5: 20.0, 6: 40.0, 7: 40.0}
    selection, model = _best_on_dev(2, 7, scores)
    assert _run_steps(selection, model, range(1, 8)) == [2, 4, 6, 7]
    assert selection.best_step == 6 and selection.weights["bias"].item() == 6  # 7 only ties
    exact, model = _best_on_dev(3, 6, scores)  # the last step is a multiple: scored once
    assert _run_steps(exact, model, range(1, 7)) == [3, 6]
    assert exact.best_step == 6 and exact.summary()["scores"] == {"3": 5.0, "6": 40.0}
    early, model = _best_on_dev(2, 7, {**scores, 4: 30.0, 6: 1.0, 7: 2.0})
    _run_steps(early, model, range(1, 8))
    assert early.best_step == 2 and early.weights["bias"].item() == 2  # 4 ties with 2
    early.restore(model)
    assert model.bias.item() == 2


def test_a_checkpoint_with_dev_scores_but_no_kept_model_is_refused(tmp_path):
    scores = {step: float(step) for step in range(1, 7)}
    selection, model = _best_on_dev(2, 6, scores)
    nothing_yet, _ = _best_on_dev(2, 6, scores)
    nothing_yet.resume(tmp_path / "xnli.json", tmp_path)  # crashed before the first score
    assert nothing_yet.scores == {} and nothing_yet.weights is None
    _run_steps(selection, model, range(1, 5))
    selection.write(tmp_path / "xnli.json")
    save_checkpoint(tmp_path, TrialState(stage="xnli", step=4), selected=selection.weights)
    again, model = _best_on_dev(2, 6, scores)
    again.resume(tmp_path / "xnli.json", tmp_path)
    assert again.best_step == 4 and again.scores == {2: 2.0, 4: 4.0}
    assert again.weights["bias"].item() == 4
    assert _run_steps(again, model, range(5, 7)) == [6] and again.best_step == 6
    (tmp_path / SELECTED_MODEL).unlink()
    with pytest.raises(CheckpointError, match=r"after a dev score lacks selected_model\.safe"):
        again.resume(tmp_path / "xnli.json", tmp_path)
    # a worker that keeps no weights stops there too, not alone in a collective later
    other_rank, model = _best_on_dev(2, 6, scores)
    other_rank.keeps_weights = False
    with pytest.raises(CheckpointError, match=r"lacks selected_model\.safetensors"):
        other_rank.resume(tmp_path / "xnli.json", tmp_path)
    unscored, model = _best_on_dev(2, 6, scores)
    unscored.keeps_weights = False
    with pytest.raises(RuntimeError, match=r"xnli: no model was scored on dev"):
        unscored.restore(model)


def test_selecting_on_a_dev_set_without_the_pivot_is_refused_before_it_starts(cache, tmp_path):
    config = tiny_config(cache, tmp_path, *SELECT, "data.xquad.dev.languages=[de, fr]")
    with pytest.raises(ConfigError, match=r"data\.xquad\.dev\.languages leaves out en") as caught:
        check_data(config)
    assert caught.value.key == "task.xquad.select_every"


def test_a_nan_loss_stops_with_stage_and_step():
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([param], lr=0.1)

    def loss_of(rows):
        value = (param * float("nan") if len(rows) == 3 else param).sum()
        return value, {}

    with pytest.raises(TrainingError, match=r"alignment: the loss is nan at step 2"):
        _two_steps(param, optimizer, loss_of)


def _two_steps(param, optimizer, loss_of, max_grad_norm=None, after_step=None) -> None:
    """Two alignment steps of ``param``: micro-batches of 2 rows, then of 3."""
    run_steps(
        name="alignment",
        parameters=[param],
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        micro_batches=[[0, 1], [0, 1, 2]],
        grad_accum=1,
        loss_of=loss_of,
        state=StageState(),
        max_grad_norm=max_grad_norm,
        after_step=after_step,
        show_progress=False,
    )


@pytest.mark.parametrize("max_grad_norm", [None, 1.0])
def test_a_gradient_that_is_not_finite_stops_before_the_weights_change(max_grad_norm):
    """A finite loss with an infinite gradient (a square root at zero): clipping would write
    NaN into the weight, and a checkpoint taken then would keep it."""
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    seen = []

    def loss_of(rows):
        value = (param - param.detach()).abs().sqrt().sum() if len(rows) == 3 else param.sum()
        return value, {}

    with pytest.raises(
        TrainingError, match=r"alignment: the gradient norm is (nan|inf) at step 2 \(the loss"
    ):
        _two_steps(
            param,
            optimizer,
            loss_of,
            max_grad_norm=max_grad_norm,
            after_step=lambda state, means: seen.append(param.detach().clone()),
        )
    assert len(seen) == 1 and torch.equal(param.detach(), seen[0])  # step 2 changed nothing
    assert torch.isfinite(param).all()


def test_language_averages_follow_the_paper_definition():
    scores = {"en": 80.0, "de": 60.0, "fr": 50.0, "el": 40.0}
    averages = language_averages(scores, pivot="en", seen=["de", "fr"])
    assert averages == {
        "avg_seen": pytest.approx(190 / 3),
        "avg_seen_targets": 55.0,
        "avg_unseen": 40.0,
        "avg_targets": 50.0,
        "avg_all": 57.5,
    }


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        (
            "alignment.layers=[3]",
            "alignment.layers",
            r"layer 3 does not exist: 'demo' has .* 2 layers",
        ),
        ("alignment.layers=[-4]", "alignment.layers", r"layer -4 does not exist"),
        ("alignment.batch_size=41", "alignment.batch_size", r"41 is more than the 40 training"),
        ("data.languages=[]", "data.languages", r"needs at least one target language"),
        (
            "data.parallel.train.languages=[de]",
            "data.languages",
            r"fr has no training pairs",
        ),
        ("model.name_or_path=/nonexistent/encoder", "model.name_or_path", r"no such folder"),
        ("alignment.grad_accum=21", "alignment.grad_accum", r"21 micro-batches .* only 20"),
        (
            "task.xquad.max_length=1000",
            "task.xquad.max_length",
            r"1000 tokens: .* has position embeddings for \d+ \(max_position_embeddings\)",
        ),
        ("data.max_length=1000", "data.max_length", r"1000 tokens: .* position embeddings"),
        (
            "tune.search_space.task.xquad.max_length={choices: [64, 1000]}",
            "task.xquad.max_length",
            r"the search samples up to 1000 tokens \(tune.search_space.task.xquad.max_length\)",
        ),
    ],
)
def test_settings_the_trial_cannot_run_are_refused_before_it_starts(
    cache, tmp_path, override, key, message
):
    """Each of these used to pass validation and fail in the workers, some after stage 1."""
    with pytest.raises(ConfigError, match=message) as caught:
        check_data(tiny_config(cache, tmp_path, override))  # the model's: in resolve_paths
    assert caught.value.key == key
    check_data(tiny_config(cache, tmp_path, "alignment.layers=[-3, 2]"))  # embeddings, top


def test_pairs_without_words_are_counted_and_left_out_of_training(cache, tmp_path):
    """An empty side is skipped when read; a side the tokenizer keeps no word of (a lone
    zero-width space) is dropped after tokenising: it would add a zero to its batch's mean
    loss; pairs repeating a sentence of the held-out pairs (their own language's, or another
    language's pivot sentence) are dropped. The counts reach the metrics."""
    world = Path(data_root(tiny_config(cache, tmp_path)))
    lines = (world / "parallel/de-en.tsv").read_text(encoding="utf-8").splitlines()[:30]
    corpus = tmp_path / "de-en.tsv"
    held_out = (world / "parallel/dev/de-en.tsv").read_text(encoding="utf-8").splitlines()[:2]
    # multi-parallel corpora translate one pivot sentence into each language: fr's held out
    fr_held_out = (world / "parallel/dev/fr-en.tsv").read_text(encoding="utf-8").splitlines()[0]
    through_fr = "ein anderer satz\t" + fr_held_out.split("\t")[1]
    dirty = [*lines[:10], "ein satz\t", "\u200b\tthe house", *held_out, through_fr, *lines[10:]]
    corpus.write_text("\n".join(dirty) + "\n", encoding="utf-8")
    config = tiny_config(
        cache, tmp_path, f"data.parallel.train={{path: {corpus}}}", "data.languages=[de]",
        "data.eval_languages=[de, fr]", "data.pairs_per_language=null", "task.tasks=[]",
    )  # fmt: skip
    metrics = run_trial(config, LocalReporter(tmp_path), show_progress=False)
    assert metrics["data/parallel_train/skipped_empty/de"] == 1
    assert metrics["data/parallel_train/no_words/de"] == 1
    assert metrics["data/parallel_train/held_out_sentences/de"] == 3  # not trained on
    assert metrics["data/parallel_dev/skipped_empty/de"] == 0
    assert math.isfinite(metrics["align/loss"]) and metrics["align/loss"] > 0
    # a language none of whose pairs keeps a word stops the trial (in the worker: the driver's
    # checks read the files but do not tokenise them)
    corpus.write_text("\u200b\tthe house\n" * 30, encoding="utf-8")
    with pytest.raises(DataError, match=r"de-en\.tsv: none of the 30 training pairs of de keeps"):
        run_trial(config, LocalReporter(tmp_path / "again"), show_progress=False)
    # the held-out pairs given as training pairs: all of them dropped, said as such
    corpus.write_text("\n".join(held_out) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"de-en\.tsv: every one of the 2 training pairs of de "
                       r"repeats a sentence of the held-out pairs"):  # fmt: skip
        run_trial(config, LocalReporter(tmp_path / "third"), show_progress=False)
    # a batch before the filters (what the driver counts), less than one after: never aligned
    corpus.write_text("\n".join([*lines[:7], *held_out]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"de keeps 7 training pairs, fewer than one batch "
                       r"\(alignment.batch_size 8\).*\(2 left out for repeating"):  # fmt: skip
        run_trial(config, LocalReporter(tmp_path / "fourth"), show_progress=False)


def test_moses_pretokenisation_makes_the_words_that_are_aligned(cache, tmp_path):
    """Raw text keeps the final punctuation on the last word ("church."); with pretokenize:
    moses it is a word of its own, and the held-out links index Moses tokens."""
    world = Path(data_root(tiny_config(cache, tmp_path)))
    glued = {}
    for split, name in (("train", "parallel/de-en.tsv"), ("dev", "parallel/dev/de-en.tsv")):
        lines = (world / name).read_text(encoding="utf-8").splitlines()[:40]
        raw = [line.replace(" .", ".").replace(" ?", "?") for line in lines]
        glued[split] = tmp_path / f"{split}.tsv"
        glued[split].write_text("\n".join(raw) + "\n", encoding="utf-8")
    config = tiny_config(
        cache, tmp_path, f"data.parallel.train={{path: {glued['train']}}}",
        f"data.parallel.dev={{path: {glued['dev']}}}", "data.parallel.pretokenize=moses",
        "data.languages=[de]", "data.eval_languages=[de]", "task.tasks=[]",
    )  # fmt: skip
    metrics = run_trial(config, LocalReporter(tmp_path), show_progress=False)
    assert "align/retrieval_acc/de" in metrics
    assert len(list((tmp_path / "cache").glob("moses-*.arrow"))) == 2  # train and dev
    raw_words = [len(line.split("\t")[0].split()) for line in glued["dev"].read_text().splitlines()]
    links = (tmp_path / "predictions/alignments/dev-de.pharaoh").read_text().splitlines()
    sources = [[int(link.split("-")[0]) for link in line.split()] for line in links]
    assert len(sources) == len(raw_words)
    # the split-off "." or "?" is a word past the raw text's last one, and it is linked
    assert any(max(s, default=-1) == n for s, n in zip(sources, raw_words, strict=True))
    assert all(max(s, default=-1) <= n for s, n in zip(sources, raw_words, strict=True))


def test_a_corpus_of_empty_pairs_is_named_before_the_trial_starts(cache, tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("\tein satz\nthe sentence\t \n", encoding="utf-8")
    config = tiny_config(cache, tmp_path, f"data.parallel.train={{path: {empty}}}")
    with pytest.raises(DataError, match=r"empty\.tsv: no sentence pairs \(2 skipped"):
        check_data(config)


def test_what_the_search_can_sample_is_checked_too(cache, tmp_path):
    """The base config runs no alignment, but the search samples it, with a batch too large."""
    space = (
        "tune.search_space={alignment.method: {choices: [none, wordot]}, "
        "alignment.batch_size: {choices: [8, 64]}}"
    )
    config = tiny_config(cache, tmp_path, "alignment.method=none", space)
    with pytest.raises(ConfigError, match=r"64 is more than the 40 training rows of de"):
        check_data(config)


def test_a_refused_setting_exits_2_with_its_key_and_no_traceback(cache, tmp_path):
    overrides = [*tiny_trial_overrides(str(cache), str(tmp_path)), "alignment.layers=[5]"]
    command = [sys.executable, "jobs/train.py", "--in-process"]
    for override in overrides:
        command += ["--set", override]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: --set alignment.layers=[5]: alignment.layers: layer 5 does not exist")
    )
    assert "Traceback" not in done.stderr


def test_a_qa_window_needs_room_for_the_question():
    with pytest.raises(ConfigError, match=r"task\.xquad: doc_stride 60 leaves no room"):
        load_config(None, ["task.xquad.max_length=64", "task.xquad.doc_stride=60"])
    assert load_config(None, ["task.xquad.max_length=64", "task.xquad.doc_stride=58"])


def test_a_model_folder_without_weights_or_tokenizer_is_refused_before_it_starts(cache, tmp_path):
    """Without its tokenizer files transformers builds a 5-token tokenizer that reads every
    word as [UNK] and trains on; without weights it failed in every worker."""
    from ot_ray.data.sources import model_path

    encoder = Path(model_path(tiny_config(cache, tmp_path)))
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(encoder / name, no_tokenizer / name)
    with pytest.raises(ConfigError, match=r"tokenizer of .* has \d+ tokens for embeddings of"):
        tiny_config(cache, tmp_path, f"model.name_or_path={no_tokenizer}")  # before the world
    no_weights = shutil.copytree(encoder, tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"no-weights has no weights \(model\.safetensors or"):
        tiny_config(cache, tmp_path, f"model.name_or_path={no_weights}")
    # a Python (slow) tokenizer has no word ids: it failed in tokenisation with a KeyError
    slow = tmp_path / "slow"
    tiny_encoder(slow)
    (slow / "tokenizer.json").unlink()
    settings = json.loads((slow / "tokenizer_config.json").read_text())
    settings |= {"tokenizer_class": "BertJapaneseTokenizer", "word_tokenizer_type": "basic"}
    (slow / "tokenizer_config.json").write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match=r"slow' is not a fast \(tokenizers\) one"):
        tiny_config(cache, tmp_path, f"model.name_or_path={slow}")


def test_too_few_task_examples_for_one_step_are_refused_before_stage_1():
    """XNLI's stage keeps whole batches: 7 examples in batches of 8 made no step, an error
    raised after the alignment stage had run."""
    config = load_config(None, ["task.xnli.batch_size=8"])
    with pytest.raises(ConfigError, match=r"7 training examples make fewer than one") as caught:
        _check_one_task_step(config, "xnli", 7)
    assert caught.value.key == "task.xnli.batch_size"
    _check_one_task_step(config, "xnli", 8)
    accumulated = load_config(None, ["task.xnli.batch_size=8", "task.xnli.grad_accum=4"])
    _check_one_task_step(accumulated, "xnli", 16)  # 2 batches an epoch, 5 epochs: 2 steps
    one_epoch = load_config(
        None, ["task.xnli.batch_size=8", "task.xnli.grad_accum=4", "task.xnli.epochs=1"]
    )
    with pytest.raises(ConfigError, match=r"one optimizer step of 4 batches of 8"):
        _check_one_task_step(one_epoch, "xnli", 16)


@pytest.mark.parametrize(
    ("count", "batch_size", "epochs", "drop_last", "expected"),
    [
        (0, 3, 1, True, 0),  # nothing to draw
        (2, 3, 2, True, 0),  # less than one batch, dropped
        (2, 3, 2, False, 2),  # ... or kept as one short batch per epoch
        (9, 3, 1, True, 3),
        (10, 3, 1, True, 3),  # the short tenth example is dropped
        (10, 3, 1, False, 4),
        (9, 3, 0.25, True, 1),  # a fraction keeps at least one batch
        (9, 3, 1.5, True, 4),  # 4.5 rounds to even
        (9, 3, 2.75, True, 8),
        (16, 8, 0.5, True, 1),
    ],
)
def test_the_start_up_checks_count_the_batches_the_stages_draw(
    count, batch_size, epochs, drop_last, expected
):
    """The checks before stage 1 count batches without drawing them (:func:`batch_count`);
    they must agree with what the stages draw, or a run is refused that would work (or the
    reverse). Batches within an epoch never repeat an example; with ``drop_last`` all are full."""
    drawn = epoch_batches(count, batch_size, epochs, seed=0, drop_last=drop_last)
    assert len(drawn) == expected
    assert batch_count(count, batch_size, epochs, drop_last=drop_last) == expected
    per_epoch = count // batch_size if drop_last else -(-count // batch_size)
    for first in range(0, len(drawn), max(1, per_epoch)):
        epoch = [index for batch in drawn[first : first + per_epoch] for index in batch]
        assert len(epoch) == len(set(epoch)) and set(epoch) <= set(range(count))
    if drop_last:
        assert all(len(batch) == batch_size for batch in drawn)


def test_a_file_where_an_output_folder_belongs_is_refused_before_any_work(cache, tmp_path):
    """It used to end in NotADirectoryError or FileExistsError, minutes in (after the world
    was built, or inside a worker)."""
    occupied = tmp_path / "occupied"
    occupied.write_text("", encoding="utf-8")
    for key in ("train.output_dir", "train.storage_path", "data.cache_dir"):
        for path, says in ((occupied, "is a file"), (occupied / "sub", "is inside")):
            overrides = [*tiny_trial_overrides(str(cache), str(tmp_path)), f"{key}={path}"]
            with pytest.raises(ConfigError, match=rf"{re.escape(str(path))} {says}") as caught:
                resolve_paths(load_config(None, overrides))
            assert caught.value.key == key
    overrides = [*tiny_trial_overrides(str(occupied), str(tmp_path))]
    with pytest.raises(ConfigError, match=r"occupied is a file, not a folder") as caught:
        resolve_paths(load_config(None, overrides))
    assert caught.value.key == "data.demo.cache_dir"
    deep = tmp_path / "new" / "deep"  # not there yet: made when the trial writes
    fresh = resolve_paths(load_config(None, tiny_trial_overrides(str(cache), str(deep))))
    assert fresh.train.output_dir == str(deep.resolve())


def test_resume_without_in_process_is_refused_not_ignored():
    done = subprocess.run(
        [sys.executable, "jobs/train.py", "--resume"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--resume is for --in-process runs" in done.stderr


def test_a_run_without_the_demo_world_does_not_need_its_cache_folder(tmp_path, monkeypatch):
    """A cluster pod's home may be read-only: only the demo world needs its cache."""
    occupied = tmp_path / "occupied"
    occupied.write_text("", encoding="utf-8")
    monkeypatch.setenv("OT_RAY_CACHE", str(occupied))
    model = tmp_path / "encoder"
    tiny_encoder(model)  # resolve_paths checks the model
    config = load_config(None, [f"model.name_or_path={model}", f"data.root={tmp_path}"])
    assert resolve_paths(config).data.demo.cache_dir == str(occupied.resolve())


def test_relative_data_paths_are_made_absolute_before_workers_read_them(tmp_path, monkeypatch):
    """Workers do not share the driver's working directory: a source's relative path used to
    reach them as written. Placeholders stay; a Hub repository's data_files are its own."""
    monkeypatch.chdir(tmp_path)
    tiny_encoder(tmp_path / "encoder")
    config = load_config(
        None,
        ["model.name_or_path=encoder", "data.root=./corpora",
         "data.parallel.train={path: 'pairs/{lang}-{pivot}.tsv', alignments: '~/a/{lang}.align'}",
         "data.xnli.test={hub: json, data_files: 'xnli/test-{lang}.jsonl'}",
         "data.xquad.test={hub: google/xquad, hub_config: 'xquad.{lang}', data_files: 'x.json',"
         " split: validation}",
         "data.xnli.dev={path: '/abs/dev-{lang}.tsv'}",
         "data.xnli.train={hub: json, data_files: 'https://example.org/mnli.jsonl'}"],
    )  # fmt: skip
    resolved = resolve_paths(config)
    assert resolved.model.name_or_path == str(tmp_path / "encoder")
    assert resolved.data.root == str(tmp_path / "corpora")
    assert resolved.data.parallel.train.path == f"{tmp_path}/pairs/{{lang}}-{{pivot}}.tsv"
    assert resolved.data.parallel.train.alignments == str(Path.home() / "a/{lang}.align")
    assert resolved.data.parallel.dev.path == "{root}/parallel/dev/{lang}-{pivot}.tsv"
    assert resolved.data.xnli.test.data_files == f"{tmp_path}/xnli/test-{{lang}}.jsonl"
    assert resolved.data.xquad.test.data_files == "x.json"  # a path inside the Hub repository
    assert resolved.data.xnli.dev.path == "/abs/dev-{lang}.tsv"
    assert resolved.data.xnli.train.data_files == "https://example.org/mnli.jsonl"  # a URL stays
    assert config.data.parallel.train.path == "pairs/{lang}-{pivot}.tsv"  # the given one kept


def test_a_checkpoint_resumes_only_under_the_settings_that_wrote_it(finished, tmp_path, caplog):
    """A checkpoint left in a used folder by another run was resumed under any config: the
    other run's weights and metrics came out as this one's. Keys that say only where or how
    the trial runs (restarts allowed, workers, checkpoint interval) may change."""
    config, out, metrics = finished
    shutil.copytree(out / "checkpoint", tmp_path / "checkpoint")
    other = config.model_copy(deep=True)
    other.alignment.lr *= 2
    other.train.output_dir = str(tmp_path)
    with pytest.raises(UserError) as caught:
        run_trial(other, LocalReporter(tmp_path, resume=True), show_progress=False)
    message = str(caught.value)
    assert "written by a trial of other settings (alignment.lr: " in message
    assert "train.output_dir" not in message and not (tmp_path / "metrics.json").exists()
    same = config.model_copy(deep=True)
    same.train.output_dir = str(tmp_path)
    same.train.max_failures, same.train.checkpoint_every, same.train.num_workers = 3, 7, 2
    with caplog.at_level(logging.WARNING, logger="ot_ray.trial"):
        resumed = run_trial(same, LocalReporter(tmp_path, resume=True), show_progress=False)
    assert resumed["xnli/test/acc/de"] == metrics["xnli/test/acc/de"]  # its finished result
    assert "this trial finished before: its outputs are written again" in caplog.text
    assert run_name(same) == run_name(config) != run_name(other)  # Ray finds the same run


def test_a_checkpoint_taken_mid_stage_without_its_optimizer_is_refused(tmp_path):
    """It was resumed with a fresh optimizer and schedule: warmup again, silently."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    state = TrialState(stage="xnli", step=5)
    save_checkpoint(tmp_path, state, stage_model=model, optimizer=optimizer, scheduler=scheduler)
    assert set(load_stage(tmp_path, model)) == {"optimizer", "scheduler"}
    (tmp_path / OPTIMIZER).unlink()
    with pytest.raises(CheckpointError, match=r"mid-stage lacks optimizer\.pt \(damaged"):
        load_stage(tmp_path, model)


def test_a_damaged_checkpoint_state_or_a_missing_aligned_encoder_is_a_clear_error(tmp_path):
    """A state.json of unknown keys gave a TypeError traceback; a checkpoint past stage 1
    without its aligned encoder, a transformers OSError when the next stage loaded it."""
    save_checkpoint(tmp_path, TrialState(stage="align", step=3))
    assert read_state(tmp_path).step == 3
    (tmp_path / STATE).write_text('{"stage": "align", "steps": 3}', encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"state\.json: not a readable trial state \(Type"):
        read_state(tmp_path)
    (tmp_path / STATE).write_text('{"stage": "align", "st', encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"not a readable trial state \(JSONDecodeError"):
        read_state(tmp_path)
    save_checkpoint(tmp_path, TrialState(stage="xnli", step=0))  # no aligned encoder saved
    with pytest.raises(CheckpointError, match=r"past alignment lacks aligned_encoder/"):
        read_state(tmp_path)


def test_a_rank_the_checkpoint_has_no_rng_for_draws_its_own_stream_not_rank_0s(tmp_path):
    """Resumed on more workers than wrote it, rank 1 replayed rank 0's dropout masks."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    torch.manual_seed(7)
    state = TrialState(stage="xnli", step=5)
    save_checkpoint(tmp_path, state, stage_model=model, optimizer=optimizer, scheduler=scheduler)
    draws = {}
    for rank in (0, 1, 2, 1):
        load_stage(tmp_path, model, rank)
        draws.setdefault(rank, []).append(torch.rand(4))
    torch.manual_seed(7)
    assert torch.equal(draws[0][0], torch.rand(4))  # rank 0 goes on from its saved state
    assert not torch.equal(draws[1][0], draws[0][0]) and not torch.equal(draws[2][0], draws[1][0])
    assert torch.equal(draws[1][0], draws[1][1])  # and each new rank's stream is reproducible


def test_resume_without_a_checkpoint_is_refused_not_a_fresh_start(cache, tmp_path):
    """``--in-process --resume`` used to start the trial over, overwriting its folder."""
    from ot_ray.errors import UserError

    with pytest.raises(UserError, match=r"--resume: no checkpoint to go on from at .*checkpoint"):
        LocalReporter(tmp_path / "never-ran", resume=True)
    assert not (tmp_path / "never-ran").exists()
    overrides = tiny_trial_overrides(str(tmp_path / "cache"), str(tmp_path / "out"))
    command = [sys.executable, "jobs/train.py", "--in-process", "--resume"]
    done = subprocess.run(
        [*command, *(a for o in overrides for a in ("--set", o))],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: --resume: no checkpoint")
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
    assert not (tmp_path / "cache").exists()  # said before the demo world's build


def test_a_model_folder_that_does_not_exist_is_named_as_one(cache, tmp_path):
    """transformers reports it as an invalid Hub repo id ("Repo id must be in the form")."""
    for name in (tmp_path / "missing", "./models/missing", "~/missing-encoder", "a/b/c"):
        with pytest.raises(ConfigError, match=r"missing.*: no such folder|a/b/c: no such") as c:
            tiny_config(cache, tmp_path, f"model.name_or_path={name}")  # in resolve_paths
        assert c.value.key == "model.name_or_path"


def test_an_unreachable_ray_address_is_one_line_before_any_work(tmp_path, monkeypatch):
    """Ray retries an address nobody answers at for minutes, then raises a traceback."""
    import socket

    from ot_ray.errors import UserError
    from ot_ray.launch import check_ray_address

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        monkeypatch.setenv("RAY_ADDRESS", address)
        with pytest.raises(UserError, match=rf"no Ray cluster answers at 127\.0\.0\.1:{port}"):
            check_ray_address()
    monkeypatch.setenv("RAY_ADDRESS", " 10.0.0.1:6379")  # Ray would look up " 10.0.0.1"
    with pytest.raises(UserError, match=r"remove the spaces around it"):
        check_ray_address()
    for wrong in ("[::1", "head-node", "grpc://127.0.0.1:6379"):  # ray.init: a ValueError
        monkeypatch.setenv("RAY_ADDRESS", wrong)
        with pytest.raises(UserError, match=r"not an address Ray joins \(host:port, ray://"):
            check_ray_address()
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")  # what `ray job submit` takes
    with pytest.raises(UserError, match=r"8265 is a dashboard address, the one `ray job sub"):
        check_ray_address()
    monkeypatch.setenv("RAY_ADDRESS", "https://bob:Zq9token@ray.example.org")  # never shown
    with pytest.raises(UserError, match=r"=https://bob:\*\*\*@ray\.example\.org is a dash"):
        check_ray_address()
    for fine in ("local", "", "ray://ray-head.example"):  # the last: an ingress's port
        monkeypatch.setenv("RAY_ADDRESS", fine)
        check_ray_address()
    cache = tmp_path / "cache"
    overrides = tiny_trial_overrides(str(cache), str(tmp_path / "out"))
    done = subprocess.run(
        [sys.executable, "jobs/train.py", *(a for o in overrides for a in ("--set", o))],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "RAY_ADDRESS": f"127.0.0.1:{port}"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"error: RAY_ADDRESS=127.0.0.1:{port}: no Ray cluster")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not cache.exists()  # before the demo world's build


def test_ray_address_auto_is_checked_against_the_cluster_recorded_here(tmp_path, monkeypatch):
    """``auto`` with no cluster to join is one line too, before any work."""
    import socket

    from ray._private.services import find_gcs_addresses

    from ot_ray.errors import UserError
    from ot_ray.launch import check_ray_address

    if find_gcs_addresses():
        pytest.skip("a Ray process runs on this machine, and auto would join it")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # auto joins the last `ray start` of this machine, recorded in Ray's temp folder, or the
    # one Ray process running here (tests/test_sweep.py checks it finds a real cluster)
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    recorded = tmp_path / "ray" / "ray_current_cluster"
    recorded.parent.mkdir()
    recorded.write_text(f"127.0.0.1:{port}\n")  # a cluster stopped since
    stale = rf"=auto \(the cluster found here: [0-9.]+:{port}\): no Ray cluster answers"
    with pytest.raises(UserError, match=stale):
        check_ray_address()
    recorded.write_text("garbage\n")
    with pytest.raises(UserError, match=r"=auto: Invalid address format: garbage \(Ray's"):
        check_ray_address()
    recorded.unlink()
    with pytest.raises(UserError, match=r"=auto: no Ray cluster runs on this machine"):
        check_ray_address()


def test_a_missing_model_with_the_demo_data_is_named_before_the_world_is_built(tmp_path):
    """The demo world (minutes the first time) was built before the model was checked."""
    cache = tmp_path / "cache"
    overrides = tiny_trial_overrides(str(cache), str(tmp_path / "out"))
    config = load_config(None, [*overrides, f"model.name_or_path={tmp_path / 'nomodel'}"])
    with pytest.raises(ConfigError, match=r"nomodel: no such folder") as caught:
        resolve_paths(config)
    assert caught.value.key == "model.name_or_path"
    assert not any(cache.glob("*"))  # nothing of the world built
