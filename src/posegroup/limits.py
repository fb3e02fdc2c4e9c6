"""Bounds on the sizes a user can ask for, checked before any work (docs/robustness.md).

Each bound is far above what the bundled configs and models use and well below what ends in an
allocation error or a machine out of memory:

- :data:`MAX_INPUT_SIZE`: a network input side in pixels, after test-time scaling
  (``--input-size``, ``test.input_size``, ``data.input_size``, ``input_size x max(scales)``);
  at 4096 one tiny-hourglass forward pass already holds several GB of activations.
- :data:`MAX_SCALE` / :data:`MIN_SCALE`: a test-time scale factor.
- :data:`MAX_BATCH_SIZE`: ``train.batch_size`` per process.
- :func:`max_workers`: data-loader / synth worker processes: 4 per CPU core (at least 8).
- :data:`MAX_SYNTH_SIZE`: ``synth --size``, the synthetic image side.
- :data:`MAX_IMAGE_PIXELS`: width x height of an image read (read from the file's header
  before decoding: a larger one, e.g. a decompression bomb, is skipped like an unreadable image).
"""
from __future__ import annotations

import math
import os
import struct

MAX_INPUT_SIZE = 4096
MIN_INPUT_SIZE = 16
MAX_SCALE = 4.0
MIN_SCALE = 1 / 16
MAX_BATCH_SIZE = 1024
MAX_SYNTH_SIZE = 4096
MIN_SYNTH_SIZE = 32
MAX_IMAGE_PIXELS = 2 ** 27        # 134 million: a 16000 x 8000 panorama; decoded RGB: 400 MB


def max_workers() -> int:
    """The most worker processes allowed: 4 per CPU core of this machine, at least 8."""
    return max(8, 4 * (os.cpu_count() or 1))


def check_int(value, what: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high], else ``ValueError`` naming ``what`` (a flag or key)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value:
        raise ValueError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be in [{low}, {high}], got {value!r}")
    return int(value)


def check_test_sizes(opts: dict, label) -> None:
    """``input_size`` and ``scales`` of test-time options within the bounds, else ``ValueError``;
    ``label(key)`` names an option in the message (e.g. ``--input-size``, or a file's
    ``'test.input_size'``)."""
    size = opts.get("input_size")
    if size is not None:
        check_int(size, label("input_size"), MIN_INPUT_SIZE, MAX_INPUT_SIZE)
    scales = opts.get("scales")
    if scales is None:
        return
    values = list(scales) if isinstance(scales, (list, tuple)) else [scales]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not MIN_SCALE <= v <= MAX_SCALE:
            raise ValueError(f"{label('scales')} must be numbers in [{MIN_SCALE:g}, {MAX_SCALE:g}], got {v!r}")
    if size is not None and values and size * max(values) > MAX_INPUT_SIZE:
        raise ValueError(f"{label('scales')}: input size {size} x scale {max(values):g} is above the largest "
                         f"network input ({MAX_INPUT_SIZE} px)")


def image_header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, JPEG, BMP or GIF file, or None when the
    format is another one or the header is cut short."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:2] in (b"BM",) and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of the first start-of-frame marker of a JPEG."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def check_image_pixels(buf, path) -> None:
    """Raise ``ValueError`` when the header of the encoded image ``buf`` declares more than
    :data:`MAX_IMAGE_PIXELS` pixels (checked before decoding)."""
    size = image_header_size(bytes(buf[:262144]))   # past the EXIF segments to the frame header
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"{path}: image of {size[0]} x {size[1]} pixels, above the limit of "
                         f"{MAX_IMAGE_PIXELS} (not decoded)")
