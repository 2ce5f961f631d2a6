"""Module archives: deterministic packing, and refusal of every unsafe member."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from graft.errors import ChecksumError, ManifestError, UnsafeArchiveError
from graft.hub.archive import Limits, extract, inspect, pack
from tests.hub.conftest import fake_module


def test_pack_is_deterministic_and_extracts_to_the_same_files(tmp_path):
    module = fake_module(tmp_path / "m")
    sha1, size1 = pack(module, tmp_path / "a.tar")
    (module / "model.keras").touch()  # a new mtime must not change the archive
    sha2, size2 = pack(module, tmp_path / "b.tar")
    assert (sha1, size1) == (sha2, size2)
    assert inspect(tmp_path / "a.tar").name == "digits"
    out = tmp_path / "out"
    extract(tmp_path / "a.tar", out)
    assert (out / "model.keras").read_bytes() == (module / "model.keras").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_pack_refuses_a_damaged_module(tmp_path):
    module = fake_module(tmp_path / "m")
    (module / "model.keras").write_bytes(b"changed")
    with pytest.raises(ChecksumError, match="model.keras"):
        pack(module, tmp_path / "a.tar")
    assert not list(tmp_path.glob("*.tar")) and not list(tmp_path.glob(".*tmp"))


def _tar_with(path: Path, module: Path, extra: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    """A valid module archive plus ``extra`` members."""
    with tarfile.open(path, "w") as tar:
        for rel in ("manifest.json", "model.keras", "assets/labels.txt"):
            tar.add(module / rel, arcname=rel)
        for info in extra:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 1 if kind == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize(
    "member, message",
    [
        (_member("../evil.txt"), "relative path without '..'"),
        (_member("assets/../../evil.txt"), "relative path without '..'"),
        (_member("/tmp/evil.txt"), "relative path"),
        (_member("assets\\..\\evil.txt"), "backslashes"),
        (_member("C:evil.txt"), "drive letter"),
        (_member("link", tarfile.SYMTYPE, linkname="/etc/passwd"), "is a link"),
        (_member("hard", tarfile.LNKTYPE, linkname="model.keras"), "is a link"),
        (_member("dev", tarfile.CHRTYPE, devmajor=1, devminor=3), "device or special file"),
        (_member("fifo", tarfile.FIFOTYPE), "device or special file"),
        (_member("model.keras"), "holds model.keras twice"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(tmp_path, member, message):
    module = fake_module(tmp_path / "m")
    archive = _tar_with(tmp_path / "evil.tar", module, [member])
    out = tmp_path / "sandbox" / "out"
    with pytest.raises(UnsafeArchiveError, match=message) as info:
        extract(archive, out)
    assert "Received: member=" in str(info.value)
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "sandbox").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    with pytest.raises(UnsafeArchiveError, match=message):
        inspect(archive)


def test_member_count_and_total_size_are_capped(tmp_path):
    module = fake_module(tmp_path / "m", size=5000)
    archive = tmp_path / "a.tar"
    pack(module, archive)
    with pytest.raises(UnsafeArchiveError, match=r"more than 2 members .*GRAFT_HUB_MAX_MEMBERS"):
        extract(archive, tmp_path / "o1", Limits(max_members=2))
    with pytest.raises(UnsafeArchiveError, match=r"more than 4000 bytes .*GRAFT_HUB_MAX_BYTES"):
        extract(archive, tmp_path / "o2", Limits(max_bytes=4000))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_truncated_archive_and_unlisted_files_are_refused(tmp_path):
    module = fake_module(tmp_path / "m", size=50_000)
    archive = tmp_path / "a.tar"
    pack(module, archive)
    data = archive.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeArchiveError, match="truncated"):
        inspect(tmp_path / "cut.tar")
    with pytest.raises(UnsafeArchiveError, match="truncated"):
        extract(tmp_path / "cut.tar", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    extra = _tar_with(tmp_path / "extra.tar", module, [_member("assets/unlisted.bin")])
    with pytest.raises(ManifestError, match="unlisted=\\['assets/unlisted.bin'\\]"):
        inspect(extra)


def test_inspect_finds_a_member_that_differs_from_the_manifest(tmp_path):
    module = fake_module(tmp_path / "m")
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(module / "manifest.json", arcname="manifest.json")
        tar.add(module / "assets/labels.txt", arcname="assets/labels.txt")
        info = tar.gettarinfo(module / "model.keras", arcname="model.keras")
        flipped = bytearray((module / "model.keras").read_bytes())
        flipped[100] ^= 0xFF
        tar.addfile(info, io.BytesIO(bytes(flipped)))
    with pytest.raises(ChecksumError, match="model.keras in the archive differs"):
        inspect(archive)
