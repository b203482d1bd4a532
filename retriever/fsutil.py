"""Publishing a folder atomically: build it beside its target, then rename it into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def publish_dir(target: Path, write: Callable[[Path], None], *, complete_marker: str,
                replace: bool = False) -> Path:
    """Run ``write(tmp)`` on a temporary sibling folder, then rename it to ``target``.

    A killed writer never leaves a half-written ``target``. When another process published
    ``target`` first (it holds ``complete_marker``), that copy is kept and ours dropped.
    ``replace`` first moves an existing (stale or damaged) ``target`` aside, also by rename.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        write(tmp)
        if replace and target.exists():
            stale = Path(tempfile.mkdtemp(prefix=".old-", dir=target.parent))
            os.replace(target, stale / "entry")
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / complete_marker).is_file():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
