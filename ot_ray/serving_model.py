"""The aligned encoder as an MLflow model (logged "from code": MLflow stores this file, not a
pickle). Sentences in, embeddings out, read as the trial's retrieval score reads them: the mean
of the aligned layer (``model_config["layer"]``, the last of ``alignment.layers``) over each
sentence's own tokens, ``[CLS]``/``[SEP]`` left out. Needs torch and transformers only.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
from mlflow.models import set_model


class AlignedEncoderModel(mlflow.pyfunc.PythonModel):
    """Mean of the aligned layer's token states over each sentence's real tokens."""

    def load_context(self, context) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = context.artifacts["encoder"]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path).eval()
        self.layer = int((context.model_config or {}).get("layer", -1))

    def predict(self, model_input: list[str], params: dict | None = None) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            [str(x) for x in model_input],
            padding=True,
            truncation=True,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        special = batch.pop("special_tokens_mask")
        own = batch["attention_mask"] * (1 - special)
        empty = [i for i, count in enumerate(own.sum(1).tolist()) if count == 0]
        if empty:  # a zero vector would look like an embedding and match nothing
            from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

            raise MlflowException(
                f"input(s) {empty[:10]} have no tokens to embed (empty or blank sentences)",
                error_code=INVALID_PARAMETER_VALUE,
            )
        with torch.no_grad():
            states = self.encoder(**batch, output_hidden_states=True).hidden_states[self.layer]
        mask = own.unsqueeze(-1).to(states.dtype)
        return ((states * mask).sum(1) / mask.sum(1)).numpy()


set_model(AlignedEncoderModel())
