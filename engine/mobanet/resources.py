"""Where the bundled resources (default model, sample scene, styles) live.

In the repository the engine sits at ``engine/mobanet`` beside ``resources/``;
in the plugin zip it sits at ``mobanet_qgis/engine/mobanet`` beside
``mobanet_qgis/resources/``. Both are two folders up from this file.
``MOBANET_RESOURCES`` overrides the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from mobanet.errors import ModelFileError
from mobanet.wording import option

DEFAULT_MODEL_NAME = "mobanet-demo-tiny.safetensors"


def resource_dir() -> Path:
    override = os.environ.get("MOBANET_RESOURCES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "resources"


def default_model_path() -> Path:
    path = resource_dir() / "models" / DEFAULT_MODEL_NAME
    if not path.is_file():
        raise ModelFileError(
            f"The embedded default model {path} is missing; give a model file with {option('--model')}, "
            "or rebuild it with `make default-model`.")
    return path


def sample_dir() -> Path:
    return resource_dir() / "sample"
