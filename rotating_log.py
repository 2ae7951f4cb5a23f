"""A log file that several worker processes append to, rotated by size or by UTC hour.

The prediction log's file sink uses it when BOSTON_API_LOG_ROTATE is set: closed files are renamed
beside the live one (`<stem>.<UTC closing time>[.N]<suffix>`) and gzipped. Standard library only:
the serving image carries it beside prediction_log.py.
"""

from __future__ import annotations

import fcntl
import gzip
import itertools
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ROTATE_SETTING = "BOSTON_API_LOG_ROTATE"
ROTATE_FORMS = (
    "a size such as '100MB' or '1GB' (a whole number of B, KB, MB or GB, each unit 1024 times "
    "the one before), or '1h' or 'hourly'"
)
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
# gzip's own default: close to level 9's size at a fraction of its time
_GZIP_LEVEL = 6


@dataclass(frozen=True)
class Rotation:
    """When a file sink is closed and a new one begun: before a write would take it past
    `max_bytes`, or (`max_bytes` None) at the first write in a new UTC hour."""

    max_bytes: int | None


def parse_rotation(text: str) -> Rotation:
    """BOSTON_API_LOG_ROTATE's value; ValueError names the variable and the accepted forms."""
    spoken = text.strip().upper()
    if spoken in ("1H", "HOURLY"):
        return Rotation(max_bytes=None)
    size = re.fullmatch(r"(\d+)\s*(B|KB|MB|GB)", spoken)
    if size and int(size[1]) > 0:
        return Rotation(max_bytes=int(size[1]) * _SIZE_UNITS[size[2]])
    raise ValueError(f"{ROTATE_SETTING}={text!r} is not a rotation; write {ROTATE_FORMS}")


class RotatingFile:
    """A log file that several worker processes append to, rotated by whichever of them first
    writes past the limit.

    Each write takes an exclusive flock on `.<name>.lock` beside the file, reopens the file if
    another process has rotated it since (the path no longer names the file this one has open),
    rotates it when due (renames it to its closed name and starts a new one), writes the lines
    with one write, and lets go. So a line is never split across files, lost in a renamed file
    or written twice. The renamed file is gzipped after the lock is released, on a thread of
    its own (`_compress`): nobody appends to it any more.
    """

    def __init__(self, path: Path, rotation: Rotation, clock: Callable[[], float]) -> None:
        self.path = path
        self.rotation = rotation
        self._clock = clock
        self._thread_lock = threading.Lock()  # flock excludes processes, not this one's threads
        lock_path = path.with_name(f".{path.name}.lock")
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._fd = -1
        self._started_hour = -1
        self._compressing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-gzip")
        # closed files a process stopped before gzipping (killed mid-way): gzipped now
        for plain in _closed_plain_files(path):
            self._compressing.submit(_compress, plain)

    def write(self, lines: bytes) -> None:
        closed = None
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                size = self._live_size()
                now = self._clock()
                if size and self._due(size, len(lines), now):
                    closed = self._rotate(now)
                    size = 0
                if size == 0:
                    self._started_hour = _hour(now)
                _write_all(self._fd, lines)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        if closed is not None:
            self._compressing.submit(_compress, closed)

    def close(self) -> None:
        self._compressing.shutdown(wait=True)
        with self._thread_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            os.close(self._lock_fd)

    def _live_size(self) -> int:
        """The size of the file the path names, reopened first if it is not the one open here."""
        if self._fd >= 0:
            try:
                live = os.stat(self.path)
            except FileNotFoundError:  # removed by hand: begun again
                live = None
            mine = os.fstat(self._fd)
            if live is not None and (live.st_ino, live.st_dev) == (mine.st_ino, mine.st_dev):
                return mine.st_size
            os.close(self._fd)
        self._fd = os.open(self.path, _APPEND, 0o644)
        opened = os.fstat(self._fd)
        # Every line of a file is written in the hour it was begun in (a write in another hour
        # rotates it first), so the hour of its last write, its mtime, is its starting hour. An
        # empty file is given the hour of its first write (write()).
        self._started_hour = _hour(opened.st_mtime)
        return opened.st_size

    def _due(self, size: int, incoming: int, now: float) -> bool:
        if self.rotation.max_bytes is not None:
            # before the write that would pass the limit: a closed file stays within it unless
            # one batch alone is larger
            return size + incoming > self.rotation.max_bytes
        return _hour(now) != self._started_hour

    def _rotate(self, now: float) -> Path:
        closed = self._closed_name(now)
        os.rename(self.path, closed)  # under the lock: no process appends to it after this
        os.close(self._fd)
        self._fd = os.open(self.path, _APPEND, 0o644)
        return closed

    def _closed_name(self, now: float) -> Path:
        """`<stem>.<UTC time of closing>[.N]<suffix>`, N counting files closed in one second."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        for n in itertools.count():
            name = f"{self.path.stem}.{stamp}{f'.{n}' if n else ''}{self.path.suffix}"
            closed = self.path.with_name(name)
            if not closed.exists() and not closed.with_name(f"{name}.gz").exists():
                return closed
        raise AssertionError("unreachable")


def _closed_plain_files(path: Path) -> list[Path]:
    """The closed files of the log at `path` not gzipped yet, by name."""
    pattern = re.compile(
        rf"{re.escape(path.stem)}\.\d{{8}}T\d{{6}}(\.\d+)?{re.escape(path.suffix)}"
    )
    return sorted(
        found
        for found in path.parent.iterdir()
        if pattern.fullmatch(found.name) and found.is_file()
    )


def _compress(plain: Path) -> None:
    """`plain` gzipped to `<plain>.gz`, then removed. The .gz appears only whole (written under
    a hidden temporary name, synced, renamed) and the plain file is removed only after, so a
    crash at any moment leaves every line in one of the two; a plain file left behind is
    gzipped when the service starts again. Two processes gzipping the same file (one of them
    that restart) write the same .gz."""
    packed = plain.with_name(f"{plain.name}.gz")
    partial = plain.with_name(f".{plain.name}.gz.{os.getpid()}-{threading.get_ident()}")
    try:
        with plain.open("rb") as source, partial.open("wb") as raw:
            with gzip.GzipFile(plain.name, "wb", _GZIP_LEVEL, raw) as target:
                shutil.copyfileobj(source, target, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, packed)
        plain.unlink(missing_ok=True)
    except FileNotFoundError:  # another process gzipped and removed it first
        partial.unlink(missing_ok=True)
    except OSError:
        # a full disk, say: the lines stay in the plain file, readable, and the next start
        # tries again; the error goes to the server's log
        logger.exception("could not gzip the closed log %s; it stays as it is", plain)
        partial.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _hour(moment: float) -> int:
    """Whole UTC hours since the epoch."""
    return int(moment // 3600)
