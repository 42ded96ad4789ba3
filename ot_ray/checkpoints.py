"""Trial checkpoints: safetensors weights, optimizer and schedule, RNG, stage and step.

A checkpoint is a directory (what ``ray.train.Checkpoint.from_directory`` takes):

* ``state.json``: the stage in progress, its optimizer step and the metrics measured so far;
* ``aligned_encoder/``: the stage-1 result as ``save_pretrained`` (safetensors), once it exists;
* ``stage_model.safetensors``, ``optimizer.pt``, ``rng.pt``: the model, optimizer and schedule of
  the stage in progress and the torch RNG state (read back with ``weights_only=True``);
* ``selected_model.safetensors``: in a task stage that selects on dev, the best model so far.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_file, save_model

from ot_ray.errors import UserError

STATE = "state.json"
ALIGNED = "aligned_encoder"
STAGE_MODEL = "stage_model.safetensors"
OPTIMIZER = "optimizer.pt"
RNG = "rng.pt"
SELECTED_MODEL = "selected_model.safetensors"


class CheckpointError(UserError):
    """A checkpoint that cannot be resumed as it is."""


@dataclass
class TrialState:
    """Where a trial stands. Stages run in order: align, quality, then each task."""

    stage: str = "align"
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    #: the trial's results-settings (``ot_ray.fingerprint``): only such a trial may resume it
    settings: dict[str, str] = field(default_factory=dict)
    #: SHA-256 of the frozen initial encoder stage 1 anchors to (:func:`weights_digest`): it is
    #: loaded again on resume, and must be the one the stage started with
    reference: str = ""
    #: what each stage trained on (:func:`ot_ray.fingerprint.rows_digest`), by stage (``align``,
    #: ``xnli``, ``xnli/joint``...): a stage resumed mid-way must find the same examples
    data: dict[str, str] = field(default_factory=dict)


def save_checkpoint(
    directory: Path,
    state: TrialState,
    *,
    aligned: Any | None = None,
    tokenizer: Any | None = None,
    stage_model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    rng: list[dict[str, Any]] | None = None,
    selected: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory (created if needed) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    if aligned is not None:
        aligned.save_pretrained(directory / ALIGNED, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory / ALIGNED)
    if stage_model is not None:
        save_model(stage_model, str(directory / STAGE_MODEL))
    if optimizer is not None and scheduler is not None:
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            directory / OPTIMIZER,
        )
    if selected is not None:
        save_file(selected, str(directory / SELECTED_MODEL))
    torch.save({"per_rank": rng if rng is not None else [rng_state()]}, directory / RNG)
    (directory / STATE).write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
    return directory


def read_state(directory: Path) -> TrialState:
    """Where the checkpoint's trial stood; a damaged one (no state, not a state written by this
    version of ot-ray) is a clear error, not a traceback. A checkpoint past stage 1 must hold
    the aligned encoder the later stages start from."""
    path = directory / STATE
    try:
        state = TrialState(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as err:  # missing, torn, unknown or missing keys
        raise CheckpointError(
            f"{path}: not a readable trial state ({type(err).__name__}: {err}); the checkpoint "
            "is damaged or from another program: start the trial anew"
        ) from None
    if state.stage != "align" and not (directory / ALIGNED / "config.json").is_file():
        raise CheckpointError(
            f"{directory}: a checkpoint past alignment lacks {ALIGNED}/ (damaged or copied in "
            "part); resume from a whole checkpoint, or start the trial anew"
        )
    return state


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's weights (names, dtypes and bytes), to tell two copies apart."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{flat.numel()};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """This process's torch RNG states (CPU, and CUDA when in use): dropout depends on them."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def load_stage(directory: Path, model: torch.nn.Module, rank: int = 0) -> dict[str, Any]:
    """Restore a stage in progress (a checkpoint taken mid-stage): its weights into ``model``
    and this rank's RNG; return the optimizer and schedule state.

    Such a checkpoint always holds all three files: one missing means a damaged checkpoint, and
    going on without it would restart the schedule's warmup (or the stage's weights) silently.
    """
    missing = [name for name in (STAGE_MODEL, OPTIMIZER, RNG) if not (directory / name).exists()]
    if missing:
        raise CheckpointError(
            f"{directory}: a checkpoint taken mid-stage lacks {', '.join(missing)} (damaged or "
            "copied in part); resume from a whole checkpoint, or start the trial anew"
        )
    load_model(model, str(directory / STAGE_MODEL))
    # onto the CPU: rank 0 saved CUDA tensors tagged with its own device, which every rank (or a
    # machine without that GPU) would otherwise load there; the optimizer moves its state to
    # each parameter's device itself
    per_rank = torch.load(directory / RNG, map_location="cpu", weights_only=True)["per_rank"]
    mine = per_rank[rank] if rank < len(per_rank) else per_rank[0]
    torch.set_rng_state(mine["cpu"])
    if "cuda" in mine and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["cuda"])
    if rank >= len(per_rank):
        # resumed on more workers than wrote it: a rank with no saved state of its own must not
        # replay rank 0's dropout masks, so it draws its own stream, seeded from rank 0's
        # state and its rank (deterministic, and distinct per rank)
        torch.manual_seed(int(torch.randint(2**62, (1,))) + rank)
    return torch.load(directory / OPTIMIZER, map_location="cpu", weights_only=True)
