"""One set-up: decide what the engine environment needs, do it, check it, report.

Three outcomes, cheapest first:

- **up to date**: the active environment was built on the same QGIS Python,
  with the same requirements and a suitable torch build, holds this plugin's
  engine and passes the check: nothing is installed (seconds);
- **engine upgraded**: only the engine's code changed (a plugin update): the
  engine wheel is reinstalled into the active environment (seconds);
- **built**: anything else (first set-up, new requirements, another torch
  build, QGIS's Python changed, a failed check, REBUILD): a new environment
  is built beside the active one and becomes active only once complete and
  checked; on cancel or failure it is deleted and the old one stays active.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mobanet_qgis.engine_setup.base_python import BasePython, find_base_python
from mobanet_qgis.engine_setup.check import GIB, CheckReport, check_environment
from mobanet_qgis.engine_setup.engine_wheel import build_engine_wheel, wheel_version
from mobanet_qgis.engine_setup.environments import (
    Environment,
    Location,
    folder_size,
    free_space,
    remove_tree,
)
from mobanet_qgis.engine_setup.feedback import ProgressBand, SetupError, SetupFeedback
from mobanet_qgis.engine_setup.network import Proxy, pip_environment, python_environment
from mobanet_qgis.engine_setup.pip_runner import RAW_PROGRESS_PIP, PipFailed, pip_install, pip_version, run_streamed
from mobanet_qgis.engine_setup.sources import PLUGIN_DIR, EngineSource, Requirements, find_engine_source
from mobanet_qgis.engine_setup.torch_build import TorchPlan, detect_nvidia_gpus, plan_torch

PIP_MINIMUM = "24.2"  # raw progress lines, and the system's certificate store (truststore) by default
WHEELHOUSE_MANIFEST = "wheelhouse.json"
# PyTorch's own index is tried with little patience when pip's index can stand in for it: a firewall that
# drops packets would otherwise hold the set-up for pip's full retries x timeout before the fall-back.
OPTIONAL_INDEX_PATIENCE = ["--retries", "1", "--timeout", "20"]
CONSTRAINTS_FILE = "constraints.txt"
# Disk a build needs (pip unpacks beside what it installs): a CUDA torch takes about 6 GB, a CPU one 1 GB.
# On Linux a CPU build may fall back to PyPI's torch, which is the CUDA build.
DISK_NEEDED_CUDA_GB = 8.0
DISK_NEEDED_CPU_GB = 3.0


@dataclass(frozen=True)
class SetupRequest:
    """The parameters of mobanet:setup."""

    location: Path
    device: str = "auto"
    index_url: str = ""
    wheelhouse: Path | None = None
    rebuild: bool = False
    proxy: Proxy | None = None


@dataclass
class SetupResult:
    environment: Environment
    report: CheckReport
    action: str  # "up to date", "engine upgraded" or "built"
    seconds: float
    size_bytes: int


def staleness(stamp: dict[str, Any], source: EngineSource) -> str | None:
    """Why an environment no longer fits this plugin (its requirements changed), or None."""
    if stamp.get("requirements_sha256") != source.requirements().sha256:
        return "it was set up for other requirements (an earlier or later plugin version)"
    return None


def _rebuild_reason(stamp: dict[str, Any], base: BasePython, requirements: Requirements, plan: TorchPlan) -> str | None:
    """Why the active environment cannot be kept, or None when it can."""
    if stamp.get("base_python") != str(base.executable) or stamp.get("python_version") != base.version:
        return f"QGIS now runs Python {base.version} ({base.executable})"
    if stamp.get("requirements_sha256") != requirements.sha256:
        return "the plugin's requirements changed"
    if plan.build == "cuda" and not stamp.get("torch_cuda"):
        return "it has a CPU build of torch and a CUDA build is wanted"
    return None


class Installer:
    """Runs one set-up request; see the module docstring."""

    def __init__(self, request: SetupRequest, feedback: SetupFeedback, source: EngineSource | None = None):
        self.request = request
        self.feedback = feedback
        self.source = source or find_engine_source()
        self.location = Location(request.location)

    def run(self) -> SetupResult:
        started = time.monotonic()
        self._check_location()
        requirements = self.source.requirements()
        self._check_wheelhouse()
        if not _writable(self.location.folder):
            environment, report, action = self._adopt_read_only(requirements)
        else:
            with self.location.lock():
                environment, report, action = self._set_up(requirements)
        self.feedback.setProgress(100.0)
        return SetupResult(environment, report, action, time.monotonic() - started, folder_size(environment.folder))

    def _set_up(self, requirements: Requirements) -> tuple[Environment, CheckReport, str]:
        self._remove_leftovers()
        base, plan = self._base_and_plan()
        active = self.location.active()
        outcome = None
        if active is not None and not self.request.rebuild:
            outcome = self._keep(active, base, requirements, plan)
        if outcome is None:
            environment, report = self._build(base, requirements, plan, previous=active)
            outcome = environment, report, "built"
        self._report_torch(plan, outcome[1])
        return outcome

    def _adopt_read_only(self, requirements: Requirements) -> tuple[Environment, CheckReport, str]:
        """A LOCATION this user may not change (a team's shared folder): use its environment when it fits."""
        base, plan = self._base_and_plan()
        active = self.location.active()
        report = None
        if active is None:
            problem = "it holds no complete environment"
        elif self.request.rebuild:
            problem = "REBUILD would change it"
        else:
            stamp = active.stamp() or {}
            problem = _rebuild_reason(stamp, base, requirements, plan)
            if problem is None and stamp.get("engine_sha256") != self.source.sha256():
                problem = "its engine is not this plugin's"
        if problem is None:
            report = check_environment(active)
            if not report.ok:
                problem = f"its environment does not work ({_errors(report)})"
        if problem is not None or report is None:
            raise SetupError(
                f"{self.location.folder} is read-only for you and needs changes ({problem}): ask whoever manages "
                "that folder to run the set-up there, or choose a LOCATION you can write to.")
        self.feedback.pushInfo(f"Using the environment {active.folder} (the folder is read-only for you).")
        self._report_torch(plan, report)
        return active, report, "up to date"

    def _base_and_plan(self) -> tuple[BasePython, TorchPlan]:
        self.feedback.setProgressText("Finding QGIS's Python and the GPU")
        base = find_base_python()
        self.feedback.pushInfo(f"QGIS's Python: {base.executable} ({base.version}, numpy {base.numpy or 'none'})")
        self._check_wheelhouse_python(base)
        plan = plan_torch(self.request.device, detect_nvidia_gpus(), self.request.index_url)
        self.feedback.pushInfo(plan.reason)
        return base, plan

    # -- keeping the active environment ----------------------------------------------------------
    def _keep(self, active: Environment, base: BasePython, requirements: Requirements,
              plan: TorchPlan) -> tuple[Environment, CheckReport, str] | None:
        stamp = active.stamp() or {}
        reason = _rebuild_reason(stamp, base, requirements, plan)
        if reason:
            self.feedback.pushInfo(f"Building a new environment because {reason}.")
            return None
        action = "up to date"
        if stamp.get("engine_sha256") != self.source.sha256():
            self.feedback.pushInfo(f"Upgrading the engine in {active.folder} to {wheel_version(self.source)}.")
            self._install_engine(active, ProgressBand(self.feedback, 5, 80))
            stamp.update(engine_sha256=self.source.sha256(), engine_version=wheel_version(self.source))
            action = "engine upgraded"
        self.feedback.setProgressText("Checking the environment")
        report = check_environment(active)
        if not report.ok:
            self.feedback.pushWarning(f"The environment {active.folder} is broken ({_errors(report)}); "
                                      "building a new one.")
            return None
        if action == "up to date":
            self.feedback.pushInfo(f"The engine environment {active.folder} is up to date; nothing to install.")
        stamp.update(updated=_now(), report=report.to_dict())
        active.write_stamp({k: v for k, v in stamp.items() if k != "format"})
        return active, report, action

    def _install_engine(self, environment: Environment, band: ProgressBand) -> None:
        env, _ = pip_environment(environment.python, self.request.proxy)
        with tempfile.TemporaryDirectory(prefix="mobanet-engine-") as folder:
            wheel = build_engine_wheel(self.source, Path(folder))
            pip_install(environment.python, ["--no-deps", "--force-reinstall", str(wheel)], env, self.feedback, band,
                        "the engine", pip_version(environment.python, env) >= RAW_PROGRESS_PIP)

    # -- building a new environment --------------------------------------------------------------
    def _build(self, base: BasePython, requirements: Requirements, plan: TorchPlan,
               previous: Environment | None) -> tuple[Environment, CheckReport]:
        self._check_free_space(plan)
        environment = self.location.new_environment()
        self.feedback.pushInfo(f"Building the engine environment in {environment.folder}")
        try:
            report = self._build_into(environment, base, requirements, plan)
            environment.write_stamp({
                "base_python": str(base.executable), "python_version": base.version,
                "requirements_sha256": requirements.sha256, "torch_build": plan.build,
                "torch_cuda": report.torch_cuda, "engine_sha256": self.source.sha256(),
                "engine_version": wheel_version(self.source), "numpy": base.numpy,
                "installed_from": str(self.request.wheelhouse) if self.request.wheelhouse else "package indexes",
                "built": _now(), "updated": _now(), "report": report.to_dict()})
            self.location.activate(environment)
        except BaseException:
            self.feedback.pushInfo(f"Removing the unfinished environment {environment.folder}")
            remove_tree(environment.folder)
            raise
        self.feedback.pushInfo(f"The engine environment {environment.folder} is now active.")
        if previous is not None:
            self._remove(previous.folder, "the previous environment")
        return environment, report

    def _build_into(self, environment: Environment, base: BasePython, requirements: Requirements,
                    plan: TorchPlan) -> CheckReport:
        self.feedback.setProgressText("Creating the virtual environment")
        code, output = run_streamed([str(base.executable), "-m", "venv", "--system-site-packages",
                                     str(environment.folder)], python_environment(), self.feedback)
        if code != 0 or not environment.python.is_file():
            last = next((line for line in reversed(output) if line.strip()), "no output")
            raise SetupError(f"{base.executable} could not create a virtual environment in {environment.folder} "
                             f"({last}); check that the folder is writable, or choose another LOCATION.")
        self.feedback.setProgress(4)
        python = environment.python
        env, network = pip_environment(python, self.request.proxy)
        self.feedback.pushInfo(network)
        source_options = self._source_options()

        self.feedback.setProgressText("Upgrading pip")
        try:
            pip_install(python, ["--upgrade", f"pip>={PIP_MINIMUM}", *source_options], env, self.feedback,
                        ProgressBand(self.feedback, 4, 8), "pip", False)
        except PipFailed as error:
            self.feedback.pushWarning(f"Keeping the pip that came with QGIS's Python ({error.reason}).")
        raw = pip_version(python, env) >= RAW_PROGRESS_PIP

        constraints = environment.folder / CONSTRAINTS_FILE
        # The engine must use the numpy that QGIS's GDAL bindings were built against.
        constraints.write_text(f"numpy=={base.numpy}\n" if base.numpy else "", encoding="utf-8")
        self._install_torch(python, requirements, plan, env, source_options, raw)

        with tempfile.TemporaryDirectory(prefix="mobanet-engine-") as folder:
            wheel = build_engine_wheel(self.source, Path(folder))
            pip_install(python, [*requirements.others, str(wheel), "-c", str(constraints), *source_options], env,
                        self.feedback, ProgressBand(self.feedback, 75, 92), "the engine and its requirements", raw)

        self.feedback.setProgressText("Checking the new environment")
        report = check_environment(environment)
        self.feedback.setProgress(98)
        if not report.ok:
            raise SetupError(f"The new engine environment does not work ({_errors(report)}); see pip's output "
                             "above in the log, and run the set-up again with REBUILD.")
        return report

    def _install_torch(self, python: Path, requirements: Requirements, plan: TorchPlan, env: dict[str, str],
                       source_options: list[str], raw: bool) -> None:
        if not requirements.torch:
            return
        band = ProgressBand(self.feedback, 8, 75)
        what = " and ".join(requirements.torch)
        index_options = ["--index-url", plan.index_url] if plan.index_url and not self.request.wheelhouse else []
        if index_options and plan.fallback:
            index_options += OPTIONAL_INDEX_PATIENCE
        self.feedback.setProgressText(f"Installing {what}")
        try:
            progress = pip_install(python, [*requirements.torch, *index_options, *source_options], env,
                                   self.feedback, band, what, raw)
        except PipFailed as error:
            if not (index_options and plan.fallback):
                raise
            self.feedback.pushWarning(f"torch could not be installed from {plan.index_url} ({error.reason}); "
                                      "installing it from pip's own index instead.")
            pip_install(python, [*requirements.torch, *source_options], env, self.feedback, band, what, raw)
            return
        host = urlsplit(plan.index_url).hostname if index_options else None
        unreachable = [line for line in progress.network_trouble if host and host in line]
        if unreachable:
            self.feedback.pushWarning(f"{plan.index_url} could not be reached ({unreachable[-1]}); pip took torch "
                                      "from its other indexes instead.")

    def _source_options(self) -> list[str]:
        if self.request.wheelhouse is None:
            return []
        return ["--no-index", "--find-links", str(self.request.wheelhouse)]

    # -- checks and reports ----------------------------------------------------------------------
    def _check_location(self) -> None:
        location = self.location.folder.absolute()
        if location == PLUGIN_DIR or PLUGIN_DIR in location.parents:
            raise SetupError(f"The LOCATION {location} is inside the plugin folder, which plugin updates replace; "
                             "choose a folder outside it (or leave LOCATION empty).")
        existing = next((p for p in (location, *location.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise SetupError(f"The LOCATION {location} cannot be a folder because {existing} is a file; choose "
                             "another LOCATION.")

    def _check_wheelhouse(self) -> None:
        wheelhouse = self.request.wheelhouse
        if wheelhouse is None:
            return
        if not wheelhouse.is_dir() or not any(wheelhouse.glob("*.whl")):
            raise SetupError(f"The WHEELHOUSE folder {wheelhouse} holds no wheels (*.whl); make one with "
                             "`make wheelhouse` on a machine with internet access and copy it here.")

    def _check_wheelhouse_python(self, base: BasePython) -> None:
        wheelhouse = self.request.wheelhouse
        if wheelhouse is None or not (wheelhouse / WHEELHOUSE_MANIFEST).is_file():
            return
        try:
            manifest = json.loads((wheelhouse / WHEELHOUSE_MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        made_for = str(manifest.get("python_version") or "")
        if made_for and made_for != base.major_minor:
            raise SetupError(
                f"The WHEELHOUSE {wheelhouse} was made for Python {made_for} but QGIS runs Python "
                f"{base.major_minor}; make it again with `make wheelhouse PYTHON_VERSION={base.major_minor}`.")

    def _check_free_space(self, plan: TorchPlan) -> None:
        cuda_possible = plan.build == "cuda" or sys.platform.startswith("linux")
        needed = DISK_NEEDED_CUDA_GB if cuda_possible else DISK_NEEDED_CPU_GB
        free = free_space(self.location.folder) / GIB
        if free < needed:
            raise SetupError(f"{self.location.folder} has {free:.1f} GB free but the engine environment needs about "
                             f"{needed:.0f} GB while it is built; free some space or choose another LOCATION.")

    def _remove_leftovers(self) -> None:
        for folder in self.location.leftovers():
            self._remove(folder, "a leftover environment")

    def _remove(self, folder: Path, what: str) -> None:
        size = folder_size(folder)
        if remove_tree(folder):
            self.feedback.pushInfo(f"Removed {what} {folder} ({size / GIB:.1f} GB).")
        else:
            self.feedback.pushWarning(f"Could not remove all of {what} {folder} (in use?); the next set-up "
                                      "tries again.")

    def _report_torch(self, plan: TorchPlan, report: CheckReport) -> None:
        for line in report.lines():
            self.feedback.pushInfo(line)
        if plan.build == "cpu" and report.torch_cuda:
            self.feedback.pushWarning(
                f"This is torch's CUDA {report.torch_cuda} build (the CPU build was not available): it runs on the "
                "CPU too, and takes about 4 GB more disk.")
        if plan.build == "cuda" and not report.torch_cuda:
            self.feedback.pushWarning(
                "This is torch's CPU build, so the GPU will not be used: run the set-up again with INDEX_URL set to "
                "a PyTorch CUDA index (e.g. https://download.pytorch.org/whl/cu130) and REBUILD.")
        elif plan.build == "cuda" and not report.cuda_available:
            self.feedback.pushWarning(
                f"torch's CUDA {report.torch_cuda} build does not see a GPU: update the NVIDIA driver to one that "
                f"supports CUDA {report.torch_cuda}, then run the set-up again.")


def _writable(folder: Path) -> bool:
    """Whether this user can create files in `folder` (or create it, when it does not exist yet)."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    return os.access(existing, os.W_OK | os.X_OK)


def _errors(report: CheckReport) -> str:
    return "; ".join(f"{name}: {message}" for name, message in report.errors.items())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_setup(request: SetupRequest, feedback: SetupFeedback) -> SetupResult:
    """Set up (or check) the engine environment at request.location; raises SetupError/SetupCancelled."""
    try:
        return Installer(request, feedback).run()
    except OSError as error:  # the disk, not the code: permissions, a full disk, a vanished share
        where = error.filename or request.location
        raise SetupError(f"The set-up could not write {where} ({error.strerror or error}); check that folder's "
                         "permissions and free space, or choose another LOCATION.") from error

