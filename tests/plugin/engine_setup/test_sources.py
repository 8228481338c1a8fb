"""The requirements file and the engine's code that a set-up installs, and the engine wheel made from them."""

import subprocess
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

from mobanet_qgis.engine_setup.engine_wheel import CONSOLE_SCRIPTS, DIST_NAME, build_engine_wheel, wheel_version
from mobanet_qgis.engine_setup.feedback import SetupError
from mobanet_qgis.engine_setup.sources import EngineSource, Requirements, find_engine_source, requirement_name

ROOT = Path(__file__).resolve().parents[3]


def test_requirements_split_torch_family_and_hash_ignores_comments_and_order(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("# pinned\ntorch==2.14.1\nTimm==1.0.31  # models\n\ntorchvision==0.29.2\nnumpy\n")
    second.write_text("numpy\ntorchvision==0.29.2\nTimm==1.0.31\ntorch==2.14.1\n")
    requirements = Requirements.read(first)
    assert requirements.torch == ["torch==2.14.1", "torchvision==0.29.2"]
    assert requirements.others == ["Timm==1.0.31", "numpy"]
    assert requirements.sha256 == Requirements.read(second).sha256
    second.write_text("numpy\ntorchvision==0.29.2\nTimm==1.0.32\ntorch==2.14.1\n")
    assert requirements.sha256 != Requirements.read(second).sha256
    assert requirement_name("huggingface_hub>=0.2") == "huggingface-hub"


def test_the_repository_requirements_file_is_the_one_list():
    """engine/requirements.txt holds the pins; requirements.txt (make install) includes it."""
    requirements = EngineSource(ROOT / "engine").requirements()
    names = {requirement_name(line) for line in requirements.lines}
    assert {"torch", "torchvision", "timm", "safetensors", "numpy", "tqdm"} <= names
    assert all("==" in line for line in requirements.torch)
    assert "-r engine/requirements.txt" in (ROOT / "requirements.txt").read_text().splitlines()
    pyproject = tomllib.loads((ROOT / "engine" / "pyproject.toml").read_text())
    declared = {requirement_name(line) for line in pyproject["project"]["dependencies"]}
    assert declared <= names


def test_engine_source_found_beside_the_plugin_in_the_repository_and_inside_it_in_the_zip(tmp_path):
    assert find_engine_source(ROOT / "mobanet_qgis").root == ROOT / "engine"
    plugin = tmp_path / "mobanet_qgis"
    (plugin / "engine" / "mobanet").mkdir(parents=True)
    (plugin / "engine" / "mobanet" / "__init__.py").write_text('__version__ = "9.9.9"\n')
    (plugin / "engine" / "requirements.txt").write_text("tqdm\n")
    source = find_engine_source(plugin)
    assert source.root == plugin / "engine" and source.version() == "9.9.9"
    with pytest.raises(SetupError, match="reinstall the plugin"):
        find_engine_source(tmp_path / "empty" / "mobanet_qgis")


def test_engine_hash_changes_with_any_file_but_not_with_caches(tmp_path):
    package = tmp_path / "engine" / "mobanet"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "1.0"\n')
    (tmp_path / "engine" / "requirements.txt").write_text("tqdm\n")
    source = EngineSource(tmp_path / "engine")
    before = source.sha256()
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    assert source.sha256() == before
    (package / "cli.py").write_text("print('new')\n")
    assert source.sha256() != before


def test_engine_wheel_mirrors_pyproject_and_installs_with_real_pip(tmp_path):
    """The wheel pip installs: console script and name as engine/pyproject.toml, version with a code hash."""
    pyproject = tomllib.loads((ROOT / "engine" / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == CONSOLE_SCRIPTS and pyproject["project"]["name"] == DIST_NAME
    source = EngineSource(ROOT / "engine")
    wheel = build_engine_wheel(source, tmp_path / "wheels")
    version = wheel_version(source)
    assert source.version() == pyproject["project"]["version"]
    assert version == f"{source.version()}+{source.sha256()[:12]}"
    assert wheel.name == f"mobanet-{version}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert "mobanet/cli.py" in names and f"mobanet-{version}.dist-info/RECORD" in names
    assert not [n for n in names if "__pycache__" in n]
    assert build_engine_wheel(source, tmp_path / "again").read_bytes() == wheel.read_bytes()

    target = tmp_path / "venv"
    venv.create(target, with_pip=True, system_site_packages=False)
    python = target / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shown = subprocess.run(
        [str(python), "-I", "-c", "from importlib import metadata; import mobanet; "
         "print(metadata.version('mobanet'), mobanet.__file__, "
         "[e.value for e in metadata.entry_points(group='console_scripts')])"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(version + " " + str(target)) and "mobanet.cli:main" in shown.stdout
    assert (target / "bin" / "mobanet").is_file()
