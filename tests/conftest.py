"""Shared fixtures: small random padded batches of embeddings, a tiny saved encoder, the small
demo world's settings."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# The tests build Hub-format stand-in datasets afresh; a datasets cache shared with other runs
# (~/.cache/huggingface) served an earlier run's build of a stand-in that had other rows.
_DATASETS_CACHE = tempfile.mkdtemp(prefix="ot-ray-tests-datasets-")
os.environ["HF_DATASETS_CACHE"] = _DATASETS_CACHE
atexit.register(shutil.rmtree, _DATASETS_CACHE, ignore_errors=True)

if not torch.cuda.is_available():
    # Triton's CPU interpreter runs the fused Sinkhorn kernel in test_fused_sinkhorn.py. Triton
    # reads this once, when it is first imported (its own library functions are jit'd at import),
    # so it is set here, before any test or torch.compile can import it.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def padded_batch(batch: int, max_n: int, max_m: int, dim: int, *, seed: int, dtype=torch.float64):
    """Embeddings with random lengths in [1, max]; padded slots hold garbage, not zeros."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, max_n, dim, generator=generator, dtype=dtype)
    y = torch.randn(batch, max_m, dim, generator=generator, dtype=dtype) * 0.8 + 0.3
    n_lengths = torch.randint(1, max_n + 1, (batch,), generator=generator)
    m_lengths = torch.randint(1, max_m + 1, (batch,), generator=generator)
    n_lengths[0], m_lengths[0] = max_n, max_m  # at least one full-length pair
    x_mask = torch.arange(max_n)[None, :] < n_lengths[:, None]
    y_mask = torch.arange(max_m)[None, :] < m_lengths[:, None]
    x = torch.where(x_mask[..., None], x, torch.full_like(x, 1e3))
    y = torch.where(y_mask[..., None], y, torch.full_like(y, -1e3))
    return x, y, x_mask, y_mask


@pytest.fixture
def batch64():
    return padded_batch(6, 9, 7, 4, seed=0)


def write_small_world(out, seed: int, **sizes: int):
    """The demo world's data files (no encoder) at toy sizes: real formats in a second."""
    from ot_ray.config import WorldSizes
    from ot_ray.demo.world import write_world

    defaults = dict(
        mono_sentences=20,
        parallel_pairs=5,
        parallel_dev_pairs=5,
        xnli_train=3,
        xnli_dev=3,
        xnli_test=3,
        xquad_train_stories=1,
        xquad_dev_stories=1,
        xquad_test_stories=1,
    )
    write_world(out, WorldSizes(**{**defaults, **sizes}), seed=seed)
    return out


#: A demo world small enough to build in seconds (its encoder is barely trained): for tests of
#: the plumbing, not of the science.
SMALL_DEMO = {
    "seed": 3,
    "sizes": {
        "mono_sentences": 400,
        "parallel_pairs": 150,
        "parallel_dev_pairs": 40,
        "xnli_train": 90,
        "xnli_dev": 60,
        "xnli_test": 90,
        "xquad_train_stories": 15,
        "xquad_dev_stories": 8,
        "xquad_test_stories": 10,
    },
    "encoder": {
        "vocab_size": 400,
        "hidden_size": 32,
        "num_layers": 2,
        "num_heads": 2,
        "intermediate_size": 64,
        "steps": 3,
        "batch_size": 8,
        "warmup_steps": 1,
        "heldout_sentences": 40,
    },
}


def tiny_trial_overrides(cache: str, output: str) -> list[str]:
    """``--set`` overrides for a trial that runs in seconds on the small demo world."""
    return [
        f"data.demo={json.dumps({**SMALL_DEMO, 'cache_dir': cache})}",
        "data.languages=[de,fr,bg,es]",
        "data.eval_languages=[de,fr,bg,es,el]",
        "data.pairs_per_language=40",
        "data.max_length=48",
        "alignment.batch_size=8",
        "alignment.grad_accum=2",
        "alignment.lr=1e-3",
        "alignment.ot.solver.max_iters=50",  # the barely trained encoder converges slowly
        "task.xnli={lr: 1e-3, epochs: 1, batch_size: 16, max_length: 64}",
        "task.xquad={lr: 1e-3, epochs: 1, batch_size: 8, max_length: 64, doc_stride: 32}",
        "train.eval_batch_size=16",
        "train.checkpoint_every=4",
        f"train.output_dir={output}",
    ]


def refuse_reading(monkeypatch) -> None:
    """Every ``Path.open`` fails as an unreadable file does (tests may run as root, where
    ``chmod`` does not stop reading)."""

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)


TINY_ENCODER_WORDS = ["ein", "satz", "a", "sentence", "to", "embed", "the", "dog", "runs"]


def tiny_encoder(path: Path) -> None:
    """A randomly initialised BERT and its WordPiece tokenizer, saved as ``save_pretrained``:
    a real local model folder, as a user's would be."""
    # imported here: transformers imports Triton, which must see TRITON_INTERPRET (set above)
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir()
    vocab = path / "vocab.txt"
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab.write_text("\n".join([*special, *TINY_ENCODER_WORDS]) + "\n")
    # from the folder: transformers 5 ignores ``vocab_file=`` (every word became [UNK])
    tokenizer = BertTokenizerFast.from_pretrained(path)
    assert tokenizer.tokenize("ein satz") == ["ein", "satz"]
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(TINY_ENCODER_WORDS) + len(special),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    BertModel(config).save_pretrained(path, safe_serialization=True)
