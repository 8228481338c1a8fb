"""Benchmark `mobanet:setup`: time and disk of a first set-up, a repeat, an engine upgrade, a wheelhouse install.

Runs what a Plugin Manager user runs, in a fresh QGIS profile with the plugin
unpacked from the zip (as tests/plugin/test_setup_qgis_process.py does):

1. `make package` (seconds, from the tree alone);
2. `qgis_process run mobanet:setup` with no parameters: the first set-up;
3. the same again: nothing to do;
4. after changing the engine's code (a plugin update): only the engine is upgraded;
5. `make wheelhouse` and a set-up from it with --no-index into another LOCATION, offline
   (no pip configuration, a dead proxy).

pip uses this machine's configuration and cache, so the numbers are for a warm
cache unless `--cold-cache` points pip at an empty cache folder. Writes
benchmarks/results/setup.md. Several GB are written under --work (default: a
temporary folder) and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from mobanet_qgis.engine_setup.environments import folder_size

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "setup.md"
QGIS_PROCESS = "/usr/bin/qgis_process.bin"
DEAD_PROXY = "http://127.0.0.1:9"
GB = 1024 ** 3


def folder_gb(folder: Path) -> float:
    return folder_size(folder) / GB


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    print("+ " + " ".join(str(c) for c in command), flush=True)
    started = time.perf_counter()
    done = subprocess.run([str(c) for c in command], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done


def setup_results(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout[done.stdout.index("{"):])["results"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for profiles, environments and wheels")
    parser.add_argument("--cold-cache", action="store_true", help="give pip an empty cache (downloads everything)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mobanet-bench-setup-", dir=args.work))
    rows: list[tuple[str, float, str]] = []
    try:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "MOBANET_PYTHON", "VIRTUAL_ENV", "QGIS_OPTIONS_PATH")}
        runtime = work / "xdg"
        runtime.mkdir(mode=0o700)
        config = work / "qgis config"
        env.update(PATH="/usr/bin:/bin", QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(runtime),
                   QGIS_CUSTOM_CONFIG_PATH=str(config))
        if args.cold_cache:
            env["PIP_CACHE_DIR"] = str(work / "pip-cache")

        seconds, _ = timed(["make", "-s", "package", f"SYSTEM_PYTHON={sys.executable}"], dict(os.environ), ROOT)
        package = ROOT / "mobanet_qgis.zip"
        rows.append(("`make package`", seconds, f"zip {package.stat().st_size / 1e6:.1f} MB"))
        plugins = config / "profiles" / "default" / "python" / "plugins"
        plugins.mkdir(parents=True)
        zipfile.ZipFile(package).extractall(plugins)
        timed([QGIS_PROCESS, "plugins", "enable", "mobanet_qgis"], env, work)

        seconds, done = timed([QGIS_PROCESS, "--json", "run", "mobanet:setup"], env, work)
        first = setup_results(done)
        rows.append(("first set-up (no parameters)", seconds,
                     f"environment {first['SIZE_GB']:.2f} GB, torch {first['TORCH_VERSION']}"))
        seconds, done = timed([QGIS_PROCESS, "--json", "run", "mobanet:setup"], env, work)
        rows.append(("repeat (nothing to do)", seconds, setup_results(done)["ACTION"]))

        init = plugins / "mobanet_qgis" / "engine" / "mobanet" / "__init__.py"
        init.write_text(init.read_text() + "# a plugin update\n")
        seconds, done = timed([QGIS_PROCESS, "--json", "run", "mobanet:setup"], env, work)
        rows.append(("after a plugin update", seconds, setup_results(done)["ACTION"]))

        wheelhouse = work / "wheelhouse"
        seconds, _ = timed(["make", "-s", "wheelhouse", f"WHEELHOUSE={wheelhouse}", f"SYSTEM_PYTHON={sys.executable}"],
                           dict(os.environ), ROOT)
        wheels = list(wheelhouse.glob("*.whl"))
        rows.append(("`make wheelhouse`", seconds, f"{len(wheels)} wheels, {folder_gb(wheelhouse):.2f} GB"))
        offline = {k: v for k, v in env.items()
                   if not k.startswith("PIP_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        offline.update(PIP_CONFIG_FILE=os.devnull, HTTP_PROXY=DEAD_PROXY, HTTPS_PROXY=DEAD_PROXY)
        seconds, done = timed([QGIS_PROCESS, "--json", "run", "mobanet:setup", "--",
                               f"LOCATION={work / 'shared'}", f"WHEELHOUSE={wheelhouse}"], offline, work)
        rows.append(("wheelhouse install (offline, --no-index)", seconds,
                     f"environment {setup_results(done)['SIZE_GB']:.2f} GB"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    lines = [
        "# `mobanet:setup` benchmark", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. pip cache: {'empty' if args.cold_cache else 'warm'}. "
        "Command: `python -m benchmarks.bench_setup" + (" --cold-cache" if args.cold_cache else "") + "`.", "",
        "Wall time of each command (qgis_process included, which starts QGIS in about 3 s). Where pip's index is "
        "a local mirror (as on the development machine) the set-up times are resolve-unpack-install times; over "
        "the internet add the download of the wheels (the wheelhouse size below).", "",
        "| step | seconds | result |", "|---|---|---|",
        *[f"| {name} | {seconds:.1f} | {note} |" for name, seconds, note in rows], ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
