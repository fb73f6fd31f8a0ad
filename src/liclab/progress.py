"""Progress for people: a live bar on a terminal, plain lines in a log file.

A run whose output goes to a file (a cluster job, ``nohup``, CI) must still say how far it is;
a bar redrawn in place writes nothing useful there. :func:`progress` picks by the stream.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


@contextmanager
def progress(
    total: int, what: str, unit: str = "items", every: float = 30.0, enabled=True, parallel=1
):
    """Yields ``advance()``, to call once per finished item.

    On a terminal: a transient rich bar on stderr. Otherwise: a line on stderr at most every
    ``every`` seconds and at the end, ``<what>: 12/24 images, 3.1 s each, ETA 37 s`` (wall
    seconds per item: with ``parallel`` items in flight, the first to finish counts as
    ``parallel`` of them).
    """
    if not enabled or total == 0:
        yield lambda: None
        return
    if is_terminal():
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(what, total=total)
            yield lambda: bar.advance(task)
        return
    start = last = time.monotonic()
    done = 0

    def advance() -> None:
        nonlocal done, last
        done += 1
        now = time.monotonic()
        if now - last >= every or done == total:
            last = now
            each = (now - start) / max(done, min(parallel, total))
            eta = "" if done == total else f", ETA {duration(each * (total - done))}"
            print(
                f"{what}: {done}/{total} {unit}, {each:.1f} s each{eta}",
                file=sys.stderr,
                flush=True,
            )

    yield advance
