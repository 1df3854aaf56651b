"""Streaming inference over an IDX file far larger than its working set, measured alone.

``python -m benchmarks.stream IMAGES LABELS WEIGHTS`` (from the checkout) classifies every
image in blocks read from disk and prints one JSON object: images, correct, the first
call's seconds (one image, before the stream), the stream's seconds, images per second, and
the process's resident memory before the stream and at its peak, which is why it runs in
its own process.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from pathlib import Path

import numpy as np

import xpnet
from xpnet.datasets import iter_idx

BLOCK_ROWS = 65_536
"""Images read from disk at once: 51 MiB of uint8 MNIST pixels."""


def write_tiled(
    images: np.ndarray, labels: np.ndarray, copies: int, seed: int, folder: Path
) -> tuple[Path, Path]:
    """Raw IDX files of ``copies`` seeded shuffles of ``images`` and ``labels``, in order."""
    rng = np.random.default_rng(seed)
    count = len(images) * copies
    paths = folder / "images-idx3-ubyte", folder / "labels-idx1-ubyte"
    with open(paths[0], "wb") as image_file, open(paths[1], "wb") as label_file:
        image_file.write(struct.pack(">BBBB3I", 0, 0, 8, 3, count, 28, 28))
        label_file.write(struct.pack(">BBBBI", 0, 0, 8, 1, count))
        for _ in range(copies):
            order = rng.permutation(len(images))
            image_file.write(images[order].tobytes())
            label_file.write(labels[order].astype(np.uint8).tobytes())
    return paths


def stream_count(network: xpnet.Network, images: Path, labels: Path) -> int:
    """Images of ``images`` the network classifies as ``labels`` says, block by block."""
    correct = 0
    for x, t in zip(iter_idx(images, BLOCK_ROWS), iter_idx(labels, BLOCK_ROWS), strict=True):
        correct += xpnet.count_correct(network, x.reshape(len(x), -1), t, batch_size=len(x))
    return correct


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MiB.

    ``VmHWM`` is the peak resident size of this program alone: unlike ``ru_maxrss`` it
    starts afresh at exec, not at the parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise OSError(f"/proc/self/status has no {field}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path)
    parser.add_argument("labels", type=Path)
    parser.add_argument("weights")
    args = parser.parse_args()
    network = xpnet.load_weights(args.weights).scale_input(1 / 255)
    # One image first, timed apart: what a process pays once (ONNX Runtime building its
    # session) is not the streaming speed, and what it keeps in memory is counted before the
    # stream starts.
    start = time.perf_counter()
    xpnet.predict_labels(network, np.zeros((1, network.sizes[0]), dtype=np.uint8))
    first_call_seconds = time.perf_counter() - start
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    correct = stream_count(network, args.images, args.labels)
    seconds = time.perf_counter() - start
    images = (args.images.stat().st_size - 16) // 784
    print(
        json.dumps(
            {
                "images": images,
                "correct": correct,
                "first_call_seconds": first_call_seconds,
                "seconds": seconds,
                "images_per_second": images / seconds,
                "resident_mib_before": before,
                "peak_resident_mib": _status_mib("VmHWM"),
            }
        )
    )


if __name__ == "__main__":
    main()
