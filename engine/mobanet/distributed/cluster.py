"""Joining Ray: a private instance on this machine (``local``) or a running cluster (an address).

``local`` starts Ray for this run only, bound to 127.0.0.1 (no port on another
interface), in a temporary folder that is removed with it. An address is
probed before ``ray.init``, which would wait minutes for an address where no
cluster answers: a closed port, or a port where something other than Ray's
gRPC server listens, fails within seconds with the fix. Ray is optional; without
it, ``--ray`` says how to install it.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from mobanet.errors import InputError
from mobanet.wording import option

LOCAL = "local"
INSTALL_HINT = "pip install 'mobanet[ray]' (or pip install ray)"
PROBE_TIMEOUT_S = 3.0
RAY_HEAD_COMMAND = "ray start --head"  # Ray's own commands, not options of ours
RAY_JOIN_COMMAND = "ray start --address=HEAD:PORT"
SOCKET_ROOT_MAX = 24  # Ray adds about 80 characters (mobanet-ray-XXX/session_<date>_<pid>/sockets/plasma_store)
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024  # only small summaries travel through Ray: tiles go to the store
# A private instance: every Ray service bound to 127.0.0.1, and nothing reported to Ray's usage statistics.
_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers with a SETTINGS frame.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS_FRAME = 4


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise InputError(f"{option('--ray')} needs Ray, which is not installed for {sys.executable}; install it with "
                         f"{INSTALL_HINT}, or run without {option('--ray')}.") from exc
    return ray


def split_address(address: str) -> tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) of a Ray head node."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{option('--ray')} {address!r} is not an address; give HOST:PORT of the Ray head node as "
                         f"`{RAY_HEAD_COMMAND}` prints it (e.g. 10.0.0.5:6379), or {option('--ray')} local.")
    return host, int(port)


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail within seconds, with the fix, unless a gRPC server (a Ray head node) answers at ``address``."""
    host, port = split_address(address)
    fix = (f"start the head node there with `{RAY_HEAD_COMMAND} --port={port}`, check the address and that the "
           f"port is open from this machine, or use {option('--ray')} local")
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            connection.sendall(_HTTP2_PREFACE)
            answer = connection.recv(9)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        raise InputError(f"No Ray cluster answers at {address} ({reason}); {fix}.") from exc
    if len(answer) < 9 or answer[3] != _SETTINGS_FRAME:
        raise InputError(f"The server at {address} is not a Ray head node (it does not speak gRPC); give the "
                         f"address that `{RAY_HEAD_COMMAND}` prints (port 6379 unless changed), or {fix}.")


@dataclass
class Cluster:
    """A connected Ray and what it offers."""

    ray: ModuleType
    address: str  # as the user gave it ("local" or HOST:PORT)
    node_cpus: list[float]  # CPUs of each alive node that has any
    gpus: int

    @property
    def local(self) -> bool:
        return self.address == LOCAL


@dataclass
class WorkerLayout:
    """How many workers, what each asks Ray for, and where its model runs."""

    count: int
    cpus: int
    gpus: int
    device: str  # "cpu" or "cuda" (the GPU Ray assigns shows as cuda:0 inside the worker)
    threads: int


