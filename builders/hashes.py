"""64-bit hashes of whole Arrow string columns, and hexadecimal ids as integers, without a Python string per
value: the hash reads each value's UTF-8 bytes straight from the column's buffer (xxh3, 64 bits); hex ids are
decoded with numpy. Used on the hot path of a build (dedup signatures, leakage checks)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import xxhash


def _offsets(arr: pa.Array) -> np.ndarray:
    dtype = np.int64 if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) else np.int32
    return np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset:arr.offset + len(arr) + 1]


def _array(values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values if isinstance(values, pa.Array) else pa.array(values, pa.string())


def text_hash64(text: str) -> int:
    """``xxh3_64`` of one str's UTF-8 bytes: what ``hash64`` gives for it in a column."""
    return xxhash.xxh3_64_intdigest(text.encode())


def hash64(values: pa.Array | pa.ChunkedArray | list[str | None]) -> np.ndarray:
    """``xxh3_64`` of each value's UTF-8 bytes (a null hashes like the empty string), as ``uint64``."""
    arr = _array(values)
    if not len(arr):
        return np.zeros(0, np.uint64)
    offsets = _offsets(arr).tolist()
    data = arr.buffers()[2]
    view = memoryview(data) if data is not None else memoryview(b"")
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(view[a:b]) for a, b in zip(offsets[:-1], offsets[1:])), dtype=np.uint64, count=len(arr))


HEX_ROWS = 1 << 16
_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def hex64(values: pa.Array | pa.ChunkedArray | list[str], digits: int = 16) -> np.ndarray:
    """The first ``digits`` (<= 16) hexadecimal digits of each value as ``uint64`` (``int(v[:digits], 16)``).
    Raises ValueError on a value that is shorter or not hexadecimal there."""
    arr = _array(values)
    if not len(arr):
        return np.zeros(0, np.uint64)
    if arr.null_count:
        raise ValueError("hex64: null value")
    offsets = _offsets(arr).astype(np.int64)
    if np.any(offsets[1:] - offsets[:-1] < digits):
        raise ValueError(f"hex64: a value is shorter than {digits} hex digits")
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    out = np.zeros(len(arr), dtype=np.uint64)
    for lo in range(0, len(arr), HEX_ROWS):  # a slice at a time: the digit table is digits bytes x rows
        starts = offsets[lo:min(lo + HEX_ROWS, len(arr))]
        nibbles = _HEX[data[starts[:, None] + np.arange(digits)]]
        if np.any(nibbles == 255):
            raise ValueError("hex64: a value is not hexadecimal")
        part = np.zeros(len(starts), dtype=np.uint64)
        for j in range(digits):
            part = (part << np.uint64(4)) | nibbles[:, j].astype(np.uint64)
        out[lo:lo + len(starts)] = part
    return out
