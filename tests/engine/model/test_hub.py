"""Pretrained weights through the real Hugging Face hub client: cache, download, and an answer at once offline.

A local HTTP server plays the hub (``HF_ENDPOINT``), serving a tiny DINOv2-
structured backbone under the repository timm uses for ViT-S/14; a socket
that accepts connections and never answers plays a firewalled network. The
hub client reads its environment at import, so each case runs in a fresh
Python.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from mobanet.model.backbone import TINY_ARCHITECTURE
from mobanet.model.hub import PROBE_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[3]
TIMM_NAME = "vit_small_patch14_dinov2.lvd142m"
FILE_PATH = f"/timm/{TIMM_NAME}/resolve/main/model.safetensors"

# Runs in a fresh Python: build the backbone with pretrained=True, report what happened as JSON.
CHILD = """
import json, sys, time
from safetensors.torch import load_file
from mobanet.errors import WeightsError
from mobanet.model.backbone import TINY_ARCHITECTURE, BackboneSpec, create_backbone
spec = BackboneSpec("tiny-hub", sys.argv[2], dict(TINY_ARCHITECTURE))
started = time.perf_counter()
try:
    model = create_backbone(spec, pretrained=True)
except WeightsError as exc:
    print(json.dumps({"error": str(exc), "seconds": time.perf_counter() - started}))
    sys.exit(0)
state, served = model.state_dict(), load_file(sys.argv[1])
same = all(name in state and bool((state[name] == value).all()) for name, value in served.items())
print(json.dumps({"error": None, "same": same, "seconds": time.perf_counter() - started}))
"""


@pytest.fixture(scope="module")
def served_weights(tmp_path_factory) -> Path:
    """timm-layout weights of a tiny DINOv2 ViT, as the hub would serve them."""
    torch.manual_seed(7)
    source = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0, **TINY_ARCHITECTURE)
    path = tmp_path_factory.mktemp("hub") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    return path


@pytest.fixture
def fake_hub(served_weights):
    """A local hub answering HEAD and GET for the weights file; records the paths asked for."""
    payload = served_weights.read_bytes()
    etag = hashlib.sha256(payload).hexdigest()
    requests: list[str] = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> bool:
            requests.append(f"{self.command} {self.path}")
            if self.path != FILE_PATH:
                self.send_error(404)
                return False
            self.send_response(200)
            self.send_header("X-Repo-Commit", "0" * 40)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            return True

        def do_HEAD(self):
            self._answer()

        def do_GET(self):
            if self._answer():
                self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_network():
    """An endpoint that accepts connections and never answers (a firewall dropping packets); counts them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()
    for connection in accepted:
        connection.close()


def build(endpoint: str, cache: Path, served: Path, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environment.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home"),
                       PYTHONPATH=str(ROOT / "engine"), **env)
    completed = subprocess.run([sys.executable, "-c", CHILD, str(served), TIMM_NAME], env=environment,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_download_then_cache_without_network(fake_hub, silent_network, served_weights, tmp_path):
    endpoint, requests = fake_hub
    cache = tmp_path / "cache"
    first = build(endpoint, cache, served_weights)
    assert first["error"] is None and first["same"], first
    assert f"GET {FILE_PATH}" in requests

    silent, connections = silent_network  # second run: the hub is unreachable, the cache is warm
    second = build(silent, cache, served_weights)
    assert second["error"] is None and second["same"], second
    assert connections == [], "a cached file must be used without asking the hub"


def test_offline_setting_fails_at_once_without_a_request(silent_network, served_weights, tmp_path):
    endpoint, connections = silent_network
    result = build(endpoint, tmp_path / "empty", served_weights, HF_HUB_OFFLINE="1",
                   MOBANET_OPTION_LABELS=json.dumps({"--weights": "Backbone weights file"}))
    assert result["error"] is not None and connections == []
    assert "HF_HUB_OFFLINE" in result["error"]
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth" in result["error"]
    assert "'Backbone weights file'" in result["error"] and "--weights" not in result["error"]


def test_unanswering_network_fails_within_the_probe_timeout(silent_network, served_weights, tmp_path):
    """Not the minute of retries the hub client spends alone: one request, then the file to download."""
    endpoint, connections = silent_network
    result = build(endpoint, tmp_path / "empty", served_weights)
    assert result["error"] is not None and "did not answer" in result["error"]
    assert "dinov2_vits14_pretrain.pth" in result["error"] and "--weights" in result["error"]
    assert connections, "the hub was not asked"
    assert result["seconds"] < PROBE_TIMEOUT_S + 3.0, result
