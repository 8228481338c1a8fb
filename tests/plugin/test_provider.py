"""The provider `mobanet`, its algorithms and parameters are registered in QGIS; metadata and engine discovery."""

import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "mobanet_qgis"


def test_provider_is_registered_with_name_and_icon(mobanet_provider):
    from qgis.core import QgsApplication

    assert QgsApplication.processingRegistry().providerById("mobanet") is mobanet_provider
    assert mobanet_provider.name() == "MoBaNet"
    assert not mobanet_provider.icon().isNull()
    assert Path(mobanet_provider.svgIconPath()).is_file()
    assert sorted(a.id() for a in mobanet_provider.algorithms()) == [
        "mobanet:evaluate", "mobanet:segment", "mobanet:setup", "mobanet:train"]
    assert mobanet_provider.supportedOutputRasterLayerExtensions() == ["tif"]


def _parameters(algorithm_id):
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    assert algorithm is not None, algorithm_id
    return algorithm, {p.name(): p for p in algorithm.parameterDefinitions()}


def test_segment_parameters(mobanet_provider):
    from mobanet_qgis.compat import ProcessingParameterFlag

    algorithm, params = _parameters("mobanet:segment")
    types = {name: p.type() for name, p in params.items()}
    assert types == {
        "OPTICAL": "raster", "DSM": "raster", "DSM_GAPS": "enum", "MODEL": "file", "WEIGHTS": "file", "BANDS": "band",
        "EXTENT": "extent", "MASK": "source", "DEVICE": "enum", "BATCH_SIZE": "number", "OVERLAP": "number",
        "MARGIN": "number", "OUTPUT": "rasterDestination", "CONFIDENCE": "rasterDestination",
        "VECTOR": "vectorDestination", "MIN_AREA": "number", "RAY": "string"}
    optional = {name for name, p in params.items() if p.flags() & ProcessingParameterFlag.Optional}
    assert optional == {"DSM", "DSM_GAPS", "MODEL", "WEIGHTS", "BANDS", "EXTENT", "MASK", "OVERLAP", "MARGIN",
                        "CONFIDENCE", "VECTOR", "RAY"}
    assert params["OVERLAP"].defaultValue() is None and params["MARGIN"].defaultValue() is None  # engine default
    assert params["BANDS"].allowMultiple() and params["BANDS"].parentLayerParameterName() == "OPTICAL"
    assert params["DEVICE"].options()[params["DEVICE"].defaultValue()].startswith("Automatic")
    assert params["MODEL"].extension() == "safetensors"
    assert not params["CONFIDENCE"].createByDefault() and not params["VECTOR"].createByDefault()
    assert {o.name() for o in algorithm.outputDefinitions()} == {"OUTPUT", "CONFIDENCE", "VECTOR"}


def test_train_parameters(mobanet_provider):
    from mobanet_qgis.algorithms.train import BACKBONES

    algorithm, params = _parameters("mobanet:train")
    assert set(params) == {"OPTICAL", "DSM", "LABELS", "CLASS_FIELD", "VAL_OPTICAL", "VAL_DSM", "VAL_LABELS",
                           "BACKBONE", "WEIGHTS", "EPOCHS", "ITERATIONS", "BATCH_SIZE", "WINDOW", "LR", "MCRM",
                           "MCRM_RATIO", "AUX_LOSS", "FEATURE_PYRAMID", "DEVICE", "SEED", "OUTPUT"}
    for name in ("OPTICAL", "DSM", "LABELS", "VAL_OPTICAL", "VAL_DSM", "VAL_LABELS"):
        assert params[name].type() == "multilayer"
    assert params["OUTPUT"].type() == "fileDestination" and "safetensors" in params["OUTPUT"].fileFilter()
    assert {"tiny", "dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14"} <= set(BACKBONES)
    assert len(params["BACKBONE"].options()) == len(BACKBONES)
    assert BACKBONES[params["BACKBONE"].defaultValue()] == "dinov2_vitb14"


