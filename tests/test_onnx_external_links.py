"""ONNX external data is read only from regular files in the model's folder: a name that is
a link leading out of it (to another of the user's files, a device), a FIFO, an absolute
path or ``../`` is refused in one line naming the model's file, and nothing is read from it.

What stays accepted: a link between two files of the folder, a model reached through a
linked folder, and a download cache's layout, where the model and its data are both links
into one folder of blobs (the data lies beside the model's real file).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.errors import WeightsError

onnx = pytest.importorskip("onnx", reason="onnx is not installed (xpnet[onnx])")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")


def _save(folder: Path, location: str = "weights.bin") -> xpnet.Network:
    """A one-layer model in ``folder/model.onnx`` with its tensors in ``location``."""
    rng = np.random.default_rng(5)
    weight = rng.standard_normal((6, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(
        model,
        folder / "model.onnx",
        save_as_external_data=True,
        location=location,
        size_threshold=0,
    )
    return xpnet.Network.from_mapping({"W1": weight, "b1": bias}, ["identity"])


def _same(network: xpnet.Network, expected: xpnet.Network) -> None:
    for key, value in expected.to_mapping().items():
        np.testing.assert_array_equal(network.to_mapping()[key], value)


def _refused(path: Path, match: str) -> None:
    with pytest.raises(WeightsError, match=match) as info:
        xpnet.load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_data_linked_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    _save(folder)
    secret = tmp_path / "elsewhere" / "secret.bin"  # another of the user's files
    secret.parent.mkdir()
    shutil.move(folder / "weights.bin", secret)
    (folder / "weights.bin").symlink_to(secret)  # absolute target
    _refused(folder / "model.onnx", "a link that leads out of the model's folder")
    (folder / "weights.bin").unlink()
    (folder / "weights.bin").symlink_to(Path("..") / "elsewhere" / "secret.bin")  # relative
    _refused(folder / "model.onnx", "a link that leads out of the model's folder")


def test_data_linked_through_a_chain_of_links_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    _save(folder)
    shutil.move(folder / "weights.bin", tmp_path / "secret.bin")
    (folder / "hop").symlink_to(tmp_path / "secret.bin")
    (folder / "weights.bin").symlink_to("hop")  # inside, then out
    _refused(folder / "model.onnx", "leads out of the model's folder")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_data_linked_to_a_device_is_refused(tmp_path, device):
    if not os.path.exists(device):
        pytest.skip(f"{device} does not exist here")
    folder = tmp_path / "model"
    _save(folder)
    (folder / "weights.bin").unlink()
    (folder / "weights.bin").symlink_to(device)
    _refused(folder / "model.onnx", "leads out of the model's folder")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_data_in_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    folder = tmp_path / "model"
    _save(folder)
    (folder / "weights.bin").unlink()
    os.mkfifo(folder / "weights.bin")
    _refused(folder / "model.onnx", "not a regular file")


def test_data_named_by_an_absolute_path_or_a_parent_is_refused(tmp_path):
    for location in (str(tmp_path / "x.bin"), "../x.bin", "sub/x.bin"):
        folder = tmp_path / f"m{len(location)}"
        _save(folder)
        model = onnx.load(folder / "model.onnx", load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(model, folder / "model.onnx")
        _refused(folder / "model.onnx", "not a file beside the model")


def test_a_link_inside_the_folder_is_read(tmp_path):
    folder = tmp_path / "model"
    expected = _save(folder)
    (folder / "weights.bin").rename(folder / "real.bin")
    (folder / "weights.bin").symlink_to("real.bin")
    _same(xpnet.load_weights(folder / "model.onnx"), expected)


def test_a_model_in_a_linked_folder_is_read(tmp_path):
    expected = _save(tmp_path / "real")
    (tmp_path / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    _same(xpnet.load_weights(tmp_path / "linked" / "model.onnx"), expected)


def test_a_download_cache_of_links_into_blobs_is_read(tmp_path):
    """As the Hugging Face cache keeps a model: ``snapshots/<rev>/model.onnx`` and its data,
    both links to ``blobs/<hash>``. The data lies beside the model's real file."""
    expected = _save(tmp_path / "download")
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "rev"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    for name, blob in (("model.onnx", "h1"), ("weights.bin", "h2")):
        shutil.move(tmp_path / "download" / name, blobs / blob)
        (snapshot / name).symlink_to(Path("../..") / "blobs" / blob)
    _same(xpnet.load_weights(snapshot / "model.onnx"), expected)


def test_a_linked_model_does_not_widen_what_its_data_may_link_to(tmp_path):
    """A model file that is a link lends the data its real folder, not any other: data that
    links out of both folders is still refused."""
    _save(tmp_path / "real")
    (tmp_path / "shown").mkdir()
    (tmp_path / "shown" / "model.onnx").symlink_to(tmp_path / "real" / "model.onnx")
    shutil.move(tmp_path / "real" / "weights.bin", tmp_path / "secret.bin")
    for folder in ("real", "shown"):
        (tmp_path / folder / "weights.bin").symlink_to(tmp_path / "secret.bin")
    _refused(tmp_path / "shown" / "model.onnx", "leads out of the model's folder")
