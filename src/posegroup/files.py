"""Outputs written whole or not at all, and the one refusal of an existing output.

Every file the package writes for the user (predict's results and pictures, a video, evaluate's
stats, an exported ONNX model, checkpoints, benchmark and demo tables, converted weights) goes
through :func:`replacing`: the data goes to a temporary file beside the target, renamed over it
only once complete, so a failed or interrupted write leaves the target as it was and no
temporary file behind. :func:`refuse_existing` is the one check that an output is not replaced
without ``--overwrite``.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def file_mode() -> int:
    """The permission bits a new file gets under the current umask (0644 under umask 022):
    what a file written through a private temporary file is given before it is moved into place."""
    try:   # Linux: read without changing it (os.umask sets it, for a moment, for every thread)
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def _naming(e: OSError, path: Path, tmp: Path | None) -> OSError:
    """``e`` naming ``path`` when it names no file or the temporary file ``tmp`` (errno and
    reason kept); any other OSError as it is."""
    if e.filename is None or (tmp is not None and e.filename == str(tmp)):
        return OSError(e.errno, e.strerror or str(e), str(path))
    return e


def _fsync(path: Path) -> None:
    """The data of ``path`` (a file or a folder) flushed to the disk."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | Path, *, tmp: str | Path | None = None, unique: bool = False,
              fsync: bool = False) -> Iterator[Path]:
    """Write ``path`` whole or not at all: yields the temporary file the block writes; when the
    block ends without an exception that file is renamed over ``path``, else deleted (``path``
    left as it was).

    Args:
        tmp: the temporary file (default ``.NAME.tmp`` beside ``path``).
        unique: a new ``.NAME.<random>.tmp`` beside ``path`` instead (``mkstemp``), given the
            mode the umask gives a new file (:func:`file_mode`).
        fsync: the data flushed to the disk before the rename, and the folder's entry after it.

    The folder of ``path`` is created when missing. An OSError that names no file or the
    temporary file is raised naming ``path`` (errno and reason kept); other exceptions pass as
    they are.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if unique:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
            os.close(fd)
            tmp = Path(name)
            os.chmod(tmp, file_mode())
        else:
            tmp = Path(tmp) if tmp is not None else path.with_name(f".{path.name}.tmp")
    except OSError as e:
        raise _naming(e, path, None) from None
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise _naming(e, path, tmp) from None
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
    if fsync:
        try:
            _fsync(path.parent)
        except OSError:
            pass


def write_bytes_atomic(path: str | Path, data: bytes, tmp: str | Path | None = None, *, unique: bool = False,
                       fsync: bool = False) -> Path:
    """``data`` at ``path`` through :func:`replacing` (its ``tmp``, ``unique`` and ``fsync``);
    returns ``path``."""
    with replacing(path, tmp=tmp, unique=unique, fsync=fsync) as t:
        t.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, **kw) -> Path:
    """``text`` (UTF-8) at ``path`` (:func:`write_bytes_atomic`, its keywords)."""
    return write_bytes_atomic(path, text.encode("utf-8"), **kw)


def write_json_atomic(path: str | Path, obj, *, indent: int | None = None, **kw) -> Path:
    """``obj`` as json (``json.dumps(obj, indent=indent)``) at ``path`` (:func:`write_bytes_atomic`)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent), **kw)


def refuse_existing(path: str | Path | None, overwrite: bool, *, error: type[Exception] = ValueError,
                    what: str = "--out", found: str = "already exists", to: str = "replace it",
                    exists: bool | None = None) -> None:
    """Refuse to replace an output without ``--overwrite``: raises ``error`` with the one line
    ``"PATH: FOUND; pass --overwrite to TO, or choose another WHAT"`` when ``path`` exists
    (``exists``: the caller's own finding instead, e.g. a folder that is not empty) and not
    ``overwrite``. Nothing when ``path`` is None."""
    if path is None or overwrite:
        return
    if Path(path).exists() if exists is None else exists:
        raise error(f"{path}: {found}; pass --overwrite to {to}, or choose another {what}")
