"""Run a module as ``python -m`` would, and write the process's own peak RSS when it exits.

    python -m benchmarks._peak OUT_FILE MODULE [ARG ...]

Why not ``ru_maxrss``: on Linux a child's ``ru_maxrss`` (from ``wait4`` or from its own
``getrusage``) also counts the address space it was forked from, as it stood when it exec'd.
A harness that has grown (say, by reading a 200,000-user state from the fake) then passes its
own size on to every small child it starts. ``VmHWM`` in ``/proc/self/status`` is the peak of
the process's own address space since exec. This module imports only the standard library, so
it adds nothing to what it measures.
"""

from __future__ import annotations

import atexit
import resource
import runpy
import sys


def status_mib(field: str) -> float:
    """A size of this process's from ``/proc/self/status`` (``VmHWM``, ``VmRSS``), in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    # Not Linux: the best there is, with the caveat above.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_peak_rss_mib() -> float:
    """This process's peak resident set since exec, in MiB."""
    return status_mib("VmHWM")


def _write(path: str) -> None:
    with open(path, "w") as fh:
        fh.write(f"{own_peak_rss_mib()}\n")


def main() -> None:
    out, module, *args = sys.argv[1:]
    atexit.register(_write, out)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
