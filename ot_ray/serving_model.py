"""The aligned encoder as an MLflow model (logged "from code": MLflow stores this file, not a
pickle). Sentences in, mean-pooled last-layer embeddings out; needs torch and transformers only.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
from mlflow.models import set_model


class AlignedEncoderModel(mlflow.pyfunc.PythonModel):
    """Mean of the last layer's token states over each sentence's real tokens."""

    def load_context(self, context) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = context.artifacts["encoder"]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path).eval()

    def predict(self, model_input: list[str], params: dict | None = None) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            [str(x) for x in model_input], padding=True, truncation=True, return_tensors="pt"
        )
        with torch.no_grad():
            states = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return ((states * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()


set_model(AlignedEncoderModel())
