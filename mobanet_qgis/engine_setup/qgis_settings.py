"""What the set-up reads from QGIS: the active profile's folder, the remembered LOCATION, the proxy.

Everything else in this package works without QGIS; this module is the one
that asks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qgis.core import QgsApplication, QgsSettings

from mobanet_qgis.engine_setup.network import Proxy, http_proxy

LOCATION_KEY = "mobanet/engine_location"
DEFAULT_FOLDER = ("mobanet", "engine")
HTTP_PROXY_TYPES = ("HttpProxy", "HttpCachingProxy")


def default_location() -> Path:
    """``<active profile folder>/mobanet/engine``: kept by plugin updates, one per profile."""
    return Path(QgsApplication.qgisSettingsDirPath()).joinpath(*DEFAULT_FOLDER)


def engine_location() -> Path:
    """Where this profile's engine environment is: the LOCATION of the last set-up, else the default."""
    value = QgsSettings().value(LOCATION_KEY, "")
    return Path(str(value)) if value else default_location()


def remember_location(location: Path) -> None:
    """Make `location` this profile's engine environment (discovery reads it back)."""
    settings = QgsSettings()
    if Path(location) == default_location():
        settings.remove(LOCATION_KEY)
    else:
        settings.setValue(LOCATION_KEY, str(location))


def _string_list(value: Any) -> list[str]:
    """A QGIS list setting: a QStringList, or one string joined with '|' by older versions."""
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split("|")
    return [str(item).strip() for item in items if str(item).strip()]


def _host(url: str) -> str:
    if "://" in url:
        return urlsplit(url).hostname or url
    return url.split("/")[0]


def qgis_proxy() -> tuple[Proxy | None, str]:
    """QGIS's HTTP proxy (Settings -> Options -> Network), and a note for the log when it cannot be used."""
    settings = QgsSettings()
    if not settings.value("proxy/proxyEnabled", False, type=bool):
        return None, ""
    kind = str(settings.value("proxy/proxyType", "DefaultProxy") or "DefaultProxy")
    if kind not in HTTP_PROXY_TYPES:
        # DefaultProxy is the system's, which pip finds itself; pip cannot use SOCKS or FTP proxies without extras.
        note = "" if kind == "DefaultProxy" else (
            f"QGIS's {kind} proxy is not handed to pip; set pip's proxy (pip.conf or HTTPS_PROXY) if it needs one.")
        return None, note
    note = ""
    if settings.value("proxy/authcfg", ""):
        note = ("QGIS's proxy credentials in the authentication database are not handed to pip; put them in "
                "pip.conf (proxy = http://user:password@host:port) if the proxy needs them.")
    excluded = [_host(url) for url in (_string_list(settings.value("proxy/proxyExcludedUrls", ""))
                                       + _string_list(settings.value("proxy/noProxyUrls", "")))]
    proxy = http_proxy(str(settings.value("proxy/proxyHost", "") or ""), str(settings.value("proxy/proxyPort", "")),
                       str(settings.value("proxy/proxyUser", "") or ""),
                       str(settings.value("proxy/proxyPassword", "") or ""), tuple(excluded))
    return proxy, note
