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
