"""The benchmarks' parts: floors, timing loop, table, peers, streaming, the dask throughput
and the commands themselves (``scripts/benchmark.py``, ``scripts/dask_benchmark.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from realdata import BOOK_CORRECT, MNIST_DIR, REPO, needs_mnist

import xpnet
from benchmarks import peers, report
from benchmarks.cli import REPOSITORY, child_environment, dask_main, main
from benchmarks.machine import Machine, flops_per_image
from benchmarks.peers import Variant, Workload, xpnet_variants
from benchmarks.stream import stream_count, write_tiled
from benchmarks.timing import time_interleaved
from xpnet.backends import BACKENDS, to_host


def test_floor_is_the_larger_of_compute_and_memory_time():
    assert flops_per_image((784, 50, 100, 10)) == 90_400
    machine = Machine(
        cpu="test",
        sgemm_gflops=200.0,
        copy_gbytes_per_second=10.0,
        blas="test",
        numpy_engine="generic: test",
    )
    compute = 90_400 * 10_000 / 200e9
    assert machine.floor_seconds((784, 50, 100, 10), 10_000, 0) == pytest.approx(compute)
    assert machine.floor_seconds((784, 50, 100, 10), 10_000, 10**9) == pytest.approx(0.1)


def test_interleaved_timing_checks_every_answer():
    calls: list[str] = []

    def counter(name: str, answer: int) -> Variant:
        return Variant(name, lambda: calls.append(name) or answer)

    medians = time_interleaved([counter("a", 7), counter("b", 7)], rounds=3, pause=0, expected=7)
    assert set(medians) == {"a", "b"} and all(m >= 0 for m in medians.values())
    assert calls.count("a") == calls.count("b") == 5  # two warm-ups and three rounds
    with pytest.raises(xpnet.XpnetError, match="b classified 6 correctly, expected 7"):
        time_interleaved([counter("a", 7), counter("b", 6)], rounds=1, pause=0, expected=7)


def test_table_ratios_are_time_over_peer_time():
    variants = [Variant(n, lambda: 0) for n in ("xpnet numpy on cpu", "torch native", "jax.jit")]
    medians = {"xpnet numpy on cpu": 0.008, "torch native": 0.016, "jax.jit": 0.004}
    rows = report.make_rows(variants, medians, images=10_000, floor=0.004)
    assert rows[0].vs_peers == {"torch native": 0.5, "jax.jit": 2.0}
    assert rows[0].vs_floor == 2.0 and rows[0].images_per_second == 1_250_000
    met = {(t["peer"], t["met"]) for t in report.targets(medians)}
    assert met == {("torch native", True), ("jax.jit", False)}
    lines = report.table(rows).splitlines()
    assert lines[0] == "| variant | ms | images/s | x floor | x torch native | x jax.jit |"
    assert lines[2] == "| xpnet numpy on cpu | 8.00 | 1,250,000 | 2.00 | 0.50 | 2.00 |"


def test_streaming_counts_every_tiled_image(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, 300)
    network = xpnet.init_network((784, 20, 10), seed=1).scale_input(1 / 255)
    once = xpnet.count_correct(network, pixels, labels)
    images, label_file = write_tiled(pixels.reshape(-1, 28, 28), labels, 3, seed=1, folder=tmp_path)
    assert images.stat().st_size == 16 + 3 * 300 * 784
    assert stream_count(network, images, label_file) == 3 * once


def test_the_streaming_process_times_its_first_call_apart(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 300)
    network = xpnet.init_network((784, 20, 10), seed=1)
    weights = tmp_path / "net.npz"
    xpnet.save_weights(network, weights)
    images, label_file = write_tiled(pixels, labels, 2, seed=1, folder=tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.stream", str(images), str(label_file), str(weights)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # the checkout reaches the child through its PYTHONPATH alone
        env=child_environment(),
    )
    result = json.loads(done.stdout)
    on_pixels = network.scale_input(1 / 255)
    expected = 2 * xpnet.count_correct(on_pixels, pixels.reshape(300, -1), labels)
    assert (result["images"], result["correct"]) == (600, expected)
    assert result["first_call_seconds"] > 0 and result["seconds"] > 0
    assert result["images_per_second"] == pytest.approx(600 / result["seconds"])
    assert 0 < result["resident_mib_before"] <= result["peak_resident_mib"]


@needs_mnist
def test_bench_command_reports_every_variant(book_weights, tmp_path, capsys):
    chart = tmp_path / "bench.png"
    status = main(
        [
            "--weights",
            str(book_weights),
            "--data-dir",
            str(MNIST_DIR),
            "--backends",
            "numpy",
            "array_api_strict",
            "cupy",
            "--rounds",
            "1",
            "--pause",
            "0",
            "--plot",
            str(chart),
            "--json",
        ]
    )
    assert status == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    cupy_runs = xpnet.backend_status("cupy")[0]
    assert set(result["not_timed"]) == (set() if cupy_runs else {"cupy"})
    for name, why_not in result["not_timed"].items():  # e.g. "... needs the package 'cupy' ..."
        assert "cupy" in why_not and f"xpnet on {name} not timed: {why_not}\n" in err
    names = [v["name"] for v in result["variants"]]
    assert {
        "book per-sample",
        "book batch-100",
        "xpnet numpy on cpu",
        "xpnet array_api_strict on CPU_DEVICE",
        "end to end, warm files",
        "end to end, cold files",
    } <= set(names)
    assert result["correct"] == BOOK_CORRECT
    assert result["floor_ms"] > 0 and result["machine"]["sgemm_gflops"] > 0
    assert result["machine"]["numpy_engine"] == ": ".join(xpnet.numpy_engine())
    assert [v["name"] for v in result["variants_back_to_back"]] == names
    assert {t["variant"] for t in result["targets_back_to_back"]} <= set(names)
    if peers.numpy_engine(xpnet.get_backend("numpy")) == "onnxruntime":
        assert {"onnxruntime", "xpnet numpy on cpu, generic"} <= set(names)
    assert result["machine"]["cpu"].endswith(" cores")
    assert all(v["milliseconds"] > 0 for v in result["variants"])
    assert chart.stat().st_size > 1000


def small_workload() -> Workload:
    """64 random images through a 784-20-10 network, labels int64 as ``load_mnist`` gives."""
    network = xpnet.init_network((784, 20, 10), seed=2)
    pixels = np.random.default_rng(3).integers(0, 256, (64, 784), dtype=np.uint8)
    labels = np.random.default_rng(4).integers(0, 10, 64)
    return Workload(network, pixels.astype(np.float32) / 255.0, pixels, labels)


def test_xpnet_under_jax_jit_is_a_variant_where_jax_is_installed():
    pytest.importorskip("jax", reason="the jax.jit variant needs JAX")
    work = small_workload()
    found = {v.name: v for v in xpnet_variants(work, [xpnet.get_backend("jax", "cpu")])}
    eager, compiled = found["xpnet jax on cpu:0"], found["xpnet jax on cpu:0, jax.jit"]
    assert (
        compiled.run() == eager.run() == xpnet.count_correct(work.network, work.images, work.labels)
    )


def test_peers_are_built_from_the_loaded_network_whatever_its_layers():
    network = xpnet.init_network((784, 30, 20, 10), activations=["relu", "sigmoid", "identity"])
    pixels = np.random.default_rng(5).integers(0, 256, (64, 784), dtype=np.uint8)
    images = pixels.astype(np.float32) / 255.0
    labels = np.random.default_rng(6).integers(0, 10, 64)
    work = Workload(network, images, pixels, labels)
    expected = xpnet.count_correct(network, images, labels)
    built = [peers.torch_variant(work), peers.jax_variant(work), peers.onnxruntime_variant(work)]
    ran = [peer.run() for peer in built if peer is not None]
    if not ran:
        pytest.skip("none of torch, jax, onnxruntime is installed")
    assert ran == [expected] * len(ran)
    assert peers.book_variants(work) == []  # the book's code is for its own network only


def test_the_books_loops_use_the_loaded_weights_not_names():
    """The book's own code runs on the loaded network's layers: a network of the book's
    shape with other weights is classified as xpnet classifies it."""
    network = xpnet.init_network((784, 30, 10, 10), seed=8)
    pixels = np.random.default_rng(9).integers(0, 256, (200, 784), dtype=np.uint8)
    labels = np.asarray(xpnet.predict_labels(network, pixels.astype(np.float32) / 255.0))
    labels[::3] = (labels[::3] + 1) % 10  # a third wrong, so the count is not everything
    work = Workload(network, pixels.astype(np.float32) / 255.0, pixels, labels)
    expected = xpnet.count_correct(network, work.images, labels)
    assert 0 < expected < len(labels)
    assert [v.run() for v in peers.book_variants(work)] == [expected, expected]


def test_back_to_back_rounds_time_all_but_the_first_call_of_each_streak():
    calls: list[str] = []
    variant = Variant("a", lambda: calls.append("a") or 1)
    medians = time_interleaved([variant], rounds=3, pause=0, expected=1, streak=4)
    assert len(calls) == 2 + 3 * 4 and medians["a"] >= 0


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--rounds", "0", "argument --rounds: expected a positive integer, got '0'"),
        ("--rounds", "x", "argument --rounds: expected an integer, got 'x'"),
        ("--pause", "-1", "argument --pause: expected a number >= 0, got '-1'"),
        ("--pause", "nan", "argument --pause: expected a finite number, got 'nan'"),
        ("--stream", "-5", "argument --stream: expected an integer >= 0, got '-5'"),
        ("--gpu-rows", "0", "argument --gpu-rows: expected a positive integer, got '0'"),
        ("--backends", "nope", "argument --backends: unknown backend 'nope'; choose from numpy"),
    ],
)
def test_usage_errors_are_one_line_with_status_2_before_anything_runs(option, value, says, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--weights", "/nonexistent/weights.npz", option, value])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert captured.out == "" and line.startswith("benchmark.py: error: ")
    assert says in line and line.endswith("(see 'benchmark.py --help')")


def test_a_failure_is_one_line_with_status_1(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "weights.npz"
    status = main(["--weights", str(missing), "--backends", "numpy", "--json"])
    captured = capsys.readouterr()
    assert status == 1 and captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("benchmark.py: error: ") and "nowhere" in line


def test_dask_benchmark_usage_errors_are_one_line_with_status_2(capsys):
    with pytest.raises(SystemExit) as exited:
        dask_main(["--images", "0"])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("dask_benchmark.py: error: argument --images: expected a positive")


@pytest.mark.filterwarnings("error")  # JAX without x64 warns as it truncates int64
def test_workload_labels_reach_every_installed_backend_in_its_default_integers_unwarned():
    work = small_workload()
    assert work.labels.dtype == np.int64
    backends, not_run = peers.resolve_backends(dict.fromkeys(BACKENDS))
    assert {b.name for b in backends} | set(not_run) == set(BACKENDS)
    assert "numpy" in {b.name for b in backends}
    for backend in backends:
        on_device = work.labels_on(backend)
        expected = {"jax": backend.xp.int32}.get(backend.name, backend.xp.int64)  # no x64
        assert on_device.dtype == expected, backend
        np.testing.assert_array_equal(to_host(on_device), work.labels)


def test_the_benchmarks_sit_in_the_checkout_not_in_the_package():
    """The entry points find ``benchmarks`` in the checkout they sit in; the package has no
    benchmark API."""
    import xpnet.scaleout

    assert REPOSITORY == REPO
    assert not hasattr(xpnet.scaleout, "measure_dask_throughput")
    assert not (REPO / "xpnet" / "bench").exists()


def test_dask_throughput_counts_the_tiled_images_on_every_path(tmp_path):
    pytest.importorskip("dask", reason="the dask throughput needs dask")
    pytest.importorskip("zarr", reason="reading from a store needs zarr")
    from benchmarks.dask_throughput import measure_dask_throughput
    from xpnet.scaleout import tiled_order

    network = xpnet.init_network((784, 20, 10), seed=11)
    pixels = np.random.default_rng(12).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = np.random.default_rng(13).integers(0, 10, 50)
    measured = measure_dask_throughput(
        network, pixels, labels, count=230, chunk_rows=64, repeats=1, seed=3, from_store=True
    )
    order = tiled_order(50, 230, seed=3)
    on_pixels = network.scale_input(1 / 255)
    expected = xpnet.count_correct(on_pixels, pixels.reshape(50, -1)[order], labels[order])
    assert (measured.images, measured.chunk_rows, measured.correct) == (230, 64, expected)
    assert measured.ratio == measured.numpy_seconds / measured.dask_seconds > 0
    assert measured.store_ratio is not None and measured.store_ratio > 0
    assert "230 in chunks of 64 rows" in measured.summary()


@pytest.mark.parametrize("script", ["benchmark.py", "dask_benchmark.py"])
def test_the_scripts_run_from_anywhere_and_show_their_options(script, tmp_path):
    """``python scripts/X.py --help`` from another folder: the script finds ``benchmarks``
    through its own path, not the caller's folder."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith(f"usage: {script} ")
    wanted = ["--weights", "--data-dir", "--json"]
    wanted += ["--rounds", "--pause", "--stream", "--dask-images", "--gpu-rows", "--plot"]
    if script == "dask_benchmark.py":
        wanted = ["--weights", "--data-dir", "--images", "--chunk-rows", "--repeats", "--store"]
    assert all(option in done.stdout for option in wanted)


