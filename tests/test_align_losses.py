"""Alignment objectives on small hand-built batches."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from ot_ray.align.batches import ParallelBatch
from ot_ray.align.losses import (
    alignment_units,
    anchor_regulariser,
    l2_link_distances,
    ot_alignment_loss,
)
from ot_ray.align.objective import AlignmentObjective
from ot_ray.config import AlignmentConfig, OTConfig

# Two pairs: tokens [CLS] w0 w0 w1 [SEP] pad / [CLS] w0 w1 w2 [SEP] pad
WORD_IDS = torch.tensor([[-1, 0, 0, 1, -1, -1], [-1, 0, 1, 2, -1, -1]])


def hidden(seed: int) -> torch.Tensor:
    return torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_units_are_pooled_words_or_all_real_subwords():
    h = hidden(0)
    words, mask = alignment_units(h, WORD_IDS, "word", "last")
    assert words.shape == (2, 3, 8) and mask.tolist() == [[True, True, False], [True] * 3]
    assert torch.equal(words[0, 0], h[0, 2])  # last subword of word 0
    subwords, sub_mask = alignment_units(h, WORD_IDS, "subword")
    assert subwords is h and sub_mask.sum().item() == 6
    with pytest.raises(ValueError, match="granularity"):
        alignment_units(h, WORD_IDS, "phrase")


@pytest.mark.parametrize("granularity", ["word", "subword"])
def test_ot_loss_is_zero_for_identical_sides_and_pulls_them_together(granularity):
    ot = OTConfig(epsilon=0.01)
    h = hidden(0)
    same, empty = ot_alignment_loss(h, h.clone(), WORD_IDS, WORD_IDS, ot, granularity=granularity)
    assert empty == 0 and same.abs().max() < 1e-6
    source = hidden(1).requires_grad_()
    loss, _ = ot_alignment_loss(source, h, WORD_IDS, WORD_IDS, ot, granularity=granularity)
    assert (loss > 0).all()
    loss.sum().backward()
    with torch.no_grad():  # a small step along the gradient lowers the loss
        moved = source - 0.05 * source.grad
        after, _ = ot_alignment_loss(moved, h, WORD_IDS, WORD_IDS, ot, granularity=granularity)
    assert after.sum() < loss.sum()
    assert source.grad[:, 0].abs().max() == 0  # [CLS] is not transported


def test_ot_loss_counts_empty_pairs():
    ids = WORD_IDS.clone()
    ids[1] = -1  # the second sentence is empty
    loss, empty = ot_alignment_loss(hidden(0), hidden(1), ids, WORD_IDS, OTConfig())
    assert empty == 1 and loss[1] == 0 and loss[0] > 0


def test_l2_loss_on_known_vectors():
    x = torch.zeros(2, 3, 2)
    y = torch.zeros(2, 3, 2)
    x[0, 0] = torch.tensor([1.0, 0.0])
    y[0, 1] = torch.tensor([0.0, 2.0])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    links = [{(0, 1), (2, 2)}, {(0, 0), (1, 0), (5, 5)}]  # (1, 0) masked, (5, 5) out of range
    total, used = l2_link_distances(x, y, mask, mask, links)
    assert used == 3
    assert total.item() == pytest.approx(1 + 4 + 0 + 0)
    zero, none = l2_link_distances(x.requires_grad_(), y, mask, mask, [set(), set()])
    assert none == 0 and zero.item() == 0
    zero.backward()  # still part of the graph


def test_anchor_regulariser_sums_over_real_tokens():
    h, h0 = hidden(0), hidden(1)
    mask = WORD_IDS >= 0
    expected = [((h[b] - h0[b]) ** 2).sum(-1)[mask[b]].sum().item() for b in range(2)]
    assert anchor_regulariser(h, h0, mask).tolist() == pytest.approx(expected)
    assert anchor_regulariser(h, h.clone(), mask).abs().max() == 0
    reference = h0.clone().requires_grad_()
    anchor_regulariser(h.requires_grad_(), reference, mask).sum().backward()
    assert reference.grad is None  # the frozen encoder gets no gradient


@pytest.mark.parametrize("detach_pivot", [False, True])
def test_joint_objective_with_detached_pivot_moves_only_the_source_side(detach_pivot):
    """Source and pivot rows use disjoint token ids, so the word embeddings of the pivot's ids
    get a gradient only through the pivot's side of the OT loss."""
    torch.manual_seed(0)
    encoder = BertModel(
        BertConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    )
    source_ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    pivot_ids = torch.tensor([[1, 25, 26, 2, 0], [1, 27, 28, 29, 2]])
    input_ids = torch.cat([source_ids, pivot_ids])
    mask = (input_ids != 0).long()
    words = torch.where((input_ids > 2), torch.arange(5) - 1, torch.full_like(input_ids, -1))
    batch = ParallelBatch(input_ids, mask, words, None, size=2)
    config = AlignmentConfig(method="wordot", ot={"epsilon": 0.05}, reg_lambda=0.0)

    objective = AlignmentObjective(config, reference=None, detach_pivot=detach_pivot)
    loss, _ = objective(encoder, batch)
    loss.backward()

    grad = encoder.embeddings.word_embeddings.weight.grad
    source_grad = grad[5:10].abs().sum()
    pivot_grad = grad[25:30].abs().sum()
    assert float(loss.detach()) > 0
    assert source_grad > 0
    if detach_pivot:
        assert pivot_grad == 0
    else:
        assert pivot_grad > 0


def test_the_pictured_plan_keeps_row_i_for_word_i_where_a_word_has_no_token():
    """A word the tokenizer drops (a lone zero-width space) leaves a gap in the word indices:
    the pictured plan was cut at the number of words present, so it lost the last word, and
    its rows no longer matched the words that label them (row i is word i)."""
    import datasets

    from ot_ray.align.quality import alignment_quality

    torch.manual_seed(0)
    encoder = BertModel(
        BertConfig(
            vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=16, max_position_embeddings=16,
        ),
        add_pooling_layer=False,
    )  # fmt: skip
    rows = {
        "src_input_ids": [[1, 5, 6, 2]],
        "src_word_ids": [[-1, 0, 2, -1]],  # word 1 made no token
        "tgt_input_ids": [[1, 7, 8, 9, 2]],
        "tgt_word_ids": [[-1, 0, 1, 2, -1]],
    }
    quality = alignment_quality(
        encoder, datasets.Dataset.from_dict(rows), None, AlignmentConfig(),
        pad_id=0, batch_size=4, device=torch.device("cpu"), keep_plans=1,
    )  # fmt: skip
    plan = quality.plans[0]
    assert plan.shape == (3, 3)
    assert plan.sum(dim=1).tolist() == pytest.approx([0.5, 0.0, 0.5], abs=1e-3)
