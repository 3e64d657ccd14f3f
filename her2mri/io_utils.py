"""Atomic file writes and the clean-up of their leftovers: the one atomic-write helper of her2mri.

Every file her2mri writes for a user (``metrics.json``, prediction CSVs, checkpoints, caches, reports) goes
through :func:`atomic_write_bytes` / :func:`atomic_write_text` (or :func:`atomic_write` with a writer
callback): the data go to a temporary sibling with a unique name (``.<name>.<pid>.<random>.her2mri-tmp``),
are flushed and synced (``fsync``), then renamed over the target (``os.replace``), and the folder is synced.
A kill or a full disk leaves the previous file intact; two processes writing the same file never share a
temporary name. :func:`clean_stale_temps` removes the temporary files of dead processes.

This module sits directly in ``her2mri/`` so that every package may import it (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TMP_SUFFIX",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_stale_temps",
    "tmp_name",
]

log = logging.getLogger(__name__)

#: temporary files written by her2mri: ``.<name>.<pid>.<random>.her2mri-tmp``
TMP_SUFFIX = ".her2mri-tmp"
_TMP_RE = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+" + re.escape(TMP_SUFFIX) + r"$")


def tmp_name(path: Path) -> Path:
    """A unique temporary sibling of ``path``: ``.<name>.<pid>.<8 hex>.her2mri-tmp``."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_full_message(path: Path, err: OSError) -> str:
    where = path.parent
    free = ""
    try:
        free = f" ({shutil.disk_usage(where).free / 2**20:.0f} MiB free)"
    except OSError:
        pass
    return f"{path}: could not be written, the disk holding {where} is full{free}: {err}"


class _RecordingWriter:
    """A binary file wrapper that remembers the first ``OSError`` of ``write``.

    Writers implemented in C++ (``torch.save``'s zip writer) turn a failed ``write`` into a ``RuntimeError``
    such as ``unexpected pos``; the recorded error lets :func:`atomic_write` report the real cause (e.g. a
    full disk).
    """

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as err:
            self.error = self.error or err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` through ``write(fh)`` into a temporary sibling, fsync, rename; nothing half-written.

    Args:
        path: the file to write (parents are created).
        write: called with the binary file handle of the temporary file.

    Returns:
        ``path``.

    Raises:
        OSError: the write failed (a full disk is named as such); the previous file, if any, is intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    recorder: _RecordingWriter | None = None
    try:
        with open(tmp, "wb") as fh:
            recorder = _RecordingWriter(fh)
            write(recorder)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        err = exc if isinstance(exc, OSError) else (recorder.error if recorder is not None else None)
        if err is not None and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(err.errno, _disk_full_message(path, err)) from exc
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, rename).

    Raises:
        OSError: the write failed (a full disk is named as such); the previous file, if any, is intact.
    """
    return atomic_write(Path(path), lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def clean_stale_temps(folder: str | Path, patterns: Iterable[re.Pattern[str]] = (_TMP_RE,)) -> list[Path]:
    """Remove the temporary files and folders of dead her2mri processes in ``folder`` (not recursive).

    Only names her2mri writes are touched (``.<name>.<pid>.<hex>.her2mri-tmp`` by default, or the given
    patterns, whose first group is the writer's pid), and only when that process no longer runs.

    Args:
        folder: the folder to clean (absent: nothing to do).
        patterns: compiled regular expressions; group 1 is the pid of the writer.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        for pattern in patterns:
            m = pattern.match(entry.name)
            if m is None or _pid_alive(int(m.group(1))):
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:
                continue
            removed.append(entry)
            break
    if removed:
        log.info("removed %d temporary leftovers of killed runs in %s", len(removed), folder)
    return removed
