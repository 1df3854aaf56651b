"""Models from scikit-learn, PyTorch and Keras, trained on the MNIST 5k subset, classify the
10,000 MNIST test images in xpnet on every backend exactly as in their own framework.

XPNET_DATA_DIR=../shared/data/mnist python benchmarks/importers_mnist.py [--json]

Each source trains a 784-50-100-10 network (sigmoid, sigmoid, softmax) for a few epochs,
predicts the test labels itself, and is imported into xpnet (live, and through an ONNX file
where an exporter exists here, and through its own file format: skops, a state dict,
``.keras``); the table counts, per backend, the test images whose xpnet
label differs from the framework's, and xpnet's accuracy. JAX runs with x64 enabled, so the
float64 scikit-learn model stays float64 there as on the other backends.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("KERAS_BACKEND", "jax")

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import xpnet
from xpnet.datasets import load_mnist

BACKENDS = (
    ("numpy", None),
    ("array_api_strict", "device1"),
    ("torch", "cpu"),
    ("jax", None),
    ("dask", None),
)
SIZES = (784, 50, 100, 10)


def sklearn_model(x: np.ndarray, t: np.ndarray) -> tuple[Any, np.ndarray, Any]:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=SIZES[1:-1], activation="logistic", max_iter=30, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, t)
    return model, lambda images: model.predict(images), xpnet.from_sklearn


def torch_model(x: np.ndarray, t: np.ndarray) -> tuple[Any, Any, Any]:
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(
        nn.Linear(784, 50),
        nn.Sigmoid(),
        nn.Linear(50, 100),
        nn.Sigmoid(),
        nn.Linear(100, 10),
        nn.Softmax(dim=1),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(t)
    for _ in range(15):
        order = torch.randperm(len(x))  # the subset is sorted by digit: shuffle each epoch
        for start in range(0, len(x), 100):
            batch = order[start : start + 100]
            optimizer.zero_grad()
            logits = model[:-1](inputs[batch])
            nn.functional.cross_entropy(logits, targets[batch]).backward()
            optimizer.step()
    model.eval()

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(images)).argmax(dim=1).numpy()

    return model, predict, xpnet.from_torch


def keras_model(x: np.ndarray, t: np.ndarray) -> tuple[Any, Any, Any]:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(50, activation="sigmoid"),
            keras.layers.Dense(100, activation="sigmoid"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, t, epochs=15, batch_size=100, verbose=0)
    return model, lambda images: model.predict(images, verbose=0).argmax(axis=1), xpnet.from_keras


def onnx_file(source: str, model: Any, x: np.ndarray, folder: Path) -> Path | None:
    """The model as an ONNX file, by the exporter its framework has here (none for Keras)."""
    path = folder / f"{source}.onnx"
    if source == "scikit-learn":
        from skl2onnx import to_onnx

        path.write_bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
        return path
    if source == "PyTorch":
        import torch

        torch.onnx.export(
            model,
            (torch.from_numpy(x[:2]),),
            path,
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "n"}},
        )
        return path
    return None


def native_file(source: str, model: Any, folder: Path) -> tuple[Path, str | None]:
    """The model in its framework's own safe format, and the activations xpnet must be told."""
    if source == "scikit-learn":
        import skops.io

        skops.io.dump(model, folder / "mlp.skops")
        return folder / "mlp.skops", None
    if source == "PyTorch":
        import torch

        torch.save(model.state_dict(), folder / "mlp.pt")
        return folder / "mlp.pt", "sigmoid,sigmoid,softmax"
    model.save(folder / "mlp.keras")
    return folder / "mlp.keras", None


def onnxruntime_labels(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    probabilities = next(o for o in outputs if np.ndim(o) == 2)
    return np.asarray(probabilities).argmax(axis=1)


def compare(network: xpnet.Network, x: np.ndarray, t: np.ndarray, theirs: np.ndarray) -> dict:
    row = {}
    for name, device in BACKENDS:
        moved = xpnet.to_backend(network, name, device)
        images = moved.backend.asarray(x)
        ours = xpnet.to_host(xpnet.predict_labels(moved, images))
        row[f"{name}{'/' + device if device else ''}"] = {
            "differ": int(np.count_nonzero(ours != theirs)),
            "accuracy": float(np.mean(ours == t)),
        }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("XPNET_DATA_DIR"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    x, t = load_mnist(split="train", dataset="mnist-5k", data_dir=args.data_dir, download=False)
    x_test, t_test = load_mnist(split="test", data_dir=args.data_dir, download=False)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for source, make in (
            ("scikit-learn", sklearn_model),
            ("PyTorch", torch_model),
            ("Keras", keras_model),
        ):
            model, predict, importer = make(x, t)
            theirs = np.asarray(predict(x_test))
            network = importer(model)
            rows.append(
                {
                    "source": source,
                    "via": "live",
                    "framework_accuracy": float(np.mean(theirs == t_test)),
                    "dtype": str(network.dtype),
                    **compare(network, x_test, t_test, theirs),
                }
            )
            native, activations = native_file(source, model, Path(folder))
            loaded = xpnet.load_weights(native, activations=activations)
            rows.append(
                {
                    "source": source,
                    "via": f"{native.suffix} file",
                    "framework_accuracy": float(np.mean(theirs == t_test)),
                    "dtype": str(loaded.dtype),
                    **compare(loaded, x_test, t_test, theirs),
                }
            )
            path = onnx_file(source, model, x_test, Path(folder))
            if path is not None:
                runtime = onnxruntime_labels(path, x_test)
                rows.append(
                    {
                        "source": source,
                        "via": "ONNX file",
                        "framework_accuracy": float(np.mean(theirs == t_test)),
                        "dtype": str(xpnet.load_weights(path).dtype),
                        "onnxruntime_differ": int(np.count_nonzero(runtime != theirs)),
                        **compare(xpnet.load_weights(path), x_test, t_test, theirs),
                    }
                )
    if args.json:
        print(json.dumps(rows))
        return 0
    names = [f"{n}{'/' + d if d else ''}" for n, d in BACKENDS]
    print("| source | via | dtype | framework accuracy | " + " | ".join(names) + " |")
    print("|" + " --- |" * (4 + len(names)))
    for row in rows:
        cells = [f"{row[n]['differ']} differ ({row[n]['accuracy']:.4f})" for n in names]
        via = row["via"] + (
            f" (onnxruntime: {row['onnxruntime_differ']} differ)"
            if "onnxruntime_differ" in row
            else ""
        )
        print(
            f"| {row['source']} | {via} | {row['dtype']} | {row['framework_accuracy']:.4f} | "
            + " | ".join(cells)
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
