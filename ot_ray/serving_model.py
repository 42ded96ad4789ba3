"""The aligned encoder as an MLflow model (logged "from code": MLflow stores this file, not a
pickle). Sentences in, embeddings out, read as the trial's retrieval score reads them: the mean
of the aligned layer (``model_config["layer"]``, the last of ``alignment.layers``) over each
sentence's own tokens, ``[CLS]``/``[SEP]`` left out. Needs torch and transformers only.

A request holds at most :data:`MAX_INPUTS` sentences, embedded :data:`CHUNK` at a time; a
sentence longer than the encoder reads (``model_config["max_length"]``, its position embeddings,
or the tokenizer's own limit if smaller) is embedded from its first tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

if TYPE_CHECKING:
    import torch

MAX_INPUTS = 1024
"""Sentences one request may hold; a larger one is refused (split it). Chunks bound the forward
pass, not the request: it is tokenized whole (a blank sentence is refused before any pass) and
holds a scoring-server worker until its last chunk."""

CHUNK = 32
"""Sentences per forward pass. Every layer's states are kept (``output_hidden_states``), so one
pass over a whole request of long sentences ran the server out of memory; a chunk bounds it.
Padding to the chunk's longest sentence leaves an embedding as it is (attention and the mean
both see only the sentence's own tokens)."""


class AlignedEncoderModel(mlflow.pyfunc.PythonModel):
    """Mean of the aligned layer's token states over each sentence's real tokens."""

    def load_context(self, context) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = context.artifacts["encoder"]
        config = context.model_config or {}
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path).eval()
        self.layer = int(config.get("layer", -1))
        self.max_length = _max_length(self.tokenizer.model_max_length, config.get("max_length"))

    def predict(self, model_input: list[str], params: dict | None = None) -> np.ndarray:
        import torch

        _check_request(model_input)
        chunks = [
            self._tokenize(model_input[start : start + CHUNK])
            for start in range(0, len(model_input), CHUNK)
        ]
        _check_tokens(torch.cat([own.sum(1) for _, own in chunks]).tolist())
        return np.concatenate([self._embed(batch, own) for batch, own in chunks])

    def _tokenize(self, sentences: list[str]) -> tuple[dict, torch.Tensor]:
        """One chunk, padded to its longest sentence; with the mask of each sentence's own
        tokens (real, not special)."""
        batch = self.tokenizer(
            sentences,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        special = batch.pop("special_tokens_mask")
        return batch, batch["attention_mask"] * (1 - special)

    def _embed(self, batch: dict, own: torch.Tensor) -> np.ndarray:
        import torch

        with torch.no_grad():
            states = self.encoder(**batch, output_hidden_states=True).hidden_states[self.layer]
        mask = own.unsqueeze(-1).to(states.dtype)
        return ((states * mask).sum(1) / mask.sum(1)).numpy()


def _max_length(tokenizer_limit: int, positions: int | None) -> int | None:
    """The longest input in tokens: the encoder's position embeddings (``positions``, counted when
    it was logged; None without absolute positions) or the tokenizer's limit, the smaller. A
    tokenizer saved without a limit reports a 1e30 sentinel, which truncated nothing, so a long
    sentence overflowed the position embeddings (an index error). None: no limit."""
    from transformers.tokenization_utils_base import LARGE_INTEGER

    limits = [n for n in (tokenizer_limit, positions) if n is not None and n < LARGE_INTEGER]
    return min(limits, default=None)


def _check_request(sentences: list[str]) -> None:
    """A bad request fails with what is wrong (HTTP 400 when served), not as an error inside the
    tokenizer (an empty list). A ``None`` or other non-string MLflow refuses before ``predict``
    runs, against its ``list[str]`` type hint."""
    if len(sentences) == 0:
        raise _bad_request("no sentences to embed: send a non-empty list of strings")
    if len(sentences) > MAX_INPUTS:
        raise _bad_request(
            f"{len(sentences)} sentences in one request; at most {MAX_INPUTS}: split it"
        )


def _check_tokens(counts: list[int]) -> None:
    """A sentence with no tokens of its own would average to a zero vector, which looks like an
    embedding and matches nothing."""
    empty = [i for i, count in enumerate(counts) if count == 0]
    if empty:
        raise _bad_request(
            f"input(s) {empty[:10]} have no tokens to embed (empty or blank sentences)"
        )


def _bad_request(message: str) -> MlflowException:
    """MLflow's scoring server answers this with HTTP 400 and the message."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


set_model(AlignedEncoderModel())
