"""Files written whole or not at all, the commit that produced them, and the digests of the
data files a run read.

JSON, YAML, text and ``.pt`` files are written atomically (temporary file + ``os.replace``), so a
reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_digests",
    "git_commit",
    "is_complete",
    "json_bytes",
    "json_safe",
    "sha256_file",
]


def atomic_write(path: Path, write: Any, mode: str = "wb") -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; files get the user's umask
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text), "w")


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented UTF-8 JSON (non-ASCII kept as it is) with a final newline."""
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (NaN/inf become null) atomically."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    atomic_write_text(path, text)


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f), "wb")


def git_commit(directory: str | os.PathLike[str] | None = None) -> str:
    """HEAD's commit of the repository holding ``directory`` (default: this package).

    A tree with uncommitted changes to tracked files gets the suffix ``" (with uncommitted
    changes)"``, so a result is never attributed to a commit that did not produce it; outside a
    git checkout the answer is ``"unknown"``. Changes under ``results/`` do not count: they are
    rendered outputs, which no run reads (a target that renders one result and then runs the next
    would otherwise mark every later run). Read-only: ``--no-optional-locks`` keeps
    ``git status`` from rewriting the index.
    """
    directory = Path(directory or Path(__file__).resolve().parent)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    try:
        outputs = ":(top,exclude)results"
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", outputs))
    except (OSError, subprocess.SubprocessError):
        dirty = False
    return f"{commit} (with uncommitted changes)" if dirty else commit


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 22) -> str:
    """The hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_digests(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """``{name: sha256}`` of every file in ``paths``; a directory stands for the files under it.

    A file is named by its own name, a file found under a listed directory by
    ``<directory name>/<path inside it>``, so two runs that read the same bytes under different
    roots (another machine's data dir) record the same mapping. Hidden files (``.lock``,
    temporary files) are left out.
    """
    digests: dict[str, str] = {}
    for entry in map(Path, paths):
        if entry.is_dir():
            files = sorted(
                f for f in entry.rglob("*") if f.is_file() and not _hidden(f.relative_to(entry))
            )
            for f in files:
                digests[f"{entry.name}/{f.relative_to(entry).as_posix()}"] = sha256_file(f)
        elif entry.is_file():
            digests[entry.name] = sha256_file(entry)
        else:
            raise FileNotFoundError(f"data file {entry} is gone (it was read when the data loaded)")
    return digests


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def is_complete(out_dir: str | os.PathLike[str], meta: str = "meta.json") -> bool:
    """True when ``<out_dir>/<meta>`` exists and every file its ``files`` mapping lists exists
    with its recorded ``bytes``: the mark of an output folder written file by file, meta last."""
    try:
        facts = json.loads((Path(out_dir) / meta).read_text(encoding="utf-8"))["files"]
        sizes = {name: int(f["bytes"]) for name, f in facts.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    for name, size in sizes.items():
        path = Path(out_dir) / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True
