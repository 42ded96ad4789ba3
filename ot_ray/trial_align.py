"""Stage 1 of a trial and its measurement: align the encoder on parallel data, then score the
alignment (retrieval accuracy, AER) on held-out pairs of every evaluated language.

:class:`AlignStages` builds on :class:`ot_ray.trial_base.TrialBase` (the shared state, the
parallel data, the reports and checkpoints) and is one of the parts of
:class:`ot_ray.trial.Trial`, so that each stage can be read on its own.
"""

from __future__ import annotations

import statistics

import torch
from transformers import AutoModel

from ot_ray import distributed
from ot_ray.align.objective import AlignmentObjective
from ot_ray.align.quality import alignment_quality
from ot_ray.align.stage import align_encoder
from ot_ray.checkpoints import CheckpointError, TrialState, load_stage, weights_digest
from ot_ray.training import StageState
from ot_ray.trial_base import TrialBase

#: Stage-1 step values reported as their mean over the steps since the last report.
STAGE1_MEANS = ("align/loss", "align/ot/sweeps", "align/ot/marginal_error")

#: Held-out pairs per language whose transport plan is drawn after alignment.
PLANS_PICTURED = 2


class AlignStages(TrialBase):
    """The trial's alignment stage (``align``) and its measurement (``quality``)."""

    def _align(self, encoder: torch.nn.Module, state: TrialState) -> None:
        config = self.config
        # Each worker loaded the base weights itself, from its own node's copy: a demo world
        # built on two nodes need not hold the same encoder (its pre-training depends on the
        # CPU), and a Hub cache may hold another revision. Rank 0's copy is the trial's.
        distributed.broadcast_parameters(encoder)
        if config.alignment.method != "none":
            data = self._parallel("train", config.data.languages)
            self._check_same_data(state, "align", data.digest)
            reference = (
                AutoModel.from_pretrained(
                    self.base,
                    revision=config.model.revision,
                    trust_remote_code=config.model.trust_remote_code,
                )
                .float()
                .to(self.device)
            )  # as the trained copy (Trial._encoder)
            distributed.broadcast_parameters(reference)
            self._check_reference(reference, state)
            objective = AlignmentObjective(config.alignment, reference)
            optimizer_state = None
            if self.restored is not None and state.step > 0:
                optimizer_state = load_stage(self.restored, encoder, distributed.rank())
            stage_state = StageState(step=state.step)
            windows: dict[str, list[float]] = {key: [] for key in STAGE1_MEANS}

            def after_step(progress: StageState, means: dict[str, float]) -> None:
                for key, window in windows.items():
                    if key in means:
                        window.append(means[key])
                every = config.train.checkpoint_every
                if every and progress.step % every == 0:
                    state.step = progress.step
                    _record_means(state.metrics, windows)
                    self._measure_alignment(encoder, state, write_links=False)
                    encoder.train()
                    self._checkpoint(
                        state,
                        encoder,
                        stage_model=encoder,
                        optimizer=progress.optimizer,
                        scheduler=progress.scheduler,
                    )

            optimizer, scheduler = align_encoder(
                encoder,
                objective,
                data,
                config.alignment,
                config.train,
                pad_id=self.pad_id,
                device=self.device,
                state=stage_state,
                optimizer_state=optimizer_state,
                after_step=after_step,
                show_progress=self.show_progress,
            )
            _record_means(state.metrics, windows)
            state.metrics["align/steps"] = float(stage_state.step)
            # the stage's state held them too: freed before the quality and task stages
            stage_state.optimizer = stage_state.scheduler = None
            del reference, objective, optimizer, scheduler
        self._finish_stage(state, encoder)

    def _check_reference(self, reference: torch.nn.Module, state: TrialState) -> None:
        """Keep the digest of the frozen initial encoder; on resume, refuse another one. It is
        loaded again (from rank 0's node), and a demo world built on another kind of CPU or a
        Hub cache holding another snapshot of an unpinned ``model.revision`` would anchor the
        rest of the stage to other states, silently."""
        digest = weights_digest(reference)
        if state.step > 0 and state.reference and state.reference != digest:
            raise CheckpointError(
                f"the initial encoder ({self.base}, revision {self.config.model.revision}) is "
                "not the one this stage started from: its weights changed since the checkpoint "
                "(another node's demo world, or another Hub snapshot; pin model.revision); "
                "start the trial anew, or restore the encoder it started with"
            )
        state.reference = digest

    def _quality(self, encoder: torch.nn.Module, state: TrialState) -> None:
        self._measure_alignment(encoder, state, write_links=True)
        self._finish_stage(state, encoder)

    def _measure_alignment(
        self, encoder: torch.nn.Module, state: TrialState, *, write_links: bool
    ) -> None:
        """Retrieval accuracy and AER on the held-out pairs of every evaluated language."""
        config = self.config
        if self._dev is None:
            languages = [x for x in config.data.all_eval_languages if x != config.data.pivot]
            self._dev = self._parallel("dev", languages)
        retrieval, aer = {}, {}
        for lang in self._dev.languages:
            quality = alignment_quality(
                encoder,
                self._dev.datasets[lang],
                self._dev.links[lang],
                config.alignment,
                possible=self._dev_corpora[lang].possible,
                texts=(self._dev_corpora[lang].sources, self._dev_corpora[lang].targets),
                pad_id=self.pad_id,
                batch_size=config.train.eval_batch_size,
                device=self.device,
                keep_plans=PLANS_PICTURED if write_links else 0,
            )
            retrieval[lang] = quality.retrieval
            if quality.aer is not None:
                aer[lang] = quality.aer
            if write_links and self.is_main:
                path = self.predictions / "alignments" / f"dev-{lang}.pharaoh"
                path.parent.mkdir(parents=True, exist_ok=True)
                corpus = self._dev_corpora[lang]
                links = quality.pharaoh(corpus.rows, corpus.input_lines)
                path.write_text(links, encoding="utf-8")
                self._picture_plans(lang, quality.plans)
        self._record("align/retrieval_acc", retrieval, state)
        self._record("align/aer", aer, state)

    def _picture_plans(self, lang: str, plans: dict[int, torch.Tensor]) -> None:
        """Heat maps of the transport plans of a few held-out pairs (logged to MLflow)."""
        from ot_ray.plots import transport_heatmap

        corpus = self._dev_corpora[lang]
        for row, plan in sorted(plans.items()):
            rows, columns = plan.shape
            transport_heatmap(
                plan.numpy(),
                corpus.sources[row].split()[:rows],
                corpus.targets[row].split()[:columns],
                self.predictions / "plots" / f"transport-dev-{lang}-{row}.png",
                f"{lang}-{self.config.data.pivot} dev pair {row} ({self.config.alignment.method})",
            )


def _record_means(metrics: dict, windows: dict[str, list[float]]) -> None:
    """Each window's mean into ``metrics`` (windows with no values are left out), then empty."""
    for key, window in windows.items():
        if window:
            metrics[key] = statistics.fmean(window)
            window.clear()
