"""The resume state of a training run, stored without pickle.

A run's resume state (optimiser moments, schedule position, epoch, best
score, random generator states of every rank, sampler state) is nested
Python data with tensors inside. It is written as one safetensors file: every
tensor under a dotted path name, and the rest of the structure as JSON in the
metadata key ``mobanet.state``, with ``{"__tensor__": name}`` where a tensor
was. Reading it back executes nothing, unlike ``torch.save``/pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from mobanet.errors import InputError
from mobanet.fileformat import read_safetensors_header, save_safetensors
from mobanet.fileutil import OutputSet

STATE_KEY = "mobanet.state"
TENSOR, ITEMS = "__tensor__", "__items__"


def _flatten(value: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[name] = value.detach().to("cpu").clone().contiguous()
        return {TENSOR: name}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _flatten(item, f"{name}.{key}", tensors) for key, item in value.items()}
        return {ITEMS: [[key, _flatten(item, f"{name}.{key}", tensors)] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_flatten(item, f"{name}.{i}", tensors) for i, item in enumerate(value)]
    return value


def _restore(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {TENSOR}:
            return tensors[value[TENSOR]]
        if set(value) == {ITEMS}:
            return {key: _restore(item, tensors) for key, item in value[ITEMS]}
        return {key: _restore(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [_restore(item, tensors) for item in value]
    return value


def save_state(path: Path, state: dict[str, Any], outputs: OutputSet) -> None:
    """Write ``state`` (nested dicts/lists of JSON values and tensors) to ``path`` as a member of ``outputs``."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, "state", tensors)
    save_safetensors(outputs, path, tensors, {STATE_KEY: json.dumps(tree)})


def load_state(path: Path) -> dict[str, Any]:
    """Read a state written by `save_state`; a clear `InputError` for anything else."""
    if not path.is_file():
        raise InputError(f"Resume state {path} {'is a folder' if path.is_dir() else 'does not exist'}; give the "
                         ".state.safetensors file that an interrupted `mobanet train` left beside its output.")
    try:
        metadata = read_safetensors_header(path).metadata
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # HeaderError, or the safetensors library's own error types for bad data
        raise InputError(f"Resume state {path} is not readable ({exc}); it may be truncated. Resume from an "
                         "intact file or start the training again.") from exc
    if STATE_KEY not in metadata:
        raise InputError(f"{path} is not a training resume state (no {STATE_KEY!r} metadata); pass the "
                         "<output>.state.safetensors file, not a model file.")
    return _restore(json.loads(metadata[STATE_KEY]), tensors)
