"""``posegroup.files``: outputs written whole or not at all (no temporary file left, the old file
intact on failure, the umask's mode, errors naming the target) and the one overwrite refusal."""
from __future__ import annotations

import errno
import json
import os

import pytest

from posegroup.files import refuse_existing, replacing, write_bytes_atomic, write_json_atomic, write_text_atomic


def test_writes_leave_the_file_and_nothing_else(tmp_path):
    out = tmp_path / "sub" / "a.json"                          # the folder is made
    assert write_json_atomic(out, {"x": [1, 2]}, indent=1) == out
    assert out.read_text() == json.dumps({"x": [1, 2]}, indent=1)
    write_text_atomic(out, "é\n")
    assert out.read_bytes() == "é\n".encode()
    write_bytes_atomic(out, b"\x00\x01", tmp_path / "sub" / "own.tmp")
    assert out.read_bytes() == b"\x00\x01" and os.listdir(out.parent) == ["a.json"]


@pytest.mark.parametrize("unique", [False, True])
def test_new_files_get_the_umask_mode(tmp_path, unique):
    old = os.umask(0o027)
    try:
        path = write_bytes_atomic(tmp_path / "m.bin", b"x", unique=unique, fsync=unique)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640 and os.listdir(tmp_path) == ["m.bin"]


def test_a_failed_write_keeps_the_old_file_and_names_it(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    out.write_text("old")

    def failing(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError) as info:
        write_text_atomic(out, "new")
    assert info.value.filename == str(out) and info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="half-way"):
        with replacing(out, unique=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("half-way")
    assert out.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_an_error_about_another_file_is_left_as_it_is(tmp_path):
    other = tmp_path / "input.txt"
    with pytest.raises(FileNotFoundError) as info:
        with replacing(tmp_path / "out.txt") as tmp:
            tmp.write_text(other.read_text())
    assert info.value.filename == str(other) and os.listdir(tmp_path) == []


def test_refuse_existing_is_one_line_naming_the_file(tmp_path):
    class Refused(ValueError):
        pass

    path = tmp_path / "x.json"
    refuse_existing(path, False)                               # absent: nothing
    refuse_existing(None, False)
    path.write_text("[]")
    refuse_existing(path, True)                                # --overwrite given
    with pytest.raises(Refused) as info:
        refuse_existing(path, False, error=Refused, what="--stats")
    assert str(info.value) == f"{path}: already exists; pass --overwrite to replace it, or choose another --stats"
    with pytest.raises(ValueError, match=r"x\.json: folder is not empty; pass --overwrite to replace the data there, "
                                         r"or choose another --out$"):
        refuse_existing(path, False, found="folder is not empty", to="replace the data there")
    refuse_existing(path, False, exists=False)                 # the caller's own finding
