"""Under torchrun, even a single process joins a process group and trains through DDP (the path a one-GPU nccl
run takes); outside torchrun nothing is initialised."""

import socket

import torch
import torch.distributed as dist

from mobanet.train.distributed import COLLECTIVE_TIMEOUT, setup_distributed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_plain_process_has_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = setup_distributed("cpu")
    assert not context.enabled and context.backend is None and context.world_size == 1
    assert not dist.is_initialized()


def test_one_process_torchrun_environment_joins_a_gloo_group(monkeypatch):
    environment = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(_free_port())}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    context = setup_distributed("cpu")
    try:
        assert context.enabled and context.backend == "gloo" and context.world_size == 1
        assert dist.is_initialized() and dist.get_backend() == "gloo"
        assert context.gather({"rank": 0}) == [{"rank": 0}] and context.broadcast(7) == 7
        assert context.mean(0.25) == 0.25
        context.barrier()
    finally:
        context.close()
    assert not dist.is_initialized()
    assert COLLECTIVE_TIMEOUT.total_seconds() >= 3600 > torch.distributed.default_pg_timeout.total_seconds() / 2
