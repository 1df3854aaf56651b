"""Progress bars for long stages: tqdm where installed, silent otherwise; one per epoch."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xpnet.training import BatchStats, EpochStats


class _Silent:
    """Stands in for a tqdm bar where tqdm is missing or the bar is disabled."""

    def update(self, n: int = 1) -> None:
        """Nothing to draw."""


def bars_shown() -> bool:
    """Whether progress bars draw here: tqdm is installed and stderr is a terminal."""
    return importlib.util.find_spec("tqdm") is not None and sys.stderr.isatty()


def progress_bar(*, total: int, desc: str, unit: str, disable: bool = False) -> Any:
    """A tqdm bar on stderr (only on a terminal), or a silent stand-in."""
    if disable or not bars_shown():
        return nullcontext(_Silent())
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)


class EpochBars:
    """A progress bar per epoch on stderr, left showing that epoch's loss and accuracy.

    Where bars do not draw (no terminal or no tqdm), one line per epoch instead;
    ``disable`` shows nothing.
    """

    def __init__(self, epochs: int, *, disable: bool) -> None:
        self.epochs = epochs
        self.disable = disable
        self.bars = bars_shown() and not disable
        self._bar: Any = None

    def __enter__(self) -> EpochBars:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:  # interrupted mid-epoch
            self._bar.close()

    def batch(self, stats: BatchStats) -> None:
        if not self.bars:
            return
        if self._bar is None:
            desc = f"epoch {stats.epoch}/{self.epochs}"
            self._bar = progress_bar(total=stats.batches, desc=desc, unit="batch")
        self._bar.update(1)

    def epoch(self, stats: EpochStats, network: object) -> None:
        text = f"loss {stats.loss:.4f}, accuracy {stats.accuracy:.4f}"
        if self._bar is not None:
            self._bar.set_postfix_str(text)
            self._bar.close()
            self._bar = None
        elif not self.disable:
            print(
                f"epoch {stats.epoch}/{self.epochs}: {text} ({stats.seconds:.2f} s)",
                file=sys.stderr,
            )
