"""The process environment that pip and the engine's Python run in.

pip keeps its own configuration: ``pip.conf``/``pip.ini``, ``PIP_*`` variables
(``PIP_INDEX_URL``, ``PIP_CERT``, ``PIP_FIND_LINKS``...) and proxy variables
pass through unchanged, and pip >= 24.2 trusts the system's certificate store.
Only what would break an install into a virtual environment is removed
(``PYTHONPATH``/``PYTHONHOME`` of the host, ``PIP_USER``/``PIP_TARGET``...),
prompts are turned off (a hidden password prompt would hang QGIS), and QGIS's
proxy (Settings -> Options -> Network) is handed to pip as ``HTTP(S)_PROXY``
only when pip has no proxy of its own.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

# Host settings that would make a child Python import QGIS's (or a developer's) packages instead of its own.
_HOST_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")
# pip options that send an install somewhere other than the environment.
_MISDIRECTING_PIP_VARIABLES = ("PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "PIP_PROXY")
PIP_CONFIG_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy from QGIS's network settings."""

    url: str  # http://[user:password@]host:port
    excluded: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        """The URL with the password hidden, for the log."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
        return urlunsplit(parts._replace(netloc=netloc))


def http_proxy(host: str, port: int | str, user: str = "", password: str = "",
               excluded: tuple[str, ...] = ()) -> Proxy | None:
    """A Proxy from QGIS's host/port/user/password fields (None without a host)."""
    host = host.strip()
    if not host:
        return None
    if "://" in host:
        host = urlsplit(host).hostname or host
    credentials = ""
    if user:
        credentials = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    port_part = f":{int(port)}" if str(port).strip() not in ("", "0") else ""
    return Proxy(f"http://{credentials}{host}{port_part}", tuple(e for e in excluded if e))


def python_environment() -> dict[str, str]:
    """This process's environment, for a child Python that must see only its own packages."""
    env = {key: value for key, value in os.environ.items() if key not in _HOST_PYTHON_VARIABLES}
    env.update(PYTHONNOUSERSITE="1", PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    return env


def environment_has_proxy(env: dict[str, str]) -> bool:
    return any(env.get(name) for name in PROXY_VARIABLES)


def pip_config_has_proxy(python: Path, env: dict[str, str]) -> bool:
    """Whether pip's configuration files set a proxy (``pip config list`` shows ``global.proxy=...``)."""
    try:
        listed = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True,
                                env=env, timeout=PIP_CONFIG_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.split("=", 1)[0].endswith(".proxy") for line in listed.stdout.splitlines())


def pip_environment(python: Path, qgis_proxy: Proxy | None) -> tuple[dict[str, str], str]:
    """The environment for pip run by `python`, and one line for the log saying which proxy it uses."""
    env = python_environment()
    for name in _MISDIRECTING_PIP_VARIABLES:
        env.pop(name, None)
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if environment_has_proxy(env):
        return env, "Network: the proxy from the environment (HTTP(S)_PROXY / PIP_PROXY)."
    if pip_config_has_proxy(python, env):
        return env, "Network: the proxy from pip's configuration."
    if qgis_proxy is None:
        return env, "Network: no proxy configured (QGIS, pip and the environment set none)."
    env["HTTP_PROXY"] = env["HTTPS_PROXY"] = env["http_proxy"] = env["https_proxy"] = qgis_proxy.url
    if qgis_proxy.excluded:
        env["NO_PROXY"] = env["no_proxy"] = ",".join(qgis_proxy.excluded)
    return env, f"Network: QGIS's proxy {qgis_proxy.display} (Settings -> Options -> Network)."
