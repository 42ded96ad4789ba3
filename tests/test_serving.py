"""The registered aligned encoder, as a user gets it: loaded by name from a real SQLite MLflow
store, sentences in, the encoder's mean-pooled last-layer states out."""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from conftest import tiny_encoder
from transformers import AutoModel, AutoTokenizer

from ot_ray.serving import log_encoder_model


def test_the_registered_encoder_loads_by_name_and_embeds_as_the_encoder_does(tmp_path):
    encoder_dir = tmp_path / "encoder"
    tiny_encoder(encoder_dir)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        with mlflow.start_run():
            info = log_encoder_model(str(encoder_dir), registered_name="aligned")
        assert str(info.registered_model_version) == "1"
        model = mlflow.pyfunc.load_model("models:/aligned/1")
        sentences = ["the dog runs", "ein satz", "embed"]  # different lengths: padding
        served = model.predict(sentences)
    finally:
        mlflow.set_tracking_uri(None)

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    encoder = AutoModel.from_pretrained(encoder_dir).eval()
    expected = []
    for sentence in sentences:  # one at a time: no padding at all
        with torch.no_grad():
            states = encoder(**tokenizer(sentence, return_tensors="pt")).last_hidden_state
        expected.append(states[0].mean(0).numpy())
    assert served.shape == (3, 16)
    np.testing.assert_allclose(served, np.stack(expected), rtol=1e-5, atol=1e-6)
    assert not np.allclose(served[0], served[1])
