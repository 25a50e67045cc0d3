"""What several benches share: the foundation's detectors, and a child process's own peak memory."""
from __future__ import annotations

import resource

FOUNDATION = ("wash_trade", "price_dislocation")  # the foundation's detectors: the end-to-end targets are theirs


def detector_config(which: str) -> dict | None:
    """``"foundation"``: every registered detector but the foundation's switched off; ``"all"``: the defaults."""
    from detectors import REGISTRY

    return {n: False for n in REGISTRY if n not in FOUNDATION} if which == "foundation" else None


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM`` (of its own address space, since its exec).

    Not ``getrusage().ru_maxrss``: Linux carries that across fork and exec, so a child started by a
    bench that had generated a large market in memory reported the parent's peak as its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: the best there is
