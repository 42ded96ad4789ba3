"""The stage-1 objective on one batch: alignment loss + lambda * anchor regulariser.

One forward pass of the trained encoder covers both sides of the batch (source rows and pivot
rows share it); the frozen initial encoder runs on the pivot rows only, without gradient, in
eval mode, so the regulariser pulls the pivot language back to where pre-training left it.
"""

from __future__ import annotations

import torch

from ot_ray.align.batches import ParallelBatch
from ot_ray.align.losses import anchor_regulariser, l2_link_distances, ot_alignment_loss
from ot_ray.config import AlignmentConfig
from ot_ray.ot import pool_words, record_solver


def hidden_layers(model: torch.nn.Module, batch: ParallelBatch, layers: list[int]):
    """The requested hidden states (each (2B, T, D)) of ``model`` on a batch."""
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        token_type_ids=torch.zeros_like(batch.input_ids),
        output_hidden_states=True,
    )
    return [out.hidden_states[layer] for layer in layers]


class AlignmentObjective:
    """Computes the loss of one method (``wordot``, ``subot`` or ``l2``) on parallel batches."""

    def __init__(
        self,
        config: AlignmentConfig,
        reference: torch.nn.Module | None,
        detach_pivot: bool = False,
    ) -> None:
        if config.method == "none":
            raise ValueError("method 'none' has no alignment objective")
        self.config = config
        self.reference = reference
        self.detach_pivot = detach_pivot
        if reference is not None:
            reference.eval()
            reference.requires_grad_(False)

    def __call__(
        self, encoder: torch.nn.Module, batch: ParallelBatch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss over the batch's pairs and the parts to log (means over pairs)."""
        config, size = self.config, batch.size
        hidden = hidden_layers(encoder, batch, config.layers)
        if self.detach_pivot:  # the pivot's states are the fixed target: only the others move
            hidden = [torch.cat([states[:size], states[size:].detach()]) for states in hidden]
        align = torch.zeros((), device=batch.input_ids.device)
        empty = 0
        with record_solver() as solver:
            for states in hidden:
                per_pair, empty = self._alignment(states, batch)
                align = align + per_pair / len(hidden)
        total, parts = align, {"align/loss": float(align.detach())}
        if solver.calls:
            parts["align/ot/sweeps"] = float(solver.sweeps)
            if solver.marginal_error is not None:
                parts["align/ot/marginal_error"] = solver.marginal_error
        if config.reg_lambda > 0 and self.reference is not None:
            pivot = _pivot_rows(batch)
            with torch.no_grad():
                reference = hidden_layers(self.reference, pivot, config.layers)
            # every token of the pivot's input, [CLS]/[SEP] included (the paper: "English
            # tokens"): [CLS] is what the NLI head reads, and holding it keeps the pivot's task
            # input where it was; the README's results were measured this way
            mask = batch.attention_mask[size:]
            reg = sum(
                anchor_regulariser(states[size:], ref, mask).mean()
                for states, ref in zip(hidden, reference, strict=True)
            ) / len(hidden)
            total = total + config.reg_lambda * reg
            parts["align/regulariser"] = float(reg.detach())
        parts["align/empty_pairs"] = float(empty) / size
        return total, parts

    def _alignment(self, states: torch.Tensor, batch: ParallelBatch) -> tuple[torch.Tensor, int]:
        size, config = batch.size, self.config
        source, target = states[:size], states[size:]
        source_ids, target_ids = batch.word_ids[:size], batch.word_ids[size:]
        if config.method in ("wordot", "subot"):
            granularity = "word" if config.method == "wordot" else "subword"
            per_pair, empty = ot_alignment_loss(
                source,
                target,
                source_ids,
                target_ids,
                config.ot,
                granularity=granularity,
                pooling=config.pooling,
            )
            return per_pair.mean(), empty
        if batch.links is None:
            raise ValueError("the l2 method needs word alignments (data.parallel.train.alignments)")
        x, x_mask = pool_words(source, source_ids, config.pooling)
        y, y_mask = pool_words(target, target_ids, config.pooling)
        distances, used = l2_link_distances(x, y, x_mask, y_mask, batch.links)
        whole_pairs = batch.whole_pairs or size
        whole_links = used if batch.whole_links is None else batch.whole_links
        if whole_pairs == size and used != whole_links:
            raise RuntimeError(f"the batch uses {used} links; the data counted {whole_links}")
        if not whole_links:
            return distances, 0  # a zero in the graph
        # the mean over the whole batch's links, written as a mean over this worker's pairs:
        # the training loop weights it by this worker's share of the pairs, so the workers' terms
        # add up to the one-worker loss however the links fall (with one worker the factor is 1)
        return distances * (whole_pairs / size) / whole_links, 0


def _pivot_rows(batch: ParallelBatch) -> ParallelBatch:
    size = batch.size
    return ParallelBatch(
        batch.input_ids[size:],
        batch.attention_mask[size:],
        batch.word_ids[size:],
        None,
        size,
    )
