"""Small real images for tests, made without an imaging library: a PNG of any size, and the
dimensions read back from a JPEG."""

from __future__ import annotations

import struct
import zlib


def png(width: int, height: int, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A valid ``width`` x ``height`` RGB PNG: a colour gradient on ``rgb`` (so it is not one flat colour)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + bytes(value for x in range(width) for value in (rgb[0], (rgb[1] + x) % 256, (rgb[2] + y) % 256))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a JPEG's start-of-frame marker (an AssertionError if it is not a JPEG)."""
    assert data[:2] == b"\xff\xd8", f"not a JPEG: starts {data[:8]!r}"
    at = 2
    while at + 4 <= len(data):
        assert data[at] == 0xFF, f"JPEG marker expected at byte {at}"
        marker, length = data[at + 1], struct.unpack(">H", data[at + 2:at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        at += 2 + length
    raise AssertionError("JPEG without a start-of-frame marker")
