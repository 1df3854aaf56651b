"""Check that every test the suite holds runs in at least one nox session.

Each per-backend nox session runs ``pytest --backend NAME``, and ``tests/conftest.py``
deselects there the backend-independent tests that belong to another session. This script
collects the suite once with no ``--backend`` (every backend selected: every test) and once
per session, with the backends it selects, and lists the test ids that no session
collects. It prints how many each session runs and exits 1 if any test is left out. Run
from the repository root::

    python tests/session_coverage.py [--backend numpy --backend torch ...] [pytest args]

(``--backend`` here names a session.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from xpnet.backends import BACKENDS

SESSION_BACKENDS = {name: (name,) for name in BACKENDS} | {"numpy": ("numpy", "numpy_readonly")}
"""The backends each per-backend nox session selects, by session: every backend has a
session named for it, and the ``numpy`` session also runs NumPy with read-only inputs
(``numpy_narrower_simd`` and ``build`` select ``numpy`` alone: a part of what the ``numpy``
session runs)."""


def collected(*args: str) -> set[str]:
    """The test ids ``pytest --collect-only`` lists with these arguments."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly"]
    listing = subprocess.run([*command, *args], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        sys.exit(f"collection failed ({' '.join(args) or 'no --backend'}):\n{listing.stdout}")
    return {line for line in listing.stdout.splitlines() if "::" in line}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=list(SESSION_BACKENDS))
    options, pytest_args = parser.parse_known_args()
    everything = collected(*pytest_args)
    union: set[str] = set()
    for name in options.backend or SESSION_BACKENDS:
        chosen = [arg for backend in SESSION_BACKENDS[name] for arg in ("--backend", backend)]
        here = collected(*chosen, *pytest_args)
        print(f"{name}: {len(here)} of {len(everything)} tests")
        union |= here
    missing = sorted(everything - union)
    extra = sorted(union - everything)
    print(f"all sessions together: {len(union & everything)} of {len(everything)} tests")
    for test in missing:
        print(f"in no session: {test}")
    for test in extra:
        print(f"in a session but not in the full collection: {test}")
    return 1 if missing or extra else 0


if __name__ == "__main__":
    sys.exit(main())
