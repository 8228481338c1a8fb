"""Files are recognised by what they hold: safetensors headers are parsed, pickles are decoded, never guessed."""

from __future__ import annotations

import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from mobanet.fileformat import HeaderError, foreign_format, read_safetensors_header


def header_length(path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


@pytest.mark.parametrize("low_byte", [0x80, 0x50, 0x00])
def test_any_header_length_is_accepted(tmp_path, low_byte):
    """A header length whose low byte is 0x80 (a pickle's first byte) is as valid as any other."""
    path = tmp_path / "t.safetensors"
    for pad in range(0, 4096, 1):  # the header is padded to multiples of 8: find one with this low byte
        save_file({"w": torch.arange(6, dtype=torch.float32)}, str(path), metadata={"note": "x" * pad})
        if header_length(path) % 256 == low_byte:
            break
    else:
        pytest.fail(f"no header length with low byte {low_byte:#x} found")
    assert path.read_bytes()[0] == low_byte
    header = read_safetensors_header(path)
    assert header.metadata["note"].startswith("x") and header.tensors["w"]["shape"] == [6]
    assert header.data_bytes == 24 and foreign_format(path) is None


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_pickles_of_every_protocol_are_recognised(tmp_path, protocol):
    path = tmp_path / "p.safetensors"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0], "name": "x"}, protocol=protocol))
    with pytest.raises(HeaderError):
        read_safetensors_header(path)
    assert foreign_format(path) == "pickle"


def test_torch_save_archives_and_legacy_files(tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "new.pt")
    torch.save({"w": torch.zeros(3)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert foreign_format(tmp_path / "new.pt") == "pytorch-archive"
    assert foreign_format(tmp_path / "old.pt") == "pickle"
    for name in ("new.pt", "old.pt"):
        with pytest.raises(HeaderError):
            read_safetensors_header(tmp_path / name)


def corrupt(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x01\x02", "only 2 bytes"),
    (struct.pack("<Q", 10**12) + b"{}", "impossible"),
    (struct.pack("<Q", 64) + b"{}", "truncated"),
    (struct.pack("<Q", 8) + b"not json", "not JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (struct.pack("<Q", 30) + b'{"__metadata__": {"a": 1}}    ', "map of strings"),
    (struct.pack("<Q", 56) + b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'[:56], "not JSON"),
])
def test_broken_headers_are_refused_with_the_reason(tmp_path, data, reason):
    path = corrupt(tmp_path, "bad.safetensors", data)
    with pytest.raises(HeaderError, match=reason):
        read_safetensors_header(path)
    assert foreign_format(path) is None


def test_data_section_must_match_the_header(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.zeros(8)}, str(path))
    data = path.read_bytes()
    cut = corrupt(tmp_path, "cut.safetensors", data[:-4])
    with pytest.raises(HeaderError, match="32 bytes of tensor data but only 28 follow"):
        read_safetensors_header(cut)
    long = corrupt(tmp_path, "long.safetensors", data + b"\0\0")
    with pytest.raises(HeaderError, match="2 unexpected bytes"):
        read_safetensors_header(long)
    length = header_length(path)
    wrong = data[8:8 + length].replace(b"[8]", b"[9]")
    with pytest.raises(HeaderError, match="does not match its 32 data bytes"):
        read_safetensors_header(corrupt(tmp_path, "shape.safetensors", data[:8] + wrong + data[8 + length:]))
