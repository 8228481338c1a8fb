"""Build a wheelhouse: every wheel `mobanet:setup` needs, for installing on a machine without internet.

Runs ``pip download`` (with your pip configuration: index, proxy, certificates)
for the engine's pinned requirements (``engine/requirements.txt``), their
dependencies and a current pip, for a target platform and Python version, and
writes ``wheelhouse.json`` describing the target. Copy the folder to the
offline machine and run "MoBaNet -> Set up the engine" with WHEELHOUSE set to
it (pip then installs with ``--no-index --find-links``).

Examples (``make wheelhouse`` passes PLATFORM, PYTHON_VERSION and DEVICE)::

    python3 tools/build_wheelhouse.py --output wheelhouse                      # this machine, CPU build
    python3 tools/build_wheelhouse.py --output wh --platform manylinux_2_28_x86_64 --python-version 3.11
    python3 tools/build_wheelhouse.py --output wh --platform win_amd64 --python-version 3.12 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform as host_platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mobanet_qgis.engine_setup.installer import PIP_MINIMUM, WHEELHOUSE_MANIFEST  # noqa: E402
from mobanet_qgis.engine_setup.sources import EngineSource  # noqa: E402
from mobanet_qgis.engine_setup.torch_build import plan_torch  # noqa: E402


def target_os(platforms: list[str]) -> str:
    """sys.platform of the target ('linux', 'win32', 'darwin') from pip platform tags (none: this machine)."""
    if not platforms:
        return sys.platform
    tag = platforms[0]
    if tag.startswith("win"):
        return "win32"
    if tag.startswith("macosx"):
        return "darwin"
    return "linux"


def pip_download(requirements: list[str], output: Path, target: list[str], extra: list[str]) -> int:
    command = [sys.executable, "-m", "pip", "download", "--dest", str(output), *target, *extra, *requirements]
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="folder to fill with wheels")
    parser.add_argument("--platform", action="append", default=[],
                        help="pip platform tag of the target, e.g. manylinux_2_28_x86_64, win_amd64, "
                             "macosx_11_0_arm64 (repeatable; default: this machine)")
    parser.add_argument("--python-version", default="",
                        help="the target QGIS's Python as X.Y, e.g. 3.12 (default: the Python running this script)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch build (default: cpu)")
    parser.add_argument("--index-url", default="", help="where torch comes from (default: as mobanet:setup)")
    args = parser.parse_args()

    python_version = args.python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"
    target: list[str] = []
    if args.platform or args.python_version:
        target = [f"--platform={tag}" for tag in args.platform] + [
            f"--python-version={python_version}", "--implementation=cp", "--only-binary=:all:"]
    requirements = EngineSource(ROOT / "engine").requirements()
    plan = plan_torch(args.device, [], args.index_url, target_os(args.platform))
    print(plan.reason, flush=True)
    args.output.mkdir(parents=True, exist_ok=True)

    index = ["--index-url", plan.index_url] if plan.index_url else []
    if pip_download(requirements.torch, args.output, target, index) != 0:
        if not (index and plan.fallback):
            raise SystemExit(f"pip could not download {' '.join(requirements.torch)}")
        print(f"warning: {plan.index_url} failed; downloading torch from pip's own index instead", flush=True)
        if pip_download(requirements.torch, args.output, target, []) != 0:
            raise SystemExit(f"pip could not download {' '.join(requirements.torch)}")
    # The other requirements depend on torch too (timm): hold them to the torch already downloaded, which
    # --find-links offers (a CPU build from PyTorch's index carries a +cpu label that pip's index lacks).
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "torch-constraints.txt"
        constraints.write_text("\n".join(requirements.torch) + "\n", encoding="utf-8")
        pinned = ["-c", str(constraints), "--find-links", str(args.output)]
        if pip_download([*requirements.others, f"pip>={PIP_MINIMUM}"], args.output, target, pinned) != 0:
            raise SystemExit("pip could not download the engine's other requirements")

    manifest = {"python_version": python_version, "platforms": args.platform or [host_platform.platform()],
                "device": args.device, "requirements_sha256": requirements.sha256,
                "made": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (args.output / WHEELHOUSE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    wheels = sorted(args.output.glob("*.whl"))
    size = sum(path.stat().st_size for path in wheels)
    print(f"{args.output}: {len(wheels)} wheels, {size / 1024 ** 3:.2f} GB, for Python {python_version} "
          f"({', '.join(manifest['platforms'])}, {args.device})")


if __name__ == "__main__":
    main()
