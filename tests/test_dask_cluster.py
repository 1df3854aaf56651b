"""Dask inference on a ``dask.distributed`` LocalCluster of 2 worker processes on 127.0.0.1.

Every cluster here is started and closed by the test that uses it (or by its module).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest
from realdata import MNIST_DIR, needs_mnist

import xpnet
from xpnet.cli import main
from xpnet.errors import DataError
from xpnet.scaleout.schedulers import active_client, compute
from xpnet.scaleout.store import open_store, write_store

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
pytest.importorskip("zarr")

SIZES = (784, 50, 100, 10)

# A second cluster finds the first one's HTTP port (127.0.0.1:8787) taken and picks another.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
    pytest.mark.needs_session("dask", reason="dask, distributed and zarr are the dask session's"),
]


def local_cluster() -> distributed.LocalCluster:
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with local_cluster() as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture
def images(tmp_path) -> tuple[np.ndarray, np.ndarray, str]:
    """Random uint8 images and labels, and the same written to a store of 8 chunks."""
    rng = np.random.default_rng(0)
    x, t = rng.integers(0, 256, (2000, SIZES[0]), dtype=np.uint8), rng.integers(0, 10, 2000)
    return x, t, write_store(tmp_path / "images.zarr", x, t, chunk_rows=250).path


def networks() -> tuple[xpnet.Network, xpnet.Network]:
    on_numpy = xpnet.init_network(SIZES, seed=1).scale_input(1 / 255)
    return on_numpy, xpnet.to_backend(on_numpy, "dask")


def test_two_workers_give_numpys_predictions(capsys, client, images):
    x, t, path = images
    on_numpy, on_dask = networks()
    x_dask, t_dask = open_store(path).read(lazy=True)
    labels = client.persist(xpnet.predict_labels(on_dask, x_dask))
    distributed.wait(labels)
    holders = {worker for workers in client.who_has(labels).values() for worker in workers}
    assert len(holders) == 2  # the chunks were shared out
    np.testing.assert_array_equal(
        client.compute(labels).result(), xpnet.predict_labels(on_numpy, x)
    )
    probabilities = client.compute(xpnet.predict(on_dask, x_dask)).result()
    np.testing.assert_allclose(probabilities, xpnet.predict(on_numpy, x), rtol=1e-5, atol=1e-7)
    with client.as_current():
        assert active_client() is client
        counted = compute(on_dask.xp.count_nonzero(labels == t_dask), progress=True)
    assert counted == (xpnet.count_correct(on_numpy, x, t),)
    assert "100% Completed" in capsys.readouterr().err  # distributed's bar, on stderr


def test_a_worker_killed_mid_run_is_survived_with_identical_results(images):
    x, _, path = images
    on_numpy, on_dask = networks()
    x_dask, _ = open_store(path).read(lazy=True)
    slow = x_dask.map_blocks(lambda block: time.sleep(0.5) or block, dtype=x_dask.dtype)
    with local_cluster() as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        future = client.compute(xpnet.predict_labels(on_dask, slow))
        victim = busy_worker(client)
        os.kill(pids[victim], signal.SIGKILL)
        labels = future.result(timeout=60)
        assert pids[victim] not in client.run(os.getpid).values()  # it died; a new one serves
    np.testing.assert_array_equal(labels, xpnet.predict_labels(on_numpy, x))


def busy_worker(client: distributed.Client, timeout: float = 30) -> str:
    """The address of a worker that is running a task now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if keys:
                return worker
        time.sleep(0.02)
    raise AssertionError("no worker started a task")


@needs_mnist
def test_infer_on_a_local_cluster_prints_the_books_accuracy(capsys, tmp_path, book_weights):
    store = tmp_path / "mnist-test.zarr"
    assert main(["convert", str(store), "--data-dir", str(MNIST_DIR), "--chunk-rows", "2500"]) == 0
    args = ["--backend", "dask", "--input", str(store), "--weights", str(book_weights)]
    assert main(["infer", *args, "--local-cluster", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("Accuracy:0.9352\n")
    assert "scheduler: LocalCluster of 2 workers at tcp://127.0.0.1:" in err
    assert "worker peak memory: " in err


@needs_mnist
def test_infer_on_a_running_scheduler_by_its_address(capsys, client, book_weights):
    address = client.scheduler.address
    args = ["--backend", "dask", "--weights", str(book_weights), "--data-dir", str(MNIST_DIR)]
    assert main(["infer", *args, "--scheduler", address, "--chunk-rows", "2500"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("Accuracy:0.9352\n")
    assert f"scheduler: distributed scheduler at {address}" in err


def swap_two_image_chunks(path: str) -> None:
    first, second = os.path.join(path, "images/c/0/0"), os.path.join(path, "images/c/3/0")
    with open(first, "rb") as a, open(second, "rb") as b:
        one, two = a.read(), b.read()
    with open(first, "wb") as a, open(second, "wb") as b:
        a.write(two)
        b.write(one)


@pytest.mark.parametrize("damage", ["swapped", "deleted-after-open"])
def test_damaged_chunks_are_one_line_errors_on_the_workers(client, images, damage):
    _, _, path = images
    on_dask = networks()[1]
    if damage == "swapped":
        swap_two_image_chunks(path)
    x_dask, t_dask = open_store(path).read(lazy=True)
    if damage == "deleted-after-open":
        os.unlink(os.path.join(path, "images/c/5/0"))
    correct = on_dask.xp.count_nonzero(xpnet.predict_labels(on_dask, x_dask) == t_dask)
    with pytest.raises(DataError) as caught:
        client.compute(correct).result(timeout=60)
    message = str(caught.value)
    assert "\n" not in message and path in message
    if damage == "swapped":
        assert re.search(r"chunk images/c/(0/0 \(rows 0:250\)|3/0 \(rows 750:1000\))", message)
        assert "does not match the manifest" in message
    else:
        assert "chunk images/c/5/0 (rows 1250:1500)" in message and "is missing" in message
