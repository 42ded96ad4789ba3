"""The registered aligned encoder, as a user gets it: loaded by name from a real SQLite MLflow
store, sentences in, the aligned layer's states averaged over each sentence's own tokens out (as
the trial's retrieval score reads them)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
from conftest import TINY_ENCODER_WORDS, tiny_encoder
from mlflow.pyfunc import scoring_server
from transformers import AutoModel, AutoTokenizer

from ot_ray.serving import log_encoder_model
from ot_ray.serving_model import CHUNK, MAX_INPUTS


def test_the_registered_encoder_loads_by_name_and_embeds_as_the_encoder_does(tmp_path):
    encoder_dir = tmp_path / "encoder"
    tiny_encoder(encoder_dir)
    sentences = ["the dog runs", "ein satz", "embed"]  # different lengths: padding
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        served = {}
        for version, layer in ((1, -1), (2, 0)):  # the last layer; the embeddings
            with mlflow.start_run():
                info = log_encoder_model(str(encoder_dir), registered_name="aligned", layer=layer)
            assert str(info.registered_model_version) == str(version)
            model = mlflow.pyfunc.load_model(f"models:/aligned/{version}")
            served[layer] = model.predict(sentences)
            with pytest.raises(mlflow.MlflowException, match=r"input\(s\) \[1\] have no tokens"):
                model.predict(["the dog", "  "])  # a blank sentence is not a zero vector
    finally:
        mlflow.set_tracking_uri(None)

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    encoder = AutoModel.from_pretrained(encoder_dir).eval()
    for layer, embeddings in served.items():
        expected = []
        for sentence in sentences:  # one at a time: no padding at all
            with torch.no_grad():
                batch = tokenizer(sentence, return_tensors="pt")
                states = encoder(**batch, output_hidden_states=True).hidden_states[layer]
            expected.append(states[0, 1:-1].mean(0).numpy())  # [CLS] and [SEP] left out
        assert embeddings.shape == (3, 16)
        np.testing.assert_allclose(embeddings, np.stack(expected), rtol=1e-5, atol=1e-6)
        assert not np.allclose(embeddings[0], embeddings[1])
    assert not np.allclose(served[-1], served[0])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The tiny encoder registered and loaded by name, with its folder: its tokenizer was saved
    without a length limit (``model_max_length`` is transformers' 1e30 sentinel) and its BERT
    has 512 positions."""
    tmp_path = tmp_path_factory.mktemp("served")
    encoder_dir = tmp_path / "encoder"
    tiny_encoder(encoder_dir)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        with mlflow.start_run():
            log_encoder_model(str(encoder_dir), registered_name="aligned")
        yield mlflow.pyfunc.load_model("models:/aligned/1"), encoder_dir
    finally:
        mlflow.set_tracking_uri(None)


def test_a_request_is_embedded_in_chunks_as_one_batch_embeds_it(served):
    model, encoder_dir = served
    words = TINY_ENCODER_WORDS
    # 1 to 13 words, and the longest (54) in the second chunk: each chunk pads to its own longest
    sentences = [" ".join((words * 2)[i % 9 : i % 9 + 1 + i % 13]) for i in range(45)]
    sentences[CHUNK + 3] = " ".join(words * 6)
    assert len(sentences) > CHUNK

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    encoder = AutoModel.from_pretrained(encoder_dir).eval()
    batch = tokenizer(sentences, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    own = (batch["attention_mask"] * (1 - batch.pop("special_tokens_mask"))).unsqueeze(-1)
    with torch.no_grad():  # the whole request in one forward pass
        states = encoder(**batch, output_hidden_states=True).hidden_states[-1]
    one_batch = ((states * own).sum(1) / own.sum(1)).numpy()

    embeddings = model.predict(sentences)
    assert embeddings.shape == (45, 16)
    np.testing.assert_allclose(embeddings, one_batch, rtol=1e-5, atol=1e-6)


def test_a_sentence_longer_than_the_position_embeddings_is_truncated(served):
    model, encoder_dir = served
    long = " ".join(TINY_ENCODER_WORDS * 100)  # 900 tokens; the encoder has 512 positions
    embeddings = model.predict([long, "ein satz"])

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    assert tokenizer.model_max_length > 10**20  # saved without a limit: it truncates nothing
    kept = tokenizer.convert_tokens_to_string(tokenizer.tokenize(long)[:510])  # + [CLS], [SEP]
    np.testing.assert_allclose(embeddings, model.predict([kept, "ein satz"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ([], r"no sentences to embed"),
        (["a sentence"] * (MAX_INPUTS + 1), rf"{MAX_INPUTS + 1} sentences .* at most {MAX_INPUTS}"),
        # refused by MLflow, against predict's ``list[str]`` type hint: not the sentence "None"
        (["a sentence", None], r"invalid elements: .*'None', 'Expected type str, but got NoneType"),
    ],
    ids=["empty", "too-many", "none"],
)
def test_a_bad_request_is_refused_with_what_is_wrong(served, request_, message):
    model, _ = served
    with pytest.raises(mlflow.MlflowException, match=message) as refused:
        model.predict(request_)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"

    # served: the scoring server's handler, whose MlflowException the server sends as its status
    with pytest.raises(mlflow.MlflowException, match=message) as refused:
        scoring_server.invocations(
            json.dumps({"inputs": request_}),
            "application/json",
            model,
            model.metadata.get_input_schema(),
        )
    assert refused.value.get_http_status_code() == 400
