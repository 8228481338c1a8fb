"""`mobanet:setup` for real, as a person who installed the plugin from its zip would run it.

A fresh QGIS profile (QGIS_CUSTOM_CONFIG_PATH in a temporary folder) gets the
plugin unpacked from the zip that `make package` builds; no repository .venv
is in reach and the PATH has no Python with torch. Everything runs through
`qgis_process` with real pip (this machine's pip configuration and cache).
torch makes an environment about 5 GB, so the module builds one and runs its
checks in order against it:

1. segment before the set-up fails at once with the one sentence that names the fix;
2. the set-up with no parameters builds the environment in the profile;
3. segment then works with no other setting;
4. a second set-up is a no-op;
5. after a plugin update the set-up upgrades only the engine;
6. `make wheelhouse` + the set-up with WHEELHOUSE installs with --no-index, offline, into a shared LOCATION;
7. a set-up cancelled while pip unpacks torch leaves the earlier environment active and working.

Times and disk of these runs are measured by benchmarks/bench_setup.py, not here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from osgeo import gdal

from mobanet_qgis.engine_setup.sources import EngineSource, requirement_name
from mobanet_qgis.engine_setup.torch_build import detect_nvidia_gpus

ROOT = Path(__file__).resolve().parents[2]
QGIS_PROCESS = "/usr/bin/qgis_process.bin"
CLEAN_PATH = "/usr/bin:/bin"
SETUP_TIMEOUT_S = 1800
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens there: any network use fails

pytestmark = pytest.mark.slow


@dataclass
class Profile:
    """A QGIS profile with the plugin from the zip, and the environment qgis_process runs in."""

    config: Path
    plugin: Path
    work: Path
    env: dict[str, str]

    @property
    def default_location(self) -> Path:
        return self.config / "profiles" / "default" / "mobanet" / "engine"

    def run(self, algorithm: str, parameters: dict[str, object], extra_env: dict[str, str] | None = None,
            timeout: float = SETUP_TIMEOUT_S) -> subprocess.CompletedProcess:
        arguments = [f"{key}={value}" for key, value in parameters.items()]
        return subprocess.run([QGIS_PROCESS, "--json", "run", algorithm, "--", *arguments],
                              env={**self.env, **(extra_env or {})}, capture_output=True, text=True,
                              timeout=timeout, cwd=self.work)


def _report(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return json.loads(run.stdout[run.stdout.index("{"):])


def _log(report: dict) -> str:
    return "\n".join(line for lines in report.get("log", {}).values() for line in lines)


def _offline_env(profile: Profile) -> dict[str, str]:
    """No pip configuration (no indexes, no find-links) and a dead proxy: only the wheelhouse can serve."""
    env = {key: value for key, value in profile.env.items()
           if not key.startswith("PIP_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY,
            "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY}


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> Profile:
    work = tmp_path_factory.mktemp("setup-e2e")
    package = work / "mobanet_qgis.zip"
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_package.py"), "--output", str(package)], check=True)
    config = work / "qgis config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(package).extractall(plugins)
    runtime = work / "xdg"
    runtime.mkdir(mode=0o700)
    hidden = ("PYTHONPATH", "PYTHONHOME", "MOBANET_PYTHON", "VIRTUAL_ENV", "QGIS_OPTIONS_PATH")
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    env.update(PATH=CLEAN_PATH, QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(runtime),
               QGIS_CUSTOM_CONFIG_PATH=str(config))
    # The premise: no Python on this PATH has torch, and no repository .venv is beside the plugin.
    for python in ("python3", "python"):
        found = shutil.which(python, path=CLEAN_PATH)
        if found:
            assert subprocess.run([found, "-c", "import torch"], env=env, capture_output=True).returncode != 0
    assert not (plugins / ".venv").exists()
    enabled = subprocess.run([QGIS_PROCESS, "plugins", "enable", "mobanet_qgis"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    yield Profile(config, plugins / "mobanet_qgis", work, env)
    shutil.rmtree(work, ignore_errors=True)  # several GB of environments and wheels


@pytest.fixture(scope="module")
def first_setup(profile) -> dict:
    return _report(profile.run("mobanet:setup", {}))


def _segment(profile: Profile, scene: dict[str, Path], output: Path) -> subprocess.CompletedProcess:
    return profile.run("mobanet:segment", {"OPTICAL": scene["optical"], "DSM": scene["dsm"], "OUTPUT": output},
                       timeout=600)


def _check_classified(output: Path, optical: Path) -> None:
    classified, reference = gdal.Open(str(output)), gdal.Open(str(optical))
    assert (classified.RasterXSize, classified.RasterYSize) == (reference.RasterXSize, reference.RasterYSize)
    assert classified.GetGeoTransform() == reference.GetGeoTransform()


def test_segment_before_setup_fails_at_once_with_the_sentence(profile, scene):
    from mobanet_qgis.engine_process import NOT_SET_UP

    output = profile.work / "before.tif"
    run = profile.run("mobanet:segment", {"OPTICAL": scene["optical"], "DSM": scene["dsm"], "OUTPUT": output},
                      timeout=120)
    assert run.returncode != 0
    assert NOT_SET_UP in run.stdout + run.stderr and "mobanet:setup" in NOT_SET_UP
    assert "Traceback" not in run.stdout + run.stderr
    assert not output.exists()


def test_setup_builds_the_environment_in_the_profile(profile, first_setup):
    results = first_setup["results"]
    assert results["ACTION"] == "built"
    environment = Path(results["ENVIRONMENT"])
    assert environment.parent == profile.default_location
    assert Path(results["PYTHON"]) == environment / "bin" / "python"
    pins = {requirement_name(line): line.split("==")[1] for line in EngineSource(ROOT / "engine").requirements().lines
            if "==" in line}
    assert results["ENGINE_VERSION"].startswith("0.1.0+") and results["TORCH_VERSION"].startswith(pins["torch"])
    assert results["TIMM_VERSION"] == pins["timm"] and results["GDAL_VERSION"] == gdal.__version__
    assert results["PYTHON_VERSION"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")
    gpus = detect_nvidia_gpus()
    assert results["CUDA_AVAILABLE"] is bool(gpus) and results["FREE_DISK_GB"] > 0 and results["SIZE_GB"] > 0.5
    # A virtual environment of QGIS's own Python that sees QGIS's GDAL; QGIS's Python itself is untouched.
    config = (environment / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in config and f"home = {Path(sys.base_prefix) / 'bin'}" in config
    assert subprocess.run(["/usr/bin/python3", "-s", "-c", "import torch"], capture_output=True).returncode != 0
    # DEVICE auto: with a GPU the CUDA build; without, the CPU build from PyTorch's CPU index or, where that is
    # unreachable (as on the development machine), pip's index with a warning.
    log = _log(first_setup)
    torch_cuda = json.loads((environment / "mobanet-setup.json").read_text())["torch_cuda"]
    if gpus:
        assert "NVIDIA GPU found" in log and torch_cuda and results["GPU"]
    else:
        assert "no NVIDIA GPU found" in log and "https://download.pytorch.org/whl/cpu" in log
        assert torch_cuda is None or "could not be" in log
    assert (profile.default_location / "active").read_text().strip() == environment.name


def test_segment_works_after_setup_with_no_other_setting(profile, first_setup, scene):
    output = profile.work / "after.tif"
    _report(_segment(profile, scene, output))
    _check_classified(output, scene["optical"])


def test_a_second_setup_has_nothing_to_do(profile, first_setup):
    environment = Path(first_setup["results"]["ENVIRONMENT"])
    built = json.loads((environment / "mobanet-setup.json").read_text())["built"]
    python_mtime = (environment / "bin" / "python").lstat().st_mtime_ns
    again = _report(profile.run("mobanet:setup", {}))
    assert again["results"]["ACTION"] == "up to date" and "nothing to install" in _log(again)
    assert again["results"]["ENVIRONMENT"] == str(environment)
    assert json.loads((environment / "mobanet-setup.json").read_text())["built"] == built
    assert (environment / "bin" / "python").lstat().st_mtime_ns == python_mtime
    assert [p.name for p in profile.default_location.iterdir() if p.name.startswith("env-")] == [environment.name]


def test_a_plugin_update_upgrades_only_the_engine(profile, first_setup):
    init = profile.plugin / "engine" / "mobanet" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.1.1"'))
    upgraded = _report(profile.run("mobanet:setup", {}))
    assert upgraded["results"]["ACTION"] == "engine upgraded"
    assert upgraded["results"]["ENVIRONMENT"] == first_setup["results"]["ENVIRONMENT"]
    assert upgraded["results"]["ENGINE_VERSION"].startswith("0.1.1+")


@pytest.fixture(scope="module")
def wheelhouse(profile) -> Path:
    folder = profile.work / "wheel house"
    made = subprocess.run(["make", "-s", "wheelhouse", f"WHEELHOUSE={folder}", f"SYSTEM_PYTHON={sys.executable}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S,
                          env={**profile.env, "PATH": os.environ["PATH"]})
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    assert json.loads((folder / "wheelhouse.json").read_text())["python_version"] == (
        f"{sys.version_info[0]}.{sys.version_info[1]}")
    projects = [wheel.name.split("-")[0].lower() for wheel in folder.glob("*.whl")]
    assert sorted(set(projects)) == sorted(projects), "one version of each project, as pinned"
    assert [w.name for w in folder.glob("torch-*.whl")][0].startswith("torch-2.14.1")
    assert {"timm", "pip", "safetensors"} <= set(projects)
    return folder


@pytest.fixture(scope="module")
def shared_setup(profile, wheelhouse) -> dict:
    location = profile.work / "team share" / "mobanet engine"
    report = _report(profile.run("mobanet:setup", {"LOCATION": location, "WHEELHOUSE": wheelhouse},
                                 extra_env=_offline_env(profile)))
    return report


def test_wheelhouse_installs_offline_into_a_shared_location(profile, wheelhouse, shared_setup, scene):
    results = shared_setup["results"]
    environment = Path(results["ENVIRONMENT"])
    assert results["ACTION"] == "built" and environment.parent == profile.work / "team share" / "mobanet engine"
    stamp = json.loads((environment / "mobanet-setup.json").read_text())
    assert stamp["installed_from"] == str(wheelhouse)
    # The profile now uses the shared environment, with no other setting.
    output = profile.work / "shared.tif"
    segmented = _segment(profile, scene, output)
    _report(segmented)
    assert str(environment / "bin" / "python") in segmented.stdout
    _check_classified(output, scene["optical"])


def test_a_cancelled_setup_leaves_the_earlier_environment_working(profile, wheelhouse, shared_setup, scene):
    """Cancel (qgis_process turns SIGINT into the dialog's Cancel) while pip unpacks torch into a rebuild."""
    location = Path(shared_setup["results"]["ENVIRONMENT"]).parent
    before = sorted(p.name for p in location.iterdir())
    active = (location / "active").read_text()
    process = subprocess.Popen(
        [QGIS_PROCESS, "run", "mobanet:setup", "--", f"WHEELHOUSE={wheelhouse}", "REBUILD=true"],
        env={**profile.env, **_offline_env(profile)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=profile.work, start_new_session=True)
    output, cancelled = [], False
    try:
        for line in process.stdout:
            output.append(line)
            if not cancelled and line.startswith("Installing collected packages:") and "torch" in line:
                process.send_signal(signal.SIGINT)  # to qgis_process only: the set-up must stop pip itself
                cancelled = True
        returncode = process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(output)
    assert cancelled, text[-3000:]
    assert returncode != 0 and "Set-up cancelled" in text, text[-3000:]
    assert "Removing the unfinished environment" in text
    assert (location / "active").read_text() == active
    assert sorted(p.name for p in location.iterdir()) == before  # the half-built one is gone
    pips = subprocess.run(["pgrep", "-f", f"{location}/env-.*pip"], capture_output=True, text=True)
    assert pips.stdout.strip() == ""  # pip was stopped, not left running
    output_raster = profile.work / "after-cancel.tif"
    _report(_segment(profile, scene, output_raster))
    _check_classified(output_raster, scene["optical"])
