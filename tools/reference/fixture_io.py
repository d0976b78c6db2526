"""Shared helpers of the fixture generators in tools/reference/ (imported as a sibling module)."""
import json
import struct


def canonicalize_header(path):
    """Rewrite the JSON header with sorted __metadata__ keys so the file is byte-reproducible.

    safetensors serialises the metadata map in hash order, which varies from run
    to run. Tensor offsets are relative to the data section, so reordering keys
    and re-padding to the same header length changes nothing else.
    """
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    ordered = {}
    if meta is not None:
        ordered["__metadata__"] = dict(sorted(meta.items()))
    for k in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
        ordered[k] = header[k]
    new = json.dumps(ordered, separators=(",", ":")).encode("utf-8")
    assert len(new) <= n, "canonical header longer than original"
    new += b" " * (n - len(new))
    with open(path, "wb") as f:
        f.write(blob[:8] + new + blob[8 + n:])
