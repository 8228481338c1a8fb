"""What a file is, judged by what it holds, never by its name or its first byte.

A safetensors file is an 8-byte little-endian header length N, N bytes of
JSON (an object: tensor name -> dtype, shape, data offsets, plus an optional
``__metadata__`` string map), then the tensor data. `read_safetensors_header`
parses and checks exactly that, so any valid file is accepted whatever its
header length happens to be (a length whose low byte is 0x80 looks like a
pickle's first byte, which is why guessing from magic bytes refused valid
models). Only when a file is *not* valid safetensors does `foreign_format`
say what it is instead (a PyTorch zip archive, a pickle), for the message.
Nothing here executes or unpickles anything: pickles are recognised by
walking their opcodes with `pickletools`, which only decodes them.
`save_safetensors` writes a file as a member of an `OutputSet`, checked at
commit by parsing its header and reading every tensor back.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mobanet.fileutil import OutputSet, write_error

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
PICKLE_SCAN_BYTES = 1 << 20  # how much of a file the pickle recogniser decodes at most
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
               "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}


class HeaderError(ValueError):
    """The file is not a valid safetensors file; the message says what is wrong, in a few words."""


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of a safetensors file."""

    metadata: dict[str, str]
    tensors: dict[str, dict]  # name -> {"dtype", "shape", "data_offsets"}
    header_bytes: int  # N, the JSON's length
    data_bytes: int  # length of the data section the header describes


def _check_tensor(name: str, entry: object) -> int:
    """Validate one tensor entry; returns where its data ends."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise HeaderError(f"tensor {name!r} lacks dtype, shape or data_offsets")
    shape, offsets, dtype = entry["shape"], entry["data_offsets"], entry["dtype"]
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise HeaderError(f"tensor {name!r} has an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(n, int) for n in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise HeaderError(f"tensor {name!r} has invalid data offsets {offsets!r}")
    if dtype in DTYPE_BYTES:
        count = 1
        for n in shape:
            count *= n
        if count * DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
            raise HeaderError(f"tensor {name!r} ({dtype} {shape}) does not match its {offsets[1] - offsets[0]} "
                              "data bytes")
    return offsets[1]


def read_safetensors_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Parse and check the header of a safetensors file; `HeaderError` when the file is not one."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise HeaderError(f"the file is only {size} bytes long")
        (length,) = struct.unpack("<Q", prefix)
        if length < 2 or length > MAX_HEADER_BYTES:
            raise HeaderError(f"its header length {length} is impossible")
        if 8 + length > size:
            raise HeaderError(f"its header needs {length} bytes but only {size - 8} follow (truncated)")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"its header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise HeaderError("its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise HeaderError("its __metadata__ is not a map of strings")
    data_bytes = max((_check_tensor(name, entry) for name, entry in header.items()), default=0)
    available = size - 8 - length
    if available < data_bytes:
        raise HeaderError(f"its header describes {data_bytes} bytes of tensor data but only {available} follow "
                          "(truncated)")
    if available > data_bytes:
        raise HeaderError(f"{available - data_bytes} unexpected bytes follow its tensor data")
    return SafetensorsHeader(metadata, header, length, data_bytes)


def _is_pickle(stream: io.BufferedIOBase) -> bool:
    """True when the stream decodes as pickle opcodes up to a STOP (or for PICKLE_SCAN_BYTES)."""
    limited = io.BytesIO(stream.read(PICKLE_SCAN_BYTES))
    try:
        for opcode, _arg, _pos in pickletools.genops(limited):
            if opcode.name == "STOP":
                return True
    except Exception:  # genops raises ValueError and others on anything that is not a pickle
        return False
    return limited.tell() >= PICKLE_SCAN_BYTES  # decoded that far without a fault: a long pickle


def foreign_format(path: str | os.PathLike) -> str | None:
    """What a file that is not safetensors is: "pytorch-archive", "zip", "pickle", or None when unknown."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "zip"
        return "pytorch-archive" if any(n.endswith("data.pkl") for n in names) else "zip"
    with open(path, "rb") as handle:
        return "pickle" if _is_pickle(handle) else None


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().reshape(-1).contiguous().view(torch.uint8)


def save_safetensors(outputs: OutputSet, final: str | os.PathLike, tensors: dict[str, torch.Tensor],
                     metadata: dict[str, str]) -> None:
    """Write ``tensors`` and ``metadata`` to ``final`` through ``outputs`` (renamed when the set commits).

    The commit verifies the file: its header parses, holds ``metadata``, and
    every tensor reads back bit for bit.
    """
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}

    def verify(path: Path) -> None:
        try:
            header = read_safetensors_header(path)
            if header.metadata != metadata or set(header.tensors) != set(tensors):
                raise HeaderError("its header differs from what was written")
            with safe_open(str(path), framework="pt") as handle:
                for name, tensor in tensors.items():
                    if not torch.equal(_as_bytes(handle.get_tensor(name)), _as_bytes(tensor)):
                        raise HeaderError(f"tensor {name!r} reads back different from what was written")
        except (HeaderError, OSError) as exc:
            raise write_error(final, exc, path) from exc

    output = outputs.add(final, verify=verify)
    try:
        save_file(tensors, str(output.temp), metadata=metadata)
    except Exception as exc:  # the library's SafetensorError wraps the OS error ("File too large (os error 27)")
        raise write_error(final, exc, output.temp) from exc
