"""e5rag.fsutil, the one module for atomic writes, folder publishing and the writer lock: killed
writers (real SIGKILL) leave old or new content, never a mix; new folders honour the umask; the
lock excludes another process; nothing else in the tree renames files into place by hand."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from e5rag import fsutil

REPO = Path(__file__).resolve().parents[1]


def test_atomic_writes_replace_whole_files_and_leave_nothing_on_error(tmp_path):
    path = tmp_path / "state.json"
    fsutil.atomic_write_json(path, {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    with pytest.raises(RuntimeError), fsutil.atomic_open(path) as fh:
        fh.write("half of a new")
        raise RuntimeError("killed")
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    fsutil.atomic_write_bytes(path, b"x", unique=True)
    assert path.read_bytes() == b"x" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


_WRITER = textwrap.dedent("""
    import sys
    from e5rag import fsutil
    path = sys.argv[1]
    print("ready", flush=True)
    for i in range(100000):
        fsutil.atomic_write_bytes(path, (b"A" if i % 2 else b"B") * 2_000_000)
""")


@pytest.mark.parametrize("delay", [0.2, 0.5])
def test_a_killed_writer_leaves_old_or_new_content_never_a_mix(tmp_path, delay):
    path = tmp_path / "big.bin"
    path.write_bytes(b"B" * 2_000_000)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = path.read_bytes()
    assert len(data) == 2_000_000 and len(set(data)) == 1


def test_published_folders_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = fsutil.publish_dir(tmp_path / "model", lambda d: (d / "config.json").write_text("{}"),
                                    complete_marker="config.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert (target / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_replace_dir_swaps_a_folder_whole(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "old.txt").write_text("old")
    new = tmp_path / ".adapter.tmp"
    new.mkdir()
    (new / "new.txt").write_text("new")
    fsutil.replace_dir(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_the_lock_excludes_another_process(tmp_path):
    lock = tmp_path / ".lock"
    probe = "import sys; from e5rag import fsutil; print(fsutil.is_locked(sys.argv[1]))"
    with fsutil.FileLock(lock):
        with pytest.raises(fsutil.LockHeld):
            fsutil.FileLock(lock)
        out = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "True"
    out = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fsutil_is_the_lowest_layer():
    code = "import sys, e5rag.fsutil; print(sorted(m for m in sys.modules if m.startswith('e5rag')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['e5rag', 'e5rag.fsutil']"


# The generation scheme renames its finished work folder itself (indexers/atomic.py, built on fsutil).
_ALLOWED = {"e5rag/fsutil.py", "indexers/atomic.py"}
_HAND_WRITTEN = re.compile(r"\bos\.(replace|rename)\(|\bfcntl\.flock\(|tempfile\.mkdtemp\(")


def test_no_other_module_renames_or_locks_by_hand():
    found = [f"{rel}:{n}" for root in ("e5rag", "retriever", "indexers", "training", "synth")
             for path in sorted((REPO / root).rglob("*.py"))
             for rel in [str(path.relative_to(REPO))] if rel not in _ALLOWED
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if _HAND_WRITTEN.search(line)]
    assert found == []