ENGINE_DEFAULTS = """
import json
from pathlib import Path
from mobanet.raster.scene import DEFAULT_DSM_GAPS, DSM_GAP_MODES
from mobanet.train import TrainOptions
from mobanet.train.options import MCRM_MODES, feature_pyramid_for
engine = TrainOptions(scenes=[], output=Path("m.safetensors"))
print(json.dumps({"dsm_gaps": DEFAULT_DSM_GAPS, "dsm_gap_modes": DSM_GAP_MODES, "mcrm_modes": MCRM_MODES,
                  "mcrm": engine.mcrm, "mcrm_ratio": engine.mcrm_ratio, "aux_heads": engine.aux_heads,
                  "feature_pyramid": feature_pyramid_for(engine)}))
"""


def test_defaults_are_the_engines(mobanet_provider):
    """The dialogs start from the engine's defaults: DSM gaps (`mobanet segment`) and masking, auxiliary loss and
    feature pyramid (`mobanet train`), which the ablation benchmark chose. Read by the engine's Python (the test
    runner may have no torch)."""
    from mobanet_qgis.algorithms import segment, train
    from mobanet_qgis.engine_process import find_engine

    engine = find_engine()
    completed = subprocess.run([engine.python, "-c", ENGINE_DEFAULTS], capture_output=True, text=True,
                               env={**os.environ, **engine.env}, timeout=300, check=True)
    defaults = json.loads(completed.stdout.strip().splitlines()[-1])
    _, params = _parameters("mobanet:segment")
    assert list(segment.DSM_GAP_MODES) == defaults["dsm_gap_modes"]
    assert segment.DSM_GAP_MODES[params["DSM_GAPS"].defaultValue()] == defaults["dsm_gaps"]
    assert len(params["DSM_GAPS"].options()) == len(segment.DSM_GAP_MODES)
    _, params = _parameters("mobanet:train")
    assert set(train.MCRM_MODES) == set(defaults["mcrm_modes"])
    assert train.MCRM_MODES[params["MCRM"].defaultValue()] == defaults["mcrm"]
    assert params["MCRM_RATIO"].defaultValue() == defaults["mcrm_ratio"]
    assert params["AUX_LOSS"].defaultValue() == defaults["aux_heads"]
    assert params["FEATURE_PYRAMID"].defaultValue() == defaults["feature_pyramid"]


def test_evaluate_parameters_and_number_outputs(mobanet_provider):
    algorithm, params = _parameters("mobanet:evaluate")
    assert set(params) == {"PREDICTION", "REFERENCE", "ERODED", "OUTPUT_HTML", "OUTPUT_JSON"}
    outputs = {o.name(): o.type() for o in algorithm.outputDefinitions()}
    for name in ("OA", "MF1", "MIOU"):
        assert outputs[name] == "outputNumber"
    assert outputs["OUTPUT_HTML"] == "outputHtml"


def test_setup_parameters_are_all_optional_and_outputs_report_the_environment(mobanet_provider):
    from mobanet_qgis.compat import ProcessingFileParameterBehavior, ProcessingParameterFlag

    algorithm, params = _parameters("mobanet:setup")
    assert set(params) == {"LOCATION", "DEVICE", "INDEX_URL", "WHEELHOUSE", "REBUILD"}
    for name, parameter in params.items():
        assert parameter.flags() & ProcessingParameterFlag.Optional or parameter.defaultValue() is not None, name
    device = params["DEVICE"]  # scripts write DEVICE=auto|cpu|cuda
    assert device.options() == ["auto", "cpu", "cuda"] and device.defaultValue() == "auto"
    assert device.checkValueIsAcceptable("cpu") and not device.checkValueIsAcceptable("rocm")
    assert params["REBUILD"].defaultValue() is False
    folder = ProcessingFileParameterBehavior.Folder
    assert params["LOCATION"].behavior() == params["WHEELHOUSE"].behavior() == folder
    outputs = {o.name(): o.type() for o in algorithm.outputDefinitions()}
    assert outputs["CUDA_AVAILABLE"] == "outputBoolean" and outputs["FREE_DISK_GB"] == "outputNumber"
    assert {"ENVIRONMENT", "PYTHON", "ENGINE_VERSION", "PYTHON_VERSION", "TORCH_VERSION", "GPU", "TIMM_VERSION",
            "GDAL_VERSION"} <= set(outputs)


