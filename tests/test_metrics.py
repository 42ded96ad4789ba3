"""Metrics on hand-written cases: SQuAD EM/F1, accuracy, AER, Pharaoh, retrieval, plan links."""

from __future__ import annotations

import math

import pytest
import torch

from ot_ray.align.extract import mutual_argmax_links
from ot_ray.metrics import (
    accuracy,
    alignment_error_rate,
    format_pharaoh,
    normalize_answer,
    parse_gold_pharaoh,
    parse_pharaoh,
    retrieval_accuracy,
    squad_em_f1,
    squad_scores,
)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  an   apple, a pear ", "apple pear"),
        ("theatre another", "theatre another"),  # articles only as whole words
        ("Café «Zürich»", "café «zürich»"),  # non-ASCII letters and quotes stay, as in v1.1
        ("A.B.C.", "abc"),
        ("", ""),
    ],
)
def test_official_normalisation(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match_and_f1():
    assert squad_em_f1("the Red cup.", ["red cup"]) == (1.0, 1.0)
    em, f1 = squad_em_f1("3 red cups", ["red cups near the park"])
    assert em == 0.0
    precision, recall = 2 / 3, 2 / 4
    assert math.isclose(f1, 2 * precision * recall / (precision + recall))


def test_best_gold_answer_wins_for_each_score_separately():
    em, f1 = squad_em_f1("big dog", ["dog", "big dog runs", "cat"])
    assert em == 0.0
    assert math.isclose(f1, 0.8)  # against "big dog runs": p = 1, r = 2/3


def test_empty_prediction_and_answer_of_only_articles():
    assert squad_em_f1("", ["dog"]) == (0.0, 0.0)
    assert squad_em_f1("the", ["a"]) == (1.0, 0.0)  # both normalise to "": equal, no tokens
    with pytest.raises(ValueError, match="at least one gold answer"):
        squad_em_f1("dog", [])


def test_corpus_scores_are_percent_and_count_unanswered_as_zero():
    answers = {"q1": ["red cup"], "q2": ["Anna"], "q3": ["in the park"]}
    scores = squad_scores({"q1": "red cup", "q2": "anna."}, answers)
    assert scores == {"em": pytest.approx(200 / 3), "f1": pytest.approx(200 / 3)}


def test_accuracy():
    assert accuracy(["a", "b", "c", "c"], ["a", "b", "b", "c"]) == 75.0
    with pytest.raises(ValueError, match=r"1 predictions for 2 labels"):
        accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match=r"0 predictions for 0 labels"):
        accuracy([], [])


def test_alignment_error_rate():
    sure = [{(0, 0), (1, 1)}, {(0, 1)}]
    assert alignment_error_rate(sure, sure) == 0.0
    assert alignment_error_rate([set(), set()], sure) == 100.0
    predicted = [{(0, 0), (1, 0)}, {(0, 1)}]  # 2 of 3 predicted are sure, 3 sure links
    assert alignment_error_rate(predicted, sure) == pytest.approx(100 * (1 - 4 / 6))
    possible = [{(0, 0), (1, 1), (1, 0)}, {(0, 1)}]  # (1, 0) is possible: counts in A&P only
    assert alignment_error_rate(predicted, sure, possible) == pytest.approx(100 * (1 - 5 / 6))


def test_pharaoh_round_trip_and_errors():
    assert parse_pharaoh("0-0 2-1 1-1\n") == {(0, 0), (1, 1), (2, 1)}
    assert format_pharaoh({(2, 1), (0, 0)}) == "0-0 2-1"
    assert parse_pharaoh("") == set()
    for bad in ("0-", "a-1", "0:1", "-1-2", "\u00b2-0", "\u0661-0"):  # superscript 2, Arabic 1
        with pytest.raises(ValueError, match="not a Pharaoh link"):
            parse_pharaoh(bad)
    with pytest.raises(ValueError, match=r"expected i-j with"):  # predictions are sure links
        parse_pharaoh("0p1")
    assert parse_gold_pharaoh("0-0 1p2 3p3 3-3") == ({(0, 0), (3, 3)}, {(1, 2)})


def test_retrieval_accuracy_both_directions():
    target = torch.eye(4)
    source = torch.eye(4)
    source[3] = torch.tensor([0.0, 0.0, 1.0, 0.1])  # sentence 3 looks most like translation 2
    forward, backward = retrieval_accuracy(source, target)
    assert forward == 75.0  # source 3 retrieves target 2
    assert backward == 100.0  # but every target's nearest source is still its own
    with pytest.raises(ValueError, match="one shape"):
        retrieval_accuracy(source, target[:3])


def test_retrieving_a_copy_of_the_gold_sentence_counts_as_found():
    """A repeated held-out pair ("(Applause)") has copies that embed alike: the first copy is
    retrieved for each, and every later copy counted as a miss."""
    source = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    target = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.1]])
    assert retrieval_accuracy(source, target) == pytest.approx((200 / 3, 200 / 3))
    texts = ["(Applaus)", "Ja.", "(Applaus)"], ["(Applause)", "Yes.", "(Applause)"]
    assert retrieval_accuracy(source, target, *texts) == (100.0, 100.0)
    other = ["(Applaus)", "Ja.", "Nein."], ["(Applause)", "Yes.", "No."]  # not copies: missed
    assert retrieval_accuracy(source, target, *other) == pytest.approx((200 / 3, 200 / 3))


def test_mutual_argmax_links_respect_masks_and_empty_pairs():
    plan = torch.zeros(3, 3, 3)
    plan[0] = torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.1, 0.2], [0.0, 0.0, 0.4]])
    plan[1, 0, 0], plan[1, 2, 2] = 0.5, 9.0  # (2, 2) is padding in pair 1
    x_mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    y_mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    links = mutual_argmax_links(plan, x_mask, y_mask)
    # Pair 0: row 1 prefers column 2, but column 2 prefers row 2; row 1 - col 1 is not mutual.
    assert links[0] == {(0, 0), (2, 2)}
    assert links[1] == {(0, 0)}
    assert links[2] == set()
