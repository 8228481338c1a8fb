"""Pretrained backbone weights from the Hugging Face hub, decided at once.

timm downloads DINOv2 weights from the hub (``timm/<name>``, file
``model.safetensors``). Left to itself, an offline machine spends about a
minute in the hub client's retries before it fails, and a network that
drops packets keeps it waiting for many minutes. This module decides before
any download: the file already in the local hub cache is used as is;
otherwise one request with a short timeout and no retries (on the hub
client's session, so its proxies and ``HF_ENDPOINT`` apply) says whether the
hub answers; ``HF_HUB_OFFLINE=1`` skips even that. When the weights cannot be
had, the caller gets the reason at once and names the file to get instead.
"""

from __future__ import annotations

from pathlib import Path

import timm

WEIGHTS_FILENAME = "model.safetensors"  # what timm loads first from a timm/<name> repository
PROBE_TIMEOUT_S = 2.0


class HubUnavailable(Exception):
    """The weights are not cached and cannot be downloaded now; the message says why."""


def hub_repository(timm_name: str) -> str:
    """The hub repository of ``timm_name``'s weights, e.g. ``timm/vit_large_patch14_dinov2.lvd142m``."""
    cfg = timm.models.get_pretrained_cfg(timm_name)
    repository = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repository:
        raise HubUnavailable(f"timm knows no hub repository for {timm_name}")
    return repository


def cached_weights(repository: str) -> Path | None:
    """The weights file of ``repository`` in the local hub cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repository, WEIGHTS_FILENAME)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def check_reachable(repository: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise `HubUnavailable` unless the hub answers for the weights file within ``timeout`` seconds.

    One HEAD request on the hub client's session (its proxies and endpoint),
    without its standard headers: building those may first fetch a registry
    from the hub with a timeout of its own.
    """
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        raise HubUnavailable("HF_HUB_OFFLINE is set")
    url = hf_hub_url(repository, WEIGHTS_FILENAME)
    try:
        response = get_session().head(url, timeout=timeout)  # redirects (to the file store) are not followed
    except Exception as exc:  # DNS, connection, proxy and timeout errors come in many types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HubUnavailable(f"{constants.ENDPOINT} did not answer within {timeout:g} s: {reason}") from exc
    if response.status_code >= 400:
        raise HubUnavailable(f"{url} answered HTTP {response.status_code}")


def pretrained_weights_file(timm_name: str) -> Path:
    """A local file with the pretrained weights of ``timm_name``: cached, or downloaded now.

    Raises `HubUnavailable` within about ``PROBE_TIMEOUT_S`` when the file is
    not cached and the hub cannot be reached.
    """
    from huggingface_hub import hf_hub_download

    repository = hub_repository(timm_name)
    cached = cached_weights(repository)
    if cached is not None:
        return cached
    check_reachable(repository)
    try:
        return Path(hf_hub_download(repository, WEIGHTS_FILENAME))
    except Exception as exc:  # the connection dropped after the probe, a full disk, ...
        raise HubUnavailable(f"downloading {repository}/{WEIGHTS_FILENAME} failed: {exc}") from exc