@pytest.mark.parametrize("algorithm_id", ["mobanet:segment", "mobanet:train", "mobanet:evaluate", "mobanet:setup"])
def test_every_parameter_has_help(mobanet_provider, algorithm_id):
    algorithm, params = _parameters(algorithm_id)
    help_html = algorithm.shortHelpString()
    for name, parameter in params.items():
        assert len(parameter.help()) > 20, name
        assert f"<code>{name}</code>" in help_html
    assert algorithm.helpString() and algorithm.displayName() and not algorithm.icon().isNull()


def test_metadata_has_what_the_plugin_repository_requires():
    parser = configparser.ConfigParser()
    parser.read(PLUGIN / "metadata.txt", encoding="utf-8")
    general = parser["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                "repository", "tracker", "homepage", "category", "icon", "tags", "license"):
        assert general.get(key, "").strip(), key
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["qgisMaximumVersion"] == "4.99"  # QGIS 4 (Qt6) and plugins.qgis.org offer it to QGIS 4 users
    assert general["supportsQt6"] == "True"  # read by the plugin installer of Qt6 builds of QGIS 3.x
    assert general["experimental"] in ("True", "False")
    # Plugin Manager users learn from the about text how to get the engine (torch) the plugin needs.
    assert "mobanet:setup" in general["about"] and "Engine Python" in general["about"]
    assert general["hasProcessingProvider"] == "yes"
    assert general["version"] == "0.1.0"
    assert general["category"] == "Analysis"
    assert (PLUGIN / general["icon"]).is_file()


def test_engine_python_found_in_repository_venv_or_processing_setting(mobanet_provider):
    """The setting wins; else the repository's .venv (make install) or, where there is none (make test-ltr runs the
    engine that mobanet:setup built), $MOBANET_PYTHON. The plugin's own engine leads the PYTHONPATH either way."""
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis.core import QgsProcessingException

    from mobanet_qgis.engine_process import ENGINE_PYTHON_SETTING, find_engine

    setting = ProcessingConfig.settings[ENGINE_PYTHON_SETTING]
    saved = setting.value
    try:
        setting.value = ""  # in memory only: the user's profile is not touched
        engine = find_engine()
        repo_python = ROOT / ".venv" / "bin" / "python"
        expected = repo_python if repo_python.is_file() else Path(os.environ["MOBANET_PYTHON"])
        assert Path(engine.python) == expected
        assert engine.env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT / "engine")
        setting.value = sys.executable
        assert find_engine().python == sys.executable
        setting.value = "/nonexistent/python3"
        with pytest.raises(QgsProcessingException, match="/nonexistent/python3"):
            find_engine()
    finally:
        setting.value = saved


def test_engine_python_without_the_engine_says_how_to_fix_it(mobanet_provider, scene, tmp_path):
    """The system Python has neither torch nor mobanet: one sentence names the module and the set-up."""
    import processing
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis.core import QgsProcessingException

    from mobanet_qgis.engine_process import ENGINE_PYTHON_SETTING

    setting = ProcessingConfig.settings[ENGINE_PYTHON_SETTING]
    saved = setting.value
    try:
        setting.value = "/usr/bin/python3"
        with pytest.raises(QgsProcessingException) as raised:
            processing.run("mobanet:evaluate", {"PREDICTION": str(scene["labels"]), "REFERENCE": str(scene["labels"]),
                                                "OUTPUT_JSON": str(tmp_path / "scores.json")})
    finally:
        setting.value = saved
    message = str(raised.value)
    assert "'/usr/bin/python3'" in message and "Engine Python" in message
    # 'mobanet' itself, or with the engine on PYTHONPATH (as in development) its first missing import
    assert re.search(r"lacks the module '(mobanet|tqdm|torch|numpy|safetensors|timm)'", message), message
    assert "mobanet:setup" in message
    assert "Traceback" not in message and "\n" not in message
    assert not (tmp_path / "scores.json").exists()
