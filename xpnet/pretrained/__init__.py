"""Trained weights: those that ship with xpnet, and the textbook's, fetched on request.

``mnist_5k.npz`` is the default 784-50-100-10 network (sigmoid, sigmoid, softmax) trained
on the 5,000-image MNIST subset (``dataset="mnist-5k"``). Its header records how it was
made: dataset and md5, the command, seed, settings and its accuracy on the full MNIST test
split (``xpnet.read_weights_info(BUNDLED_WEIGHTS)["metadata"]``). ``xpnet infer`` uses it
when no ``--weights`` is given.

:func:`fetch_book_weights` downloads the textbook's ``sample_weight.pkl`` (accuracy 0.9352)
once into the cache (``xpnet infer --weights book``).
"""

from pathlib import Path

from xpnet.pretrained.book import fetch_book_weights

BUNDLED_WEIGHTS = Path(__file__).with_name("mnist_5k.npz")
"""The bundled weights file, an xpnet ``.npz`` (load it with :func:`xpnet.load_weights`)."""

__all__ = ["BUNDLED_WEIGHTS", "fetch_book_weights"]
