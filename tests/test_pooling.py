"""pool_words: subword -> word embeddings from a real fast tokenizer's word_ids()."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from ot_ray.ot import pool_words, word_ids_tensor


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A tiny WordPiece tokenizer built locally (no Hub), splitting 'unhappy' into 3 pieces."""
    vocab = {
        tok: i
        for i, tok in enumerate(
            [
                "[PAD]",
                "[UNK]",
                "[CLS]",
                "[SEP]",
                "un",
                "##hap",
                "##py",
                "cat",
                "the",
                "sat",
                "s",
                "##at",
            ]
        )
    }
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


def _encode(tokenizer, sentences):
    encoding = tokenizer(sentences, padding=True, return_tensors="pt")
    ids = word_ids_tensor([encoding.word_ids(i) for i in range(len(sentences))])
    return encoding, ids


def test_word_ids_follow_the_tokenizer(tokenizer):
    encoding, ids = _encode(tokenizer, ["unhappy cat", "the cat sat"])
    assert encoding.tokens(0)[:4] == ["un", "##hap", "##py", "cat"]
    assert ids[0].tolist() == [0, 0, 0, 1]
    assert ids[1].tolist() == [0, 1, 2, -1]  # padding


@pytest.mark.parametrize(
    ("mode", "expected_first_word"), [("last", 2.0), ("first", 0.0), ("mean", 1.0)]
)
def test_pooling_modes(tokenizer, mode, expected_first_word):
    _, ids = _encode(tokenizer, ["unhappy cat", "the cat sat"])
    hidden = (
        torch.arange(ids.shape[1], dtype=torch.float32).expand(2, -1)[..., None].repeat(1, 1, 2)
    )
    words, mask = pool_words(hidden, ids, mode)
    assert words.shape == (2, 3, 2)
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    assert words[0, 0, 0].item() == expected_first_word  # tokens 0..2 are 'un', '##hap', '##py'
    assert words[0, 1, 0].item() == 3.0  # 'cat' is one token at position 3
    assert words[1, :, 0].tolist() == [0.0, 1.0, 2.0]
    assert (words[~mask] == 0).all()


def test_pooling_is_differentiable_and_routes_gradients(tokenizer):
    _, ids = _encode(tokenizer, ["unhappy cat"])
    hidden = torch.randn(1, ids.shape[1], 4, requires_grad=True)
    words, _ = pool_words(hidden, ids, "last")
    words.sum().backward()
    # only the last subword of each word (positions 2 and 3) receives gradient
    assert hidden.grad[0, :, 0].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_no_words_yields_one_masked_slot():
    words, mask = pool_words(torch.randn(2, 3, 4), torch.full((2, 3), -1), "mean")
    assert words.shape == (2, 1, 4) and not mask.any()


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match=r"hidden \(2, 3, 4\) and word_ids \(2, 4\)"):
        pool_words(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
