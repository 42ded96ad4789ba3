"""Two real (gloo) workers that read different training data stop together with the same
message, instead of training on mismatched examples or waiting in a collective for ever."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from ot_ray.errors import UserError
from ot_ray.trial_base import check_workers_agree


def worker(rank: int, port: int, out: str, digests: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        check_workers_agree("align", digests[rank])
        said = "agreed"
    except UserError as err:
        said = str(err)
    finally:
        dist.destroy_process_group()
    Path(f"{out}.{rank}").write_text(said, encoding="utf-8")


def run(tmp_path: Path, digests: list[str]) -> list[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "said"
    mp.spawn(worker, args=(port, str(out), digests), nprocs=2, join=True)
    return [Path(f"{out}.{rank}").read_text(encoding="utf-8") for rank in (0, 1)]


def test_workers_with_other_training_data_all_stop_with_the_digests(tmp_path):
    said = run(tmp_path, ["aaaa", "bbbb"])
    assert said[0] == said[1]
    assert "the workers read different align training data" in said[0]
    assert "rank 0: aaaa, rank 1: bbbb" in said[0]
    assert run(tmp_path, ["aaaa", "aaaa"]) == ["agreed", "agreed"]
