"""The environment pip runs in: pip's own configuration kept, QGIS's proxy only when pip has none."""

import sys
from pathlib import Path

import pytest

from mobanet_qgis.engine_setup.network import PROXY_VARIABLES, Proxy, http_proxy, pip_environment, python_environment

PYTHON = Path(sys.executable)
QGIS_PROXY = Proxy("http://qgis-proxy.example:8080", ("intranet.example",))


@pytest.fixture
def clean_proxy_environment(monkeypatch, tmp_path):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "pip.conf"
    config.write_text("[global]\ntimeout = 60\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    return config


def test_proxy_url_quotes_credentials_and_hides_the_password_in_the_log():
    proxy = http_proxy("proxy.example", "3128", "DOMAIN\\anna", "p@ss:w/rd", ("intranet.example",))
    assert proxy.url == "http://DOMAIN%5Canna:p%40ss%3Aw%2Frd@proxy.example:3128"
    assert proxy.display == "http://DOMAIN%5Canna:****@proxy.example:3128"
    assert "p%40ss" not in proxy.display
    assert http_proxy("http://proxy.example", "", "", "").url == "http://proxy.example"
    assert http_proxy(" ", "3128") is None


def test_child_pythons_see_neither_the_host_pythonpath_nor_user_site_packages(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/qgis/python")
    monkeypatch.setenv("PYTHONHOME", "/somewhere")
    env = python_environment()
    assert "PYTHONPATH" not in env and "PYTHONHOME" not in env
    assert env["PYTHONNOUSERSITE"] == "1"


def test_pip_keeps_its_configuration_but_installs_only_into_the_environment(monkeypatch, clean_proxy_environment):
    monkeypatch.setenv("PIP_CERT", "/etc/company-ca.pem")
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("PIP_USER", "1")
    monkeypatch.setenv("PIP_TARGET", "/usr/lib/python3/dist-packages")
    env, _ = pip_environment(PYTHON, None)
    assert env["PIP_CERT"] == "/etc/company-ca.pem" and env["PIP_INDEX_URL"] == "https://mirror.example/simple"
    assert "PIP_USER" not in env and "PIP_TARGET" not in env
    assert env["PIP_NO_INPUT"] == "1"  # a credentials prompt would wait forever inside QGIS


def test_qgis_proxy_used_only_when_pip_has_none(monkeypatch, clean_proxy_environment):
    env, note = pip_environment(PYTHON, QGIS_PROXY)
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == "http://qgis-proxy.example:8080"
    assert env["NO_PROXY"] == "intranet.example" and "QGIS's proxy" in note

    clean_proxy_environment.write_text("[global]\nproxy = http://pip-conf-proxy.example:3128\n")
    env, note = pip_environment(PYTHON, QGIS_PROXY)  # real `pip config list` reads it
    assert "HTTPS_PROXY" not in env and "pip's configuration" in note

    clean_proxy_environment.write_text("[global]\n")
    monkeypatch.setenv("https_proxy", "http://env-proxy.example:3128")
    env, note = pip_environment(PYTHON, QGIS_PROXY)
    assert env["https_proxy"] == "http://env-proxy.example:3128" and "HTTP_PROXY" not in env
    assert "environment" in note


def test_no_proxy_anywhere(clean_proxy_environment):
    env, note = pip_environment(PYTHON, None)
    assert not any(env.get(name) for name in PROXY_VARIABLES) and "no proxy" in note
