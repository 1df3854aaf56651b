"""Run ``xpnet`` in a child process on made-up data, for tests that need a real process
(pipes, signals, bytes in file names that are not UTF-8).

``python tests/cli_child.py ARGS...`` runs ``xpnet ARGS...`` with ``load_mnist`` replaced by
random MNIST-shaped data (``XPNET_FAKE_IMAGES`` images a split, 40 by default), and
SIGINT's handler set explicitly to Python's (so the test does not depend on the disposition
it inherits). With ``XPNET_INTERRUPT_WHILE_SCORING=1`` the process sends itself SIGINT as
``xpnet train`` starts scoring the trained network on the test split. With
``XPNET_SIGNALS_AT=POINT:SIGNAL,...`` ``xpnet train`` sends itself each SIGNAL (``SIGINT``,
``SIGTERM``, ``SIGHUP``) at POINT: ``load`` (the data are loading, before training begins),
``batch2`` (the second step has ended), ``record`` (training is over, before the save) or
``save`` (the save has begun), one right after the other. SIGTERM's and SIGHUP's
dispositions are set to the default explicitly too.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import numpy as np

import xpnet
import xpnet.datasets
from xpnet.cli import main
from xpnet.cli import train as train_command


def fake_load_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    split: str | None = None,
    backend: str = "numpy",
    device: str | None = None,
    dtype: str = "float32",
    **_: Any,
) -> Any:
    count = int(os.environ.get("XPNET_FAKE_IMAGES", "40"))
    target = xpnet.get_backend(backend, device)
    rng = np.random.default_rng(0)

    def one_split() -> tuple[Any, Any]:
        pixels = rng.integers(0, 256, (count, 784), dtype=np.uint8)
        labels = np.arange(count) % 10
        x: Any = (pixels / 255).astype(dtype) if normalize else pixels
        if not flatten:
            x = x.reshape(count, 1, 28, 28)
        return target.asarray(x), target.asarray(labels)

    return one_split() if split is not None else (one_split(), one_split())


def interrupting_evaluate(*args: Any, **kwargs: Any) -> tuple[float, float]:
    """Ctrl-C arrives as scoring starts: a real SIGINT to this process."""
    signal.raise_signal(signal.SIGINT)
    time.sleep(60)  # the handler raises KeyboardInterrupt at once; this is never reached
    raise AssertionError("SIGINT did not interrupt the scoring")


def send_signals_at(points: str) -> None:
    """Patch ``xpnet train`` to send itself signals at the named points (see above)."""
    wanted: dict[str, list[int]] = {}
    for item in points.split(","):
        point, name = item.split(":")
        wanted.setdefault(point, []).append(getattr(signal, name))

    def send(point: str) -> None:
        for number in wanted.pop(point, []):
            os.kill(os.getpid(), number)

    real_load = train_command.load_mnist

    def load_mnist(*args: Any, **kwargs: Any) -> Any:
        send("load")
        return real_load(*args, **kwargs)

    real_batch = train_command.EpochBars.batch

    def batch(self: Any, stats: Any) -> None:
        real_batch(self, stats)
        if stats.batch == 2:
            send("batch2")

    real_json_safe, real_save = train_command.json_safe, train_command.save_weights

    def json_safe(value: Any) -> Any:
        send("record")
        return real_json_safe(value)

    def save_weights(*args: Any, **kwargs: Any) -> None:
        send("save")
        real_save(*args, **kwargs)

    train_command.load_mnist = load_mnist  # type: ignore[assignment]
    train_command.EpochBars.batch = batch  # type: ignore[method-assign]
    train_command.json_safe = json_safe  # type: ignore[assignment]
    train_command.save_weights = save_weights  # type: ignore[assignment]


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    xpnet.datasets.load_mnist = fake_load_mnist  # type: ignore[assignment]
    train_command.load_mnist = fake_load_mnist  # type: ignore[assignment]
    if os.environ.get("XPNET_SIGNALS_AT"):
        send_signals_at(os.environ["XPNET_SIGNALS_AT"])
    if os.environ.get("XPNET_INTERRUPT_WHILE_SCORING") == "1":
        train_command.evaluate = interrupting_evaluate  # type: ignore[assignment]
    sys.exit(main(sys.argv[1:]))