def plan_workers(cluster: Cluster, device: str, workers: int | None) -> WorkerLayout:
    """One GPU per worker when the model runs on GPUs; otherwise the nodes' CPUs shared among the workers."""
    name = (device or "auto").strip().lower()
    if workers is not None and workers < 1:
        raise InputError(f"{option('--workers')} {workers} must be at least 1.")
    where = "this machine" if cluster.local else f"the Ray cluster at {cluster.address}"
    if name.startswith("cuda") or (name == "auto" and cluster.gpus > 0):
        if cluster.gpus < 1:
            raise InputError(f"{option('--device')} {device} asks for GPUs but {where} has none; use "
                             f"{option('--device')} cpu (or auto).")
        count = workers or cluster.gpus
        if count > cluster.gpus:
            raise InputError(f"{option('--workers')} {count} needs {count} GPUs (one a worker) but {where} has "
                             f"{cluster.gpus}; use {option('--workers')} {cluster.gpus} or fewer.")
        return WorkerLayout(count, 1, 1, "cuda", 1)
    if name not in ("auto", "cpu"):
        raise InputError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.")
    if not cluster.node_cpus:
        raise InputError(f"{where} has no CPU to run workers on; add worker nodes (`{RAY_JOIN_COMMAND}` on each).")
    count = workers or len(cluster.node_cpus)
    per_node = math.ceil(count / len(cluster.node_cpus))
    threads = max(1, int(min(cluster.node_cpus)) // per_node)
    if count > int(sum(cluster.node_cpus)):
        total = int(sum(cluster.node_cpus))
        raise InputError(f"{option('--workers')} {count} is more than the {total} CPUs of {where}; "
                         f"use {option('--workers')} {total} or fewer.")
    return WorkerLayout(count, threads, 0, "cpu", threads)


@contextlib.contextmanager
def connect(address: str, workers: int | None) -> Iterator[Cluster]:
    """Start (``local``) or join (HOST:PORT) Ray for the duration of the block; shut it down afterwards."""
    if address != LOCAL:
        probe(address)
    ray = import_ray()
    from ray._private import ray_constants  # Ray reads the loopback switch at import: tell this process directly

    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    saved_env = {name: os.environ.get(name) for name in _LOCAL_ENV}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    temp_dir = None
    try:
        if address == LOCAL:
            os.environ.update(_LOCAL_ENV)  # for every process Ray starts
            ray_constants.ENABLE_RAY_CLUSTER = False
            temp_dir = tempfile.mkdtemp(prefix="mobanet-ray-", dir=_short_temp_root())
            _init_local(ray, workers, temp_dir)
        else:
            _init_remote(ray, address)
        for number, handler in handlers.items():  # ray.init installs its own SIGTERM handler: keep the caller's
            signal.signal(number, handler)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        node_cpus = [float(n["Resources"].get("CPU", 0)) for n in nodes]
        gpus = int(sum(float(n["Resources"].get("GPU", 0)) for n in nodes))
        yield Cluster(ray, address, [c for c in node_cpus if c >= 1], gpus)
    finally:
        ray.shutdown()
        for number, handler in handlers.items():
            signal.signal(number, handler)
        if temp_dir is not None:
            _remove_folder(temp_dir)
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _remove_folder(folder: str) -> None:
    """Remove Ray's session folder; its processes may still close log files for a moment after shutdown."""
    for _ in range(10):
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.exists(folder):
            return
        time.sleep(0.5)


def _short_temp_root() -> str:
    """The temporary folder, unless it is too long for the Unix sockets Ray makes inside it (107 bytes)."""
    root = tempfile.gettempdir()
    return root if len(root) <= SOCKET_ROOT_MAX or not os.path.isdir("/tmp") else "/tmp"


def _init_local(ray: ModuleType, workers: int | None, temp_dir: str) -> None:
    import torch

    cpus = max(os.cpu_count() or 1, workers or 1)
    ray.init(address="local", num_cpus=cpus, num_gpus=torch.cuda.device_count(), include_dashboard=False,
             object_store_memory=LOCAL_OBJECT_STORE_BYTES, _temp_dir=temp_dir, log_to_driver=False,
             logging_level="ERROR")


def _init_remote(ray: ModuleType, address: str) -> None:
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except ConnectionError as exc:
        raise InputError(
            f"Could not join the Ray cluster at {address} ({exc}). If it uses token authentication (Ray's "
            "default), set RAY_AUTH_MODE=token here and copy the head node's token (`ray get-auth-token`) to "
            "~/.ray/auth_token or RAY_AUTH_TOKEN; the Ray version here must match the cluster's.") from exc
