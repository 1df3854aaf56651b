"""Progress bars for long stages: tqdm where installed, silent otherwise."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import nullcontext
from typing import Any


class _Silent:
    """Stands in for a tqdm bar where tqdm is missing or the bar is disabled."""

    def update(self, n: int = 1) -> None:
        """Nothing to draw."""


def progress_bar(*, total: int, desc: str, unit: str, disable: bool = False) -> Any:
    """A tqdm bar on stderr (only on a terminal), or a silent stand-in."""
    if disable or importlib.util.find_spec("tqdm") is None:
        return nullcontext(_Silent())
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty())
