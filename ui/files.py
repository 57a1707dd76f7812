"""Per-request folders: every file a request writes lives in its own folder under ``TMP_ROOT``, which is
deleted when the request fails and, like Gradio's copies, after ``KEEP_SECONDS``."""
from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
import zipfile
from pathlib import Path

from ui import config


def cleanup(max_age: float = config.KEEP_SECONDS, only_pid: int | None = None) -> None:
    """Delete request folders older than ``max_age`` seconds (or every folder of process ``only_pid``)."""
    root = config.TMP_ROOT
    if not root.is_dir():
        return
    now = time.time()
    for d in root.iterdir():
        try:
            mine = only_pid is not None and d.name.startswith(f"{only_pid}@{HOST}-")
            if mine or (only_pid is None and now - d.stat().st_mtime > max_age):
                shutil.rmtree(d, ignore_errors=True)
        except OSError:  # another process removed it first
            pass


HOST = re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname()) or "host"
PREFIX = f"{os.getpid()}@{HOST}-"          # a request folder: <pid>@<host>-<mkdtemp's 8 characters>
_NAME = re.compile(r"(\d{1,9})@(.+)-[a-z0-9_]{8}")
_STARTED = time.time()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this machine (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):   # no permission to signal it: it exists
        return True
    return True


def cleanup_orphans() -> None:
    """Delete the request folders that servers on this host left behind when they were killed before ``atexit``
    could sweep them (SIGKILL, a crash): those of processes that no longer run, and those named with this
    process's id but older than it (a restarted container often gets its predecessor's id). Folders of other
    hosts (a shared volume) and anything not named as a request folder are left alone. Called when the server
    starts."""
    root = config.TMP_ROOT
    if not root.is_dir():
        return
    for d in root.iterdir():
        m = _NAME.fullmatch(d.name)
        if not m or m.group(2) != HOST or not d.is_dir():
            continue
        pid = int(m.group(1))
        try:
            stale = not _alive(pid) if pid != os.getpid() else d.stat().st_mtime < _STARTED
        except OSError:   # removed meanwhile
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)


def request_dir() -> Path:
    """A fresh folder for one request's files; old ones are swept first."""
    config.TMP_ROOT.mkdir(parents=True, exist_ok=True)
    cleanup()
    return Path(tempfile.mkdtemp(prefix=PREFIX, dir=config.TMP_ROOT))


@contextlib.contextmanager
def request_folder():
    """A request's folder, deleted again when the request does not finish (stopped or failed)."""
    req = request_dir()
    try:
        yield req
    except BaseException:
        shutil.rmtree(req, ignore_errors=True)
        raise


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "clip"


def zip_folder(folder: Path, out: Path) -> str:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            if f.is_file():
                z.write(f, arcname=f.name)
    return str(out)


atexit.register(cleanup, only_pid=os.getpid())
