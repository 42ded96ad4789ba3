"""The registered aligned encoder, as a user gets it: loaded by name from a real SQLite MLflow
store, sentences in, the aligned layer's states averaged over each sentence's own tokens out (as
the trial's retrieval score reads them)."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from conftest import tiny_encoder
from transformers import AutoModel, AutoTokenizer

from ot_ray.serving import log_encoder_model


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
