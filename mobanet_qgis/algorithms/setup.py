"""`mobanet:setup`: build (or check, repair, upgrade) the engine's private Python environment.

For people who install the plugin from the Plugin Manager: one run gives the
engine its own environment with torch, timm and the engine itself, and every
other MoBaNet algorithm finds it by itself. The work is done by
``mobanet_qgis.engine_setup``; this class only turns parameters into a
SetupRequest and the result into outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from mobanet_qgis.algorithms.base import MobanetHelp
from mobanet_qgis.compat import ProcessingFileParameterBehavior
from mobanet_qgis.engine_setup.feedback import SetupError
from mobanet_qgis.engine_setup.installer import SetupRequest, SetupResult, run_setup
from mobanet_qgis.engine_setup.qgis_settings import engine_location, qgis_proxy, remember_location
from mobanet_qgis.engine_setup.torch_build import CUDA_INDEX, DEVICES

FOLDER = ProcessingFileParameterBehavior.Folder

# Output name -> (description, kind); values come from `_outputs`.
OUTPUTS = {
    "ENVIRONMENT": ("Engine environment folder", QgsProcessingOutputFolder),
    "PYTHON": ("Engine Python", QgsProcessingOutputString),
    "ACTION": ("What the set-up did (built, engine upgraded, up to date)", QgsProcessingOutputString),
    "ENGINE_VERSION": ("Engine version", QgsProcessingOutputString),
    "PYTHON_VERSION": ("Python version", QgsProcessingOutputString),
    "TORCH_VERSION": ("torch version", QgsProcessingOutputString),
    "CUDA_AVAILABLE": ("CUDA available", QgsProcessingOutputBoolean),
    "GPU": ("GPU name (empty without CUDA)", QgsProcessingOutputString),
    "TIMM_VERSION": ("timm version", QgsProcessingOutputString),
    "GDAL_VERSION": ("GDAL version", QgsProcessingOutputString),
    "FREE_DISK_GB": ("Free disk at the environment (GB)", QgsProcessingOutputNumber),
    "SIZE_GB": ("Size of the environment (GB)", QgsProcessingOutputNumber),
}


class SetupAlgorithm(MobanetHelp):
    def name(self) -> str:
        return "setup"

    def displayName(self) -> str:
        return "Set up the engine"

    def shortDescription(self) -> str:
        return "Installs torch, timm and the MoBaNet engine into a private Python environment (run once)."

    def tags(self) -> list[str]:
        return ["install", "setup", "dependencies", "torch", "pytorch", "cuda", "gpu", "pip", "offline", "mobanet"]

    def summary(self) -> str:
        return ("Run this once after installing the plugin: it builds the engine's own Python environment (torch, "
                "timm and the MoBaNet engine) with pip, based on the Python that QGIS runs so that it sees QGIS's "
                "GDAL, without changing QGIS's own Python. The other MoBaNet algorithms then find it by themselves. "
                "A first set-up downloads up to 3 GB (the CUDA build of torch; the CPU build is much smaller), "
                "needs up to 6 GB of disk and takes some minutes; "
                "running it again checks the environment in seconds, upgrades the engine after a plugin update, "
                "and repairs a broken environment. A new environment is built beside the old one and replaces it "
                "only once complete, so Cancel leaves the previous one working. pip keeps its own configuration "
                "(pip.conf, PIP_INDEX_URL, PIP_CERT); QGIS's proxy (Settings > Options > Network) is used when pip "
                "has none. Offline: give a WHEELHOUSE folder made with `make wheelhouse`.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.add(QgsProcessingParameterFile("LOCATION", "Environment folder", behavior=FOLDER, optional=True),
                 "Where the environment is kept, outside the plugin folder so that plugin updates keep it; e.g. a "
                 "shared drive for a team (everyone runs the set-up once with the same folder). Empty: the folder "
                 "of the last set-up in this QGIS profile, at first 'mobanet/engine' in the profile folder.")
        # Values are the words themselves, so that scripts write DEVICE=cpu (qgis_process, processing.run).
        self.add(QgsProcessingParameterEnum("DEVICE", "Torch build", options=list(DEVICES), defaultValue="auto",
                                            usesStaticStrings=True),
                 "auto: the CUDA build of torch when nvidia-smi reports an NVIDIA GPU, else the CPU build (smaller). "
                 "cpu or cuda: that build; cuda prepares e.g. a shared environment for GPU machines.")
        self.add(QgsProcessingParameterString("INDEX_URL", "Package index for torch", optional=True),
                 "Where pip gets torch from instead of the default (PyTorch's CPU index on Linux without GPU, "
                 f"its CUDA index on Windows with GPU, else pip's own index), e.g. {CUDA_INDEX} or a company "
                 "mirror. The other packages come from pip's configured index.", advanced=True)
        self.add(QgsProcessingParameterFile("WHEELHOUSE", "Offline wheelhouse folder", behavior=FOLDER,
                                            optional=True),
                 "For machines without internet: a folder of wheels made with `make wheelhouse` on a connected "
                 "machine for this platform and Python; pip then installs only from it (--no-index).",
                 advanced=True)
        self.add(QgsProcessingParameterBoolean("REBUILD", "Rebuild from scratch", defaultValue=False),
                 "Build a new environment even when the current one checks out (e.g. to switch the torch source "
                 "with INDEX_URL); the current one stays active until the new one is complete.", advanced=True)
        for name, (description, kind) in OUTPUTS.items():
            self.addOutput(kind(name, description))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        location = self.parameterAsFile(parameters, "LOCATION", context).strip()
        wheelhouse = self.parameterAsFile(parameters, "WHEELHOUSE", context).strip()
        proxy, proxy_note = qgis_proxy()
        if proxy_note:
            feedback.pushWarning(proxy_note)
        request = SetupRequest(
            location=Path(location).expanduser().absolute() if location else engine_location(),
            device=self.parameterAsEnumString(parameters, "DEVICE", context) or "auto",
            index_url=self.parameterAsString(parameters, "INDEX_URL", context).strip(),
            wheelhouse=Path(wheelhouse).expanduser().absolute() if wheelhouse else None,
            rebuild=self.parameterAsBoolean(parameters, "REBUILD", context),
            proxy=proxy)
        try:
            result = run_setup(request, feedback)
        except SetupError as error:
            raise QgsProcessingException(str(error)) from None
        remember_location(request.location)
        feedback.pushInfo(f"Set-up done ({result.action}) in {result.seconds:.0f} s; the environment takes "
                          f"{result.size_bytes / 1024 ** 3:.1f} GB. The MoBaNet algorithms now use "
                          f"{result.environment.python}.")
        return _outputs(result)


def _outputs(result: SetupResult) -> dict[str, Any]:
    report = result.report
    return {"ENVIRONMENT": str(result.environment.folder), "PYTHON": str(result.environment.python),
            "ACTION": result.action, "ENGINE_VERSION": report.engine_distribution or report.engine_version,
            "PYTHON_VERSION": report.python, "TORCH_VERSION": report.torch_version,
            "CUDA_AVAILABLE": report.cuda_available, "GPU": report.gpu, "TIMM_VERSION": report.timm_version,
            "GDAL_VERSION": report.gdal_version, "FREE_DISK_GB": round(report.free_disk_gb, 2),
            "SIZE_GB": round(result.size_bytes / 1024 ** 3, 2)}
