"""State on disk is its owner's alone: files 0600, the folders made for them 0700."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def private_file(path: Path) -> None:
    """Make ``path`` (and its missing folders) readable by its owner only.

    SQLite gives its journal files the database file's mode.
    """
    private_folder(path.parent)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(descriptor)
    with contextlib.suppress(PermissionError):  # another user's file: theirs to tighten
        path.chmod(0o600)


def private_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) owner-only where they do not exist yet."""
    missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    for parent in reversed(missing):
        parent.mkdir(mode=0o700, exist_ok=True)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole, owner-only: a temporary file beside it,
    flushed to disk, then renamed over it; a reader sees the old text or the new, never
    half of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as written:
            written.write(text)
            written.flush()
            os.fsync(written.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)
