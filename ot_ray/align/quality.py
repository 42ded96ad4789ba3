"""How aligned the encoder is, on held-out parallel pairs: bitext retrieval and word-alignment AER.

* Retrieval accuracy@1: mean-pooled sentence embeddings (non-special tokens of the aligned
  layer), cosine similarity, averaged over both directions.
* AER: word alignments read off the entropic transport plan between the pooled word embeddings
  of each pair (mutual argmax), against the gold links. The same links can be written in Pharaoh
  format, which makes ot-ray an unsupervised word aligner.

Workers embed whole evaluation batches each and gather them, so the metrics do not depend on the
number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ot_ray import distributed
from ot_ray.align.batches import collate_pairs
from ot_ray.align.extract import mutual_argmax_links
from ot_ray.align.objective import hidden_layers
from ot_ray.config import AlignmentConfig
from ot_ray.metrics import Link, alignment_error_rate, format_pharaoh, retrieval_accuracy
from ot_ray.ot import cost_matrix, entropic_ot, pool_words, uniform_masses


@dataclass
class AlignmentQuality:
    retrieval: float  # percent, mean of both directions
    aer: float | None  # percent; None without gold links
    links: list[set[Link]]  # predicted, one set per pair (source word -> pivot word)
    plans: dict[int, torch.Tensor] = field(default_factory=dict)  # row -> (words, words) plan

    def pharaoh(self, rows: list[int] | None = None, input_lines: int = 0) -> str:
        """One line of links per pair; with ``rows`` (each pair's input line, from 1), line k
        holds input line k's links and an input line without a pair (skipped) stays empty, up
        to ``input_lines`` lines (skipped lines at the end included: aligners' evaluation
        scripts expect as many lines as the input)."""
        if rows is None:
            return "".join(format_pharaoh(links) + "\n" for links in self.links)
        lines = [""] * max(max(rows, default=0), input_lines)
        for row, links in zip(rows, self.links, strict=True):
            lines[row - 1] = format_pharaoh(links)
        return "".join(line + "\n" for line in lines)


@torch.no_grad()
def alignment_quality(
    encoder: torch.nn.Module,
    dataset,
    gold: list[set[Link]] | None,
    config: AlignmentConfig,
    *,
    possible: list[set[Link]] | None = None,
    texts: tuple[Sequence[str], Sequence[str]] | None = None,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    keep_plans: int = 0,
) -> AlignmentQuality:
    """Retrieval accuracy and (with ``gold``, the sure links, and ``possible`` where the gold
    file marks some) AER of ``encoder`` on tokenised held-out pairs; the word-level transport
    plans of the first ``keep_plans`` pairs are kept for pictures. ``texts`` (the pairs' two
    sides) let a retrieved copy of the gold sentence count as found."""
    was_training = encoder.training
    encoder.eval()
    rows = list(range(len(dataset)))
    mine = distributed.shard(rows, contiguous_blocks=batch_size)
    results = []
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        batch = collate_pairs(dataset, chunk, pad_id).to(device)
        states = hidden_layers(encoder, batch, [config.layers[-1]])[0].float()
        size = batch.size
        is_token = batch.word_ids >= 0
        sentence = (states * is_token[..., None]).sum(1) / is_token.sum(1, keepdim=True).clamp(1)
        words, mask = pool_words(states, batch.word_ids, config.pooling)
        x, y, x_mask, y_mask = words[:size], words[size:], mask[:size], mask[size:]
        plan = entropic_ot(
            cost_matrix(x, y, config.ot.cost),
            uniform_masses(x_mask, x.dtype),
            uniform_masses(y_mask, y.dtype),
            config.ot.epsilon,
            options=config.ot.solver,
        ).plan
        links = mutual_argmax_links(plan, x_mask, y_mask)
        for k, row in enumerate(chunk):
            kept = None
            if row < keep_plans:  # up to the last word present: row i is word i
                kept = plan[k, : _words_held(x_mask[k]), : _words_held(y_mask[k])].float().cpu()
            results.append((row, sentence[k].cpu(), sentence[size + k].cpu(), links[k], kept))
    encoder.train(was_training)
    merged = sorted(
        (item for part in distributed.gather_objects(results) for item in part),
        key=lambda item: item[0],
    )
    source = torch.stack([item[1] for item in merged])
    target = torch.stack([item[2] for item in merged])
    predicted = [item[3] for item in merged]
    forward, backward = retrieval_accuracy(source, target, *(texts or (None, None)))
    aer = alignment_error_rate(predicted, gold, possible) if gold is not None else None
    plans = {item[0]: item[4] for item in merged if item[4] is not None}
    return AlignmentQuality((forward + backward) / 2, aer, predicted, plans)


def _words_held(mask: torch.Tensor) -> int:
    """One past the last word present in a row's word mask: a word of no token (a lone
    zero-width space) leaves a gap before it, which counting the words present would cut off."""
    present = mask.nonzero()
    return int(present.max()) + 1 if len(present) else 0
