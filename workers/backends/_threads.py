"""How many CPU threads a llama.cpp call may use right now.

llama.cpp (built with OpenMP) spins its threads at every barrier: on an idle 2-core
machine 2 threads are about twice as fast as 1, but when another process keeps one core
busy, 2 threads collapse (generation ~10× slower, prompt processing ~2×) and 1 thread is
the fast setting. So the default is decided per call from the cores that are actually
free — the process's CPU affinity minus what other processes keep busy (the 1-minute load
average less this process's own recent CPU use) — and shared between the llama.cpp calls
this process runs at the same time, so two models never oversubscribe the machine. A
running call re-reads its share after every token, so one that started alone gives up
threads when a second one starts.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ThreadBudget", "available_cores", "budget"]


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available: assume an idle machine
        return 0.0


class ThreadBudget:
    """Shares the free cores between the llama.cpp calls of this process.

    Args:
        cores: CPUs available (default: the affinity mask).
        load: The 1-minute load average (runnable threads of every process).
        cpu: This process's CPU seconds so far.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        cores: int | None = None,
        *,
        load: Callable[[], float] = _load,
        cpu: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cores = cores or available_cores()
        self._load, self._cpu, self._clock = load, cpu, clock
        self._lock = threading.Lock()
        self._active = 0
        self._own = 0.0  # this process's CPU use, averaged like the 1-minute load
        self._mark = (clock(), cpu())

    def others(self) -> float:
        """Cores other processes keep busy (load average less this process's own use)."""
        now, used = self._clock(), self._cpu()
        elapsed = now - self._mark[0]
        if elapsed >= 1.0:
            rate = (used - self._mark[1]) / elapsed
            keep = math.exp(-elapsed / 60.0)  # the kernel's 1-minute exponential average
            self._own = self._own * keep + rate * (1.0 - keep)
            self._mark = (now, used)
        return max(0.0, self._load() - self._own)

    def share(self) -> int:
        """Threads for one of the calls running now: the free cores split between them."""
        with self._lock:
            free = max(1, min(self.cores, math.floor(self.cores - self.others() + 0.5)))
            return max(1, free // max(1, self._active))

    @contextmanager
    def running(self) -> Iterator[ThreadBudget]:
        """Count a call as running while the block runs (read :meth:`share` inside)."""
        with self._lock:
            self._active += 1
        try:
            yield self
        finally:
            with self._lock:
                self._active -= 1


budget = ThreadBudget()
"""The process-wide budget every embedded model shares."""
