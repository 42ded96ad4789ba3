"""QA preprocessing and decoding on the demo world's SQuAD files with a locally built tokenizer:
gold token positions recover every answer, and decoding perfect logits scores 100."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from conftest import write_small_world
from datasets import Dataset

from ot_ray.data.tasks import read_squad
from ot_ray.demo.encoder import read_documents, train_tokenizer
from ot_ray.metrics import normalize_answer, squad_scores
from ot_ray.tasks.qa import best_answers, eval_features, squad_columns, train_features


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_small_world(
        tmp_path_factory.mktemp("world"), seed=4, mono_sentences=600, xquad_train_stories=12,
        xquad_dev_stories=6, xquad_test_stories=6,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(world):
    lines = [
        line for lang in ("en", "de", "fr", "bg", "es", "el")
        for document in read_documents(world / f"mono/{lang}.txt") for line in document
    ]  # fmt: skip
    return train_tokenizer(lines, vocab_size=300, max_length=128)


def columns(path: Path) -> dict[str, list]:
    return squad_columns(read_squad(path))


@pytest.mark.parametrize("lang", ["en", "es", "bg"])
def test_gold_positions_recover_every_answer(world, tokenizer, lang):
    data = columns(world / f"xquad/test-{lang}.json")
    # Short windows force contexts to be split, so some windows do not contain the answer.
    features = train_features(data, tokenizer, max_length=48, doc_stride=16)
    encoded = eval_features(data, tokenizer, max_length=48, doc_stride=16)
    assert len(features["input_ids"]) > len(data["id"])  # windows over long contexts
    found = {}
    for f, (start, end) in enumerate(
        zip(features["start_positions"], features["end_positions"], strict=True)
    ):
        if start == 0:
            continue
        offsets = encoded["offset_mapping"][f]
        qid = encoded["example_id"][f]
        context = data["context"][data["id"].index(qid)]
        found[qid] = context[offsets[start][0] : offsets[end][1]]
    assert set(found) == set(data["id"])  # every answer is inside at least one window
    for qid, text in found.items():
        assert text == data["answers"][data["id"].index(qid)][0]


def test_decoding_perfect_logits_scores_100_and_respects_constraints(world, tokenizer):
    data = columns(world / "xquad/test-de.json")
    train = train_features(data, tokenizer, max_length=48, doc_stride=16)
    encoded = eval_features(data, tokenizer, max_length=48, doc_stride=16)
    n, length = len(encoded["input_ids"]), 48
    start_logits, end_logits = np.zeros((n, length)), np.zeros((n, length))
    for f in range(n):
        start, end = train["start_positions"][f], train["end_positions"][f]
        start_logits[f, end], end_logits[f, start] = 5.0, 5.0  # one-token spans rank next
        start_logits[f, start], end_logits[f, end] = 10.0, 10.0
    contexts = dict(zip(data["id"], data["context"], strict=True))
    predictions = best_answers(
        contexts, encoded["example_id"], encoded["offset_mapping"], start_logits, end_logits
    )
    answers = dict(zip(data["id"], data["answers"], strict=True))
    assert squad_scores(predictions, answers) == {"em": 100.0, "f1": 100.0}
    # One-token answers only: the best valid span is now one token of the gold answer.
    short = best_answers(
        contexts, encoded["example_id"], encoded["offset_mapping"], start_logits, end_logits,
        max_answer_length=1,
    )  # fmt: skip
    assert all(short[q] and short[q] in predictions[q] for q in short)
    assert any(normalize_answer(short[q]) != normalize_answer(predictions[q]) for q in short)


def test_features_run_inside_datasets_map(world, tokenizer):
    data = Dataset.from_dict(columns(world / "xquad/train-en.json"))
    mapped = data.map(
        train_features,
        batched=True,
        remove_columns=data.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_length": 64, "doc_stride": 32},
    )
    # batched through datasets (batches of 1,000 rows, Arrow in between) as called directly
    direct = train_features(
        columns(world / "xquad/train-en.json"), tokenizer, max_length=64, doc_stride=32
    )
    assert set(mapped.column_names) >= {"input_ids", "start_positions", "end_positions"}
    assert len(mapped) > len(data)  # long stories make several windows
    for name in ("input_ids", "start_positions", "end_positions"):
        assert mapped[name] == direct[name], name


def test_questions_too_long_for_a_window_are_cut_and_flagged(world, tokenizer):
    data = columns(world / "xquad/train-en.json")
    max_length, stride = 48, 24
    budget = max_length - stride - tokenizer.num_special_tokens_to_add(pair=True) - 1
    too_long = {
        qid
        for qid, question in zip(data["id"], data["question"], strict=True)
        if len(tokenizer(question, add_special_tokens=False)["input_ids"]) > budget
    }
    assert 0 < len(too_long) < len(data["id"])
    encoded = eval_features(data, tokenizer, max_length=max_length, doc_stride=stride)
    flagged = {
        qid
        for qid, cut in zip(encoded["example_id"], encoded["question_truncated"], strict=True)
        if cut
    }
    assert flagged == too_long
    assert all(len(ids) == max_length for ids in encoded["input_ids"])


def test_a_question_is_cut_only_when_it_leaves_no_room_for_the_context(world, tokenizer):
    """The boundary, written out: a window holds [CLS] question [SEP] context [SEP], and the
    context needs doc_stride tokens plus one new one. A question of k tokens fits whole at
    max_length k + stride + 4 and is cut one token lower."""
    data = columns(world / "xquad/dev-en.json")
    one = {key: values[:1] for key, values in data.items()}
    k = len(tokenizer(one["question"][0], add_special_tokens=False)["input_ids"])
    stride = 8
    fits = eval_features(one, tokenizer, max_length=k + stride + 4, doc_stride=stride)
    assert not any(fits["question_truncated"])
    first = fits["input_ids"][0]
    assert first.index(tokenizer.sep_token_id) == k + 1  # the whole question, after [CLS]
    cut = eval_features(one, tokenizer, max_length=k + stride + 3, doc_stride=stride)
    assert all(cut["question_truncated"])
    assert cut["input_ids"][0].index(tokenizer.sep_token_id) < k + 1


def _sentencepiece_tokenizer(texts: list[str]):
    """An XLM-R-like tokenizer (unigram SentencePiece, ``<unk>`` for unseen characters)."""
    from tokenizers import SentencePieceUnigramTokenizer, processors
    from transformers import PreTrainedTokenizerFast

    trainer = SentencePieceUnigramTokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer.train_from_iterator(texts, vocab_size=120, special_tokens=specials, unk_token="<unk>")
    backend = trainer._tokenizer
    ids = [(token, backend.token_to_id(token)) for token in ("<s>", "</s>")]
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=ids
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def test_a_long_question_with_unknown_characters_is_cut_to_fit():
    """Cutting by decoding the first ids failed here: the decoded ``<unk>`` text tokenises
    longer than the ids, and the tokenizer panicked (a BaseException that ended the trial)."""
    context = "the horse sees the small ring near the river . " * 4
    tokenizer = _sentencepiece_tokenizer([context, "what is it ? where is the horse ?"] * 50)
    question = "what's " * 12  # the apostrophe was never seen: <unk>
    assert tokenizer.unk_token_id in tokenizer(question)["input_ids"]
    columns = {
        "id": ["q1"],
        "question": [question],
        "context": [context],
        "answers": [["horse"]],
        "answer_starts": [[4]],
    }
    max_length, stride = 32, 4
    budget = max_length - stride - tokenizer.num_special_tokens_to_add(pair=True) - 1
    for features in (eval_features, train_features):
        encoded = features(columns, tokenizer, max_length=max_length, doc_stride=stride)
        flags = encoded["question_truncated"]
        assert len(flags) > 1  # several windows: training flags the question's first
        first_only = [True] + [False] * (len(flags) - 1)
        assert flags == ([True] * len(flags) if features is eval_features else first_only)
        for ids in encoded["input_ids"]:
            question_ids = ids[1 : ids.index(tokenizer.sep_token_id)]
            assert 0 < len(question_ids) <= budget
            assert len(ids) == max_length


def test_windows_must_leave_room_for_context(world, tokenizer):
    data = columns(world / "xquad/test-en.json")
    with pytest.raises(ValueError, match="leaves no room"):
        train_features(data, tokenizer, max_length=20, doc_stride=16)


def test_the_cache_key_of_a_tokenizer_does_not_change_with_its_calls(world, tokenizer):
    """A truncating call leaves its settings on the Rust backend; hashed with them, one tokenizer
    had three cache keys, and the same windows were tokenised again under each."""
    from ot_ray.data.tokenized import tokenizer_digest

    before = tokenizer_digest(tokenizer)
    eval_features(columns(world / "xquad/test-en.json"), tokenizer, max_length=64, doc_stride=16)
    tokenizer("a b c d e f", truncation=True, max_length=3)
    assert tokenizer_digest(tokenizer) == before
    english = [line for document in read_documents(world / "mono/en.txt") for line in document]
    other = train_tokenizer(english, vocab_size=200, max_length=128)
    assert tokenizer_digest(other) != before
    # the same vocabulary cutting long inputs from the left keeps their ends: another cache
    left = copy.deepcopy(tokenizer)
    left.truncation_side = "left"
    assert tokenizer_digest(left) != before


def _labelled_text(example: dict[str, list], tokenizer) -> str:
    """The context text of the tokens that training labels as the answer ('' for [CLS])."""
    features = train_features(example, tokenizer, max_length=64, doc_stride=16)
    encoded = eval_features(example, tokenizer, max_length=64, doc_stride=16)
    start, end = features["start_positions"][0], features["end_positions"][0]
    if start == 0:
        return ""
    offsets = encoded["offset_mapping"][0]
    return example["context"][0][offsets[start][0] : offsets[end][1]]


def _example(context: str, answer: str, start: int) -> dict[str, list]:
    return {
        "id": ["q"],
        "question": ["where"],
        "context": [context],
        "answers": [[answer]],
        "answer_starts": [[start]],
    }


@pytest.mark.parametrize(("answer", "start"), [(" park", 11), ("park ", 12), ("park", 12)])
def test_spaces_around_a_gold_answer_do_not_move_its_span(world, tokenizer, answer, start):
    """A gold answer that keeps a space at one end was labelled from the neighbouring word
    (" park" gave "the park", "park " gave "park near")."""
    context = "she sat the park near the river ."
    assert context[start : start + len(answer)] == answer
    assert _labelled_text(_example(context, answer, start), tokenizer) == "park"


def test_an_answer_no_token_holds_points_at_cls(world, tokenizer):
    """A zero-width space is dropped by the tokenizer: labelling it took the words on either
    side ("park near"); a context of nothing else crashed the preprocessing."""
    context = "the park \u200b near"
    assert _labelled_text(_example(context, "\u200b", 9), tokenizer) == ""
    assert _labelled_text(_example("\u200b", "\u200b", 0), tokenizer) == ""


def test_a_predicted_answer_keeps_no_space_from_sentencepiece_offsets():
    """SentencePiece offsets take in the space before a word; the prediction files held it."""
    context = "the horse sees the ring near the river"
    tokenizer = _sentencepiece_tokenizer([context, "where is the ring"] * 20)
    example = _example(context, "ring", context.index("ring"))
    features = train_features(example, tokenizer, max_length=64, doc_stride=16)
    encoded = eval_features(example, tokenizer, max_length=64, doc_stride=16)
    start, end = features["start_positions"][0], features["end_positions"][0]
    assert start > 0
    starts, ends = np.zeros((1, 64)), np.zeros((1, 64))
    starts[0, start], ends[0, end] = 10.0, 10.0
    offsets = encoded["offset_mapping"]
    assert context[offsets[0][start][0]].isspace()  # the offsets do take the space in
    predicted = best_answers({"q": context}, encoded["example_id"], offsets, starts, ends)
    assert predicted == {"q": "ring"}
