"""Official dataset sources, verified downloads, and finding a dataset's local copy.

:data:`SOURCES` is the table of official files (URLs in mirror order + checksum), one row per
file. :func:`download` streams one file into a temp file next to its destination, checks the
digest, then renames it into place atomically, so a file that exists is complete and verified.
:func:`obtain` is what builders call: find the local copy (see :mod:`archlab.data.cache` for the
look-up order) or download it, or raise :class:`DatasetNotFoundError` saying how to get it.

The CLI uses :func:`prepare` (``archlab data prepare NAME``) and :func:`describe_sources`
(``archlab data ls``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from archlab.data._registry import DATASETS
from archlab.data.cache import (ENV_DATA, DatasetNotFoundError, env_data_dir, search_dirs,
                                user_cache_dir)
from archlab.data.idx import CorruptDataError

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20


class ChecksumError(CorruptDataError):
    """A downloaded file's digest differs from the published one."""


class DownloadError(OSError):
    """Every URL of a file failed (the message lists each URL and its reason)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class SourceFile:
    filename: str
    urls: tuple[str, ...]  # mirrors, tried in order
    md5: str
    # Names that also count as "this file is present", e.g. the unzipped file or the directory
    # a tarball extracts to; only ``filename`` is ever downloaded.
    local_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSource:
    files: tuple[SourceFile, ...]
    system_dirs: tuple[str, ...] = ()  # system-wide copies, searched after the user cache
    how_to_get: tuple[str, ...] = ()  # dataset-specific hints for the not-found message
    homepage: str = ""


def _idx_files(mirrors: Sequence[str], md5s: dict[str, str]) -> tuple[SourceFile, ...]:
    return tuple(SourceFile(f, tuple(m + f for m in mirrors), md5, local_names=(f[:-3],))
                 for f, md5 in md5s.items())


# Checksums are those published with the datasets (and used by torchvision).
_FASHION_MIRRORS = (
    # Zalando's official S3 site (http only: S3 website endpoints do not serve https).
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# yann.lecun.com often refuses downloads; torchvision's mirror comes first.
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "http://yann.lecun.com/exdb/mnist/")
_TORONTO = "https://www.cs.toronto.edu/~kriz/"

SOURCES: dict[str, DatasetSource] = {
    "fashion_mnist": DatasetSource(
        files=_idx_files(_FASHION_MIRRORS, {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        }),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        how_to_get=("install the Debian package: apt-get install dataset-fashion-mnist",),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "mnist": DatasetSource(
        files=_idx_files(_MNIST_MIRRORS, {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        }),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "cifar10": DatasetSource(
        files=(SourceFile("cifar-10-python.tar.gz", (_TORONTO + "cifar-10-python.tar.gz",),
                          "c58f30108f718f92721af3b95e74349a",
                          local_names=("cifar-10-batches-py", "batches.meta")),),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": DatasetSource(
        files=(SourceFile("cifar-100-python.tar.gz", (_TORONTO + "cifar-100-python.tar.gz",),
                          "eb9058c3a382ffc7106e4002c42a8d85",
                          local_names=("cifar-100-python", "meta")),),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}


def file_digest(path: str | Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def download(url_or_urls: str | Sequence[str], dest: str | Path, md5: str | None = None,
             sha256: str | None = None, timeout_s: float = TIMEOUT_S) -> Path:
    """Download to ``dest``, trying mirrors in order; verify md5/sha256; return ``dest``.

    The bytes go to a temp file in ``dest``'s directory that is renamed onto ``dest`` only after
    the checksum matched, so ``dest`` never holds a partial or unverified file. A mirror that
    serves wrong bytes is skipped like one that is down; when all fail, the error is a
    :class:`ChecksumError` (expected and actual digest) if any mirror served wrong bytes, else a
    :class:`DownloadError` listing each URL and its reason.
    """
    urls = [url_or_urls] if isinstance(url_or_urls, str) else list(url_or_urls)
    if not urls:
        raise ValueError("download() needs at least one URL")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = {k: v.lower() for k, v in (("md5", md5), ("sha256", sha256)) if v}
    failures: list[str] = []
    mismatch: str | None = None
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from others sharing the directory
        try:
            hashes = {k: hashlib.new(k) for k in expected}
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
                while chunk := resp.read(CHUNK_BYTES):
                    out.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
            bad = {k: h.hexdigest() for k, h in hashes.items() if h.hexdigest() != expected[k]}
            if bad:
                mismatch = "; ".join(f"{k} expected {expected[k]}, got {v}" for k, v in bad.items())
                failures.append(f"{url}: checksum mismatch ({mismatch})")
                log.warning("%s: checksum mismatch from %s (%s)", dest.name, url, mismatch)
                continue
            os.replace(tmp, dest)
            log.info("downloaded %s -> %s", url, dest)
            return dest
        except urllib.error.HTTPError as e:
            failures.append(f"{url}: HTTP {e.code} {e.reason}")
        except (urllib.error.URLError, OSError, ValueError) as e:  # refused, DNS, timeout, bad URL
            failures.append(f"{url}: {getattr(e, 'reason', None) or e}")
        finally:
            tmp.unlink(missing_ok=True)
    detail = "\n  ".join(failures)
    if mismatch is not None:
        raise ChecksumError(f"{dest.name}: downloaded bytes do not match the published checksum "
                            f"({mismatch}); tried:\n  {detail}")
    raise DownloadError(f"could not download {dest.name}; tried:\n  {detail}")


def _present(directory: Path, file: SourceFile) -> Path | None:
    for name in (file.filename, *file.local_names):
        if (directory / name).exists():
            return directory / name
    return None


def locate(name: str, root: str | Path | None = None) -> Path | None:
    """The first searched directory holding every file of ``name`` (or None)."""
    source = SOURCES[name]
    for directory in search_dirs(name, root, source.system_dirs):
        if all(_present(directory, f) for f in source.files):
            return directory
    return None


def fetch(name: str, directory: str | Path) -> Path:
    """Download (and verify) the files of ``name`` that ``directory`` lacks; return it."""
    directory = Path(directory)
    for file in SOURCES[name].files:
        if _present(directory, file) is None:
            download(file.urls, directory / file.filename, md5=file.md5)
    return directory


def obtain(name: str, root: str | Path | None = None, download: bool = True) -> Path:
    """The directory holding ``name``'s files: found locally, or downloaded when allowed.

    Downloads go to ``root`` when given, else to the user cache. Raises
    :class:`DatasetNotFoundError` listing where it looked, why the download failed and how to
    get the data.
    """
    found = locate(name, root)
    if found is not None:
        return found
    source = SOURCES[name]
    searched = search_dirs(name, root, source.system_dirs)
    target = Path(root).expanduser() if root is not None else user_cache_dir(name)
    if download:
        try:
            return fetch(name, target)
        except (DownloadError, ChecksumError) as e:
            raise DatasetNotFoundError(not_found_message(name, searched, e, root)) from e
    raise DatasetNotFoundError(not_found_message(name, searched, None, root))


def not_found_message(name: str, searched: Sequence[Path], error: Exception | None,
                      root: str | Path | None = None) -> str:
    source = SOURCES[name]
    files = ", ".join(f.filename for f in source.files)
    lines = [f"dataset '{name}' not found (needs {files}).", "Searched:"]
    lines += [f"  {d}" for d in searched]
    if root is None and env_data_dir(name) is None:
        lines.append(f"  (${ENV_DATA} is not set)")
    lines.append("Download: " + ("not attempted (download=False)" if error is None
                                 else f"failed: {error}"))
    lines.append("To get it:")
    hints = [*source.how_to_get,
             f"put the files in a directory and set ARCHLAB_DATA to its parent "
             f"(the files go in $ARCHLAB_DATA/{name}/), or pass root=DIR",
             f"or run `archlab data prepare {name}` on a machine with internet access and copy "
             f"{user_cache_dir(name)} over"]
    lines += [f"  - {h}" for h in hints]
    if source.homepage:
        lines.append(f"Official page: {source.homepage}")
    return "\n".join(lines)


def _register_builtins() -> None:
    import archlab.data  # noqa: F401  (importing the package registers every builder)


def prepare(name: str, root: str | Path | None = None) -> Path | str:
    """Make ``name`` usable offline (find or download + verify) and return where it lives.

    The dataset is fully parsed, so a damaged local copy is reported now rather than at
    training time. Datasets without files (``digits``, ``synthetic``) return a description.
    """
    _register_builtins()
    bundle = DATASETS.get(name)(root=root, download=True)
    path = Path(bundle.source)
    return path if path.exists() else bundle.source


@dataclass(frozen=True)
class SourceInfo:
    name: str
    description: str
    downloadable: bool
    synthetic: bool
    location: str | None  # where the data is now; None: not present locally
    files: tuple[str, ...] = field(default=())


def describe_sources(name: str | None = None) -> list[SourceInfo]:
    """One :class:`SourceInfo` per registered dataset (or just ``name``), for ``archlab data ls``."""
    _register_builtins()
    names = [DATASETS.entry(name).name] if name is not None else DATASETS.list()
    infos = []
    for n in names:
        meta = DATASETS.entry(n).meta
        if n in SOURCES:
            found = locate(n)
            location = str(found) if found is not None else None
            files = tuple(f.filename for f in SOURCES[n].files)
        else:
            location, files = meta.get("location"), ()
        infos.append(SourceInfo(n, meta.get("description", ""), bool(meta.get("downloadable")),
                                bool(meta.get("synthetic")), location, files))
    return infos
