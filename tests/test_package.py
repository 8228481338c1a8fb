"""The release zip: one top folder QGIS's plugin manager accepts, engine and model inside, no tests or caches."""

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QGIS_PYTHON = "/usr/share/qgis/python"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("package") / "mobanet_qgis.zip"
    # -I -S: no site-packages at all, so the builder provably needs nothing but the standard library
    subprocess.run([sys.executable, "-I", "-S", str(ROOT / "tools" / "build_package.py"), "--output", str(output)],
                   check=True)
    return output


def test_zip_has_one_top_folder_with_metadata_engine_and_model(package):
    names = zipfile.ZipFile(package).namelist()
    assert {n.split("/")[0] for n in names} == {"mobanet_qgis"}
    assert "mobanet_qgis/metadata.txt" in names
    assert "mobanet_qgis/__init__.py" in names
    assert "mobanet_qgis/engine/mobanet/__init__.py" in names
    assert "mobanet_qgis/engine/mobanet/model/mobanet.py" in names
    assert "mobanet_qgis/engine/requirements.txt" in names  # what mobanet:setup installs
    assert "mobanet_qgis/engine_setup/check_script.py" in names
    assert "mobanet_qgis/resources/models/mobanet-demo-tiny.safetensors" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n]
    # QGIS's "install from ZIP" takes the folder of the shortest metadata.txt path as the plugin name
    assert sorted(n for n in names if n.endswith("metadata.txt"))[0] == "mobanet_qgis/metadata.txt"


def test_make_package_builds_from_the_tree_alone():
    """No `make install`, venv or pip behind `make package`: only the standard-library builder runs."""
    planned = subprocess.run(["make", "--no-print-directory", "-n", "-B", "package"], cwd=ROOT,
                             capture_output=True, text=True, check=True)
    commands = [line for line in planned.stdout.splitlines() if line.strip()]
    assert len(commands) == 1 and "tools/build_package.py" in commands[0], commands
    assert ".venv" not in commands[0]


def test_zip_is_reproducible(package, tmp_path):
    again = tmp_path / "again.zip"
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_package.py"), "--output", str(again)], check=True)
    assert again.read_bytes() == package.read_bytes()


def test_qgis_plugin_installer_accepts_and_loads_the_zip(package, tmp_path):
    """Unzip with QGIS's own installer code, read metadata with its parser, then load the plugin's provider."""
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {QGIS_PYTHON!r})
        sys.path.insert(0, {str(plugins_dir)!r})
        from qgis.core import QgsApplication
        app = QgsApplication([], False)
        app.initQgis()
        from pyplugin_installer.unzip import unzip
        from pyplugin_installer.installer_data import Plugins
        unzip({str(package)!r}, {str(plugins_dir)!r})
        info = Plugins().getInstalledPlugin("mobanet_qgis", {str(plugins_dir / "mobanet_qgis")!r}, False)
        assert info["error"] == "", info["error_details"]
        required = ("name", "description", "about", "author_name", "author_email", "code_repository",
                    "version_installed")
        for key in required:
            assert info[key] and info[key] != "?", key
        import qgis.utils
        assert qgis.utils.loadPlugin("mobanet_qgis")
        import mobanet_qgis
        assert mobanet_qgis.__file__.startswith({str(plugins_dir)!r}), mobanet_qgis.__file__
        assert qgis.utils.startProcessingPlugin("mobanet_qgis")
        provider = QgsApplication.processingRegistry().providerById("mobanet")
        assert provider is not None
        ids = sorted(a.id() for a in provider.algorithms())
        print("ALGORITHMS", ids)
        app.exitQgis()
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    for algorithm in ("mobanet:segment", "mobanet:train", "mobanet:evaluate", "mobanet:setup"):
        assert algorithm in result.stdout


def test_bundled_engine_imports_and_finds_its_default_model(package, tmp_path):
    """The engine inside the zip runs from there (PYTHONPATH) and finds resources/ beside it."""
    zipfile.ZipFile(package).extractall(tmp_path)
    engine = tmp_path / "mobanet_qgis" / "engine"
    code = "import mobanet, mobanet.resources as r; print(mobanet.__file__); print(r.default_model_path())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(engine), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    module_file, model = result.stdout.split()
    assert module_file.startswith(str(engine))
    assert Path(model) == tmp_path / "mobanet_qgis" / "resources" / "models" / "mobanet-demo-tiny.safetensors"
