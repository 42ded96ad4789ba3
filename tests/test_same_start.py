"""Every worker of a trial starts from rank 0's encoder. Each loads the base weights itself,
from its own node's copy, and two nodes' copies can differ (a demo world built on each node,
another revision in a Hub cache): here worker 1 loads weights with noise added. Two real
(gloo) workers then measure the alignment of the base encoder as one worker does: they deal
the held-out pairs between them, so worker 1's own weights would show in the scores."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import SMALL_DEMO, tiny_trial_overrides
from transformers import AutoModel

from ot_ray.config import load_config
from ot_ray.launch import resolve_paths
from ot_ray.reporters import LocalReporter
from ot_ray.trial import run_trial

#: No training, no task: the scores are the base encoder's alone.
MEASURE_ONLY = ["alignment.method=none", "task.tasks=[]"]


def alignment_scores(cache: str, out: str) -> dict[str, float]:
    config = resolve_paths(load_config(None, tiny_trial_overrides(cache, out) + MEASURE_ONLY))
    metrics = run_trial(config, LocalReporter(Path(out)), show_progress=False)
    return {k: v for k, v in metrics.items() if k.startswith("align/")}


def noisy_loading(original):
    """``AutoModel.from_pretrained`` as another node's copy would give it."""

    def load(*args, **kwargs):
        model = original(*args, **kwargs)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(7)
            for param in model.parameters():
                param.add_(0.5 * torch.randn(param.shape, generator=generator))
        return model

    return load


def worker(rank: int, port: int, cache: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        if rank == 1:
            AutoModel.from_pretrained = noisy_loading(AutoModel.from_pretrained)
        scores = alignment_scores(cache, f"{out}/rank{rank}")
        with open(f"{out}/scores{rank}.json", "w", encoding="utf-8") as handle:
            json.dump(scores, handle)
    finally:
        dist.destroy_process_group()


def test_two_workers_measure_rank_0s_encoder_although_worker_1_loaded_another(tmp_path):
    cache = str(tmp_path / "cache")
    from ot_ray.config import DemoConfig
    from ot_ray.demo.build import ensure_demo_world

    ensure_demo_world(DemoConfig(**SMALL_DEMO, cache_dir=cache))  # built once, before both
    alone = alignment_scores(cache, str(tmp_path / "alone"))
    assert alone["align/retrieval_acc/de"] >= 0 and "align/aer/de" in alone
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(worker, args=(port, cache, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        together = json.loads((tmp_path / f"scores{rank}.json").read_text(encoding="utf-8"))
        assert together == alone, rank
