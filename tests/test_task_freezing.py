"""Freezing the bottom of the encoder during task fine-tuning (task.<task>.freeze_embeddings,
freeze_layers): exactly those parameters stay fixed, the rest train; a bad count is an error."""

from __future__ import annotations

import datasets
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from ot_ray.config import TaskTrainConfig
from ot_ray.errors import ConfigError
from ot_ray.tasks.stage import fine_tune, freeze_bottom
from ot_ray.training import StageState


def tiny_classifier() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
    )  # fmt: skip
    return BertForSequenceClassification(config)


def frozen_names(model: torch.nn.Module) -> set[str]:
    return {name for name, param in model.named_parameters() if not param.requires_grad}


def test_embeddings_only():
    model = tiny_classifier()
    count = freeze_bottom(model, embeddings=True, layers=0)
    names = frozen_names(model)
    assert names and all(name.startswith("bert.embeddings.") for name in names)
    assert count == sum(p.numel() for p in model.bert.embeddings.parameters())


def test_layers_include_the_embeddings_and_stop_at_the_count():
    model = tiny_classifier()
    freeze_bottom(model, embeddings=False, layers=2)
    names = frozen_names(model)
    assert any(name.startswith("bert.embeddings.") for name in names)
    assert any(name.startswith("bert.encoder.layer.1.") for name in names)
    assert not any(name.startswith("bert.encoder.layer.2.") for name in names)
    assert not any(name.startswith("classifier.") for name in names)


def test_nothing_frozen_by_default():
    model = tiny_classifier()
    assert freeze_bottom(model, embeddings=False, layers=0) == 0
    assert not frozen_names(model)


def test_more_layers_than_the_model_has_names_the_key():
    with pytest.raises(ConfigError, match=r"task\.xnli\.freeze_layers: 4 layers .* has 3 layers"):
        freeze_bottom(tiny_classifier(), embeddings=False, layers=4, key="task.xnli.freeze_layers")


def test_fine_tuning_leaves_frozen_parameters_bitwise_unchanged():
    model = tiny_classifier()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    rows = torch.randint(1, 40, (16, 8), generator=torch.Generator().manual_seed(1))
    data = datasets.Dataset.from_dict(
        {"input_ids": rows.tolist(), "labels": [i % 3 for i in range(16)]}
    )

    def collate(dataset: datasets.Dataset, indices: list[int]) -> dict[str, torch.Tensor]:
        picked = dataset[indices]
        return {
            "input_ids": torch.tensor(picked["input_ids"]),
            "labels": torch.tensor(picked["labels"]),
        }

    settings = TaskTrainConfig(
        lr=1e-2, epochs=1, batch_size=8, warmup_ratio=0.0, freeze_embeddings=True, freeze_layers=1
    )
    state = StageState()
    fine_tune(
        model, data, collate, settings, name="xnli", seed=0, device=torch.device("cpu"),
        bf16=False, max_grad_norm=1.0, state=state, show_progress=False,
    )  # fmt: skip
    assert state.step == 2
    for name, param in model.named_parameters():
        unchanged = torch.equal(param, before[name])
        frozen = name.startswith(("bert.embeddings.", "bert.encoder.layer.0."))
        assert unchanged == frozen, name