@needs_mnist
def test_the_end_to_end_benchmark_times_whole_processes_that_give_the_books_answer(
    book_weights, tmp_path, capsys
):
    from benchmarks import end_to_end

    out = tmp_path / "e2e.json"
    arguments = ["--weights", str(book_weights), "--data-dir", str(MNIST_DIR), "--rounds", "1"]
    assert end_to_end.main([*arguments, "--no-torch", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    names = [row["name"] for row in results["commands"]]
    assert names[0] == "book script" and len(names) == 6
    assert {row["name"]: row["paired_ratio"] for row in results["commands"]}["book script"] == 1
    assert all(row["median_s"] > 0 for row in results["commands"] + results["imports"])
    printed = capsys.readouterr().out
    assert "target xpnet infer --weights PKL --data-dir DIR, warm: within 1.2x:" in printed
    assert "target import xpnet within 50 ms of import numpy:" in printed


def test_the_book_script_of_the_end_to_end_benchmark_is_the_books_flow(book_weights, tmp_path):
    """The peer prints the book's accuracy from the gz files and the pickle, as the book's
    own chapter 3 script does (whatever xpnet computes)."""
    from benchmarks import end_to_end

    if not all((MNIST_DIR / name).is_file() for name in ("t10k-images-idx3-ubyte.gz",)):
        pytest.skip(f"the MNIST test files are not in {MNIST_DIR}")
    script = tmp_path / "book.py"
    script.write_text(end_to_end.BOOK_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(MNIST_DIR), str(book_weights)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"Accuracy:{BOOK_CORRECT / 10_000}"
