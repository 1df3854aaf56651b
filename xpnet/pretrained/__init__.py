"""Weights that ship with xpnet: the textbook's network, trained by ``xpnet train``.

``mnist_5k.npz`` is the default 784-50-100-10 network (sigmoid, sigmoid, softmax) trained
on the 5,000-image MNIST subset (``dataset="mnist-5k"``). Its header records how it was
made: dataset and md5, the command, seed, settings and its accuracy on the full MNIST test
split (``xpnet.read_weights_info(BUNDLED_WEIGHTS)["metadata"]``). ``xpnet infer`` uses it
when no ``--weights`` is given.
"""

from pathlib import Path

BUNDLED_WEIGHTS = Path(__file__).with_name("mnist_5k.npz")
"""The bundled weights file, an xpnet ``.npz`` (load it with :func:`xpnet.load_weights`)."""
