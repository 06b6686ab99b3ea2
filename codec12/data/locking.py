"""Advisory file locks of a tokenized dataset directory: one for its metadata, one per partition."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path


@contextmanager
def exclusive(lock_path: Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock on ``lock_path`` (released by the OS even on SIGKILL). Yields whether a lock is
    held (False without fcntl); ``wait=False`` raises BlockingIOError when another process holds it."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield True
    finally:
        os.close(fd)


@contextmanager
def partition_lock(out_dir: Path, prefix: str) -> Iterator[None]:
    """Hold an exclusive lock on one partition of ``out_dir``, so two processes never write the same shard
    names or remove each other's temp files."""
    with ExitStack() as stack:
        try:
            locked = stack.enter_context(exclusive(out_dir / f".{prefix}lock", wait=False))
        except BlockingIOError:
            raise ValueError(f"{out_dir}: another process is tokenizing this partition ({prefix}*) right now"
                             ) from None
        if locked:  # without advisory locks, rely on distinct partitions and leave temp files alone
            # Temp files of this partition were left by a killed run (the lock proves nobody else writes them).
            stale = re.compile(re.escape(f".{prefix}") + r"\d+\.parquet\.tmp\d+")
            for p in out_dir.iterdir():
                if stale.fullmatch(p.name):
                    p.unlink(missing_ok=True)
        yield


__all__ = ["exclusive", "partition_lock"]
