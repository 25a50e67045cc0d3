"""Peak resident memory of this process, for the benches' per-child figures."""
from __future__ import annotations

import resource


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
