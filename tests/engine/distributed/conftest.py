"""A small real scene and a tiny random model for the distributed tests; a CLI runner for real Ray runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal

from mobanet.card import ModelCard
from mobanet.model import MoBaNetConfig, build_model
from mobanet.modelfile import save_model

from ..raster.conftest import ORIGIN, synthetic_pair, write_raster

WINDOW = 56
SIZE = 300  # with --tile-size 112: 3 x 3 tiles, the last row and column 76 px (a remainder wider than the window)


@pytest.fixture(scope="session")
def model_56(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny56.safetensors"
    save_model(path, build_model(MoBaNetConfig()), ModelCard(window=WINDOW), full=True)
    return path


@pytest.fixture(scope="session")
def scene_300(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Optical + DSM 300 px on a grid offset from the map origin by a few pixels (the window grid is map-anchored)."""
    folder = tmp_path_factory.mktemp("scene")
    optical, dsm = synthetic_pair(SIZE, seed=5)
    optical[:, :12, 40:90] = 0  # a nodata patch
    geotransform = (ORIGIN[0] + 7 * 0.5, 0.5, 0.0, ORIGIN[1] - 3 * 0.5, 0.0, -0.5)
    return (write_raster(folder / "optical.tif", optical, geotransform, nodata=0),
            write_raster(folder / "dsm.tif", dsm, geotransform))


def write_mask(path: Path, wkt: str) -> Path:
    """A GeoPackage with one polygon (UTM 32N), for runs restricted by --mask."""
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("mask", srs=srs, geom_type=ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
    layer.CreateFeature(feature)
    feature = layer = source = None
    return path


def read(path: Path) -> np.ndarray:
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray()


def mobanet_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mobanet", *args]


def run_cli(args: list[str], tmp_dir: Path, timeout: float = 420, env: dict[str, str] | None = None
            ) -> tuple[int, list[dict], str]:
    """Run the real CLI with JSON progress; Ray's temporary files go under ``tmp_dir`` (so leftovers are visible)."""
    process = subprocess.run(mobanet_command(*args, "--json-progress"), capture_output=True, text=True,
                             timeout=timeout, env=cli_env(tmp_dir, env))
    return process.returncode, events(process.stdout), process.stderr


def cli_env(tmp_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, TMPDIR=str(tmp_dir), OMP_NUM_THREADS="1")
    env.update(extra or {})
    return env


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def result_of(found: list[dict]) -> dict:
    results = [e for e in found if e["event"] == "result"]
    assert results, f"no result event in {found[-3:]}"
    return results[-1]


def error_of(found: list[dict]) -> dict:
    errors = [e for e in found if e["event"] == "error"]
    assert errors, f"no error event in {found[-3:]}"
    return errors[-1]


class _RangeFiles(BaseHTTPRequestHandler):
    """Files of the server's folder with HTTP range requests, as GDAL's /vsicurl/ reads them."""

    def do_HEAD(self) -> None:  # noqa: N802 - the http.server name
        self._send(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._send(body=True)

    def _send(self, body: bool) -> None:
        path = self.server.folder / self.path.lstrip("/")  # type: ignore[attr-defined]
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        asked = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if asked:
            start, end = int(asked[1]), min(int(asked[2]) if asked[2] else end, end)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if body:
            self.wfile.write(data[start:end + 1])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_files(scene_300):
    """The scene served over HTTP on 127.0.0.1: /vsicurl/ paths of the optical raster and the DSM."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RangeFiles)
    server.folder = scene_300[0].parent
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"/vsicurl/http://127.0.0.1:{server.server_address[1]}"
    try:
        yield f"{base}/{scene_300[0].name}", f"{base}/{scene_300[1].name}"
    finally:
        server.shutdown()
        server.server_close()
