"""What the set-up reads from QGIS: the profile folder, the remembered LOCATION and the network proxy."""

from pathlib import Path

import pytest

PROXY_KEYS = ("proxy/proxyEnabled", "proxy/proxyType", "proxy/proxyHost", "proxy/proxyPort", "proxy/proxyUser",
              "proxy/proxyPassword", "proxy/proxyExcludedUrls", "proxy/noProxyUrls", "proxy/authcfg")


@pytest.fixture
def qgis_settings(qgis_app):
    """QGIS's settings of the test profile, restored afterwards."""
    from qgis.core import QgsSettings

    from mobanet_qgis.engine_setup.qgis_settings import LOCATION_KEY

    settings = QgsSettings()
    keys = (*PROXY_KEYS, LOCATION_KEY)
    saved = {key: settings.value(key) for key in keys if settings.contains(key)}
    yield settings
    for key in keys:
        settings.remove(key)
    for key, value in saved.items():
        settings.setValue(key, value)


def test_default_location_is_in_the_active_profile_and_a_chosen_one_is_remembered(qgis_settings, tmp_path):
    from qgis.core import QgsApplication

    from mobanet_qgis.engine_setup.qgis_settings import default_location, engine_location, remember_location

    profile = Path(QgsApplication.qgisSettingsDirPath())
    assert default_location() == profile / "mobanet" / "engine"
    assert engine_location() == default_location()
    shared = tmp_path / "team share" / "mobanet engine"
    remember_location(shared)
    assert engine_location() == shared
    remember_location(default_location())
    assert engine_location() == default_location()


def test_qgis_http_proxy_with_credentials_and_exclusions(qgis_settings):
    from mobanet_qgis.engine_setup.qgis_settings import qgis_proxy

    assert qgis_proxy() == (None, "")
    for key, value in {"proxy/proxyEnabled": True, "proxy/proxyType": "HttpProxy",
                       "proxy/proxyHost": "proxy.corp.example", "proxy/proxyPort": "3128",
                       "proxy/proxyUser": "anna", "proxy/proxyPassword": "s3cret!",
                       "proxy/proxyExcludedUrls": ["http://intranet.corp.example/wiki", "files.corp.example"]}.items():
        qgis_settings.setValue(key, value)
    proxy, note = qgis_proxy()
    assert proxy.url == "http://anna:s3cret%21@proxy.corp.example:3128" and note == ""
    assert proxy.excluded == ("intranet.corp.example", "files.corp.example")
    qgis_settings.setValue("proxy/proxyExcludedUrls", "http://a.example|http://b.example")  # QGIS < 3.16 form
    assert qgis_proxy()[0].excluded == ("a.example", "b.example")


def test_system_and_socks_proxies_are_left_to_pip(qgis_settings):
    from mobanet_qgis.engine_setup.qgis_settings import qgis_proxy

    qgis_settings.setValue("proxy/proxyEnabled", True)
    qgis_settings.setValue("proxy/proxyHost", "proxy.corp.example")
    qgis_settings.setValue("proxy/proxyType", "DefaultProxy")
    assert qgis_proxy() == (None, "")  # the system's proxy, which pip reads itself
    qgis_settings.setValue("proxy/proxyType", "Socks5Proxy")
    proxy, note = qgis_proxy()
    assert proxy is None and "pip.conf" in note
