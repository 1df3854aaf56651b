"""A model its framework would run differently in its current mode is refused, not
converted to what it computes in another mode.

xpnet computes inference. A PyTorch module keeps a training flag per layer: a ``Dropout``
left in training mode zeroes values at random in PyTorch, so it is refused (call
``module.eval()``). A ``Dropout`` with ``p=0``, or any module in training mode whose layers
compute the same in both modes (``Linear`` and activations), computes what xpnet computes
and is read. Layers with running statistics (``BatchNorm``) are refused in either mode.
Keras keeps no mode in a model (``training`` is an argument of each call, inference by
default), so a Keras ``Dropout`` is read as ``model(x)`` runs it.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.errors import NetworkError

torch = pytest.importorskip("torch", reason="torch is not installed (xpnet[torch])")
nn = torch.nn

pytestmark = pytest.mark.needs_session("torch", reason="torch is the torch session's")


def _module(dropout: float) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 3), nn.Softmax(dim=1)
    )


def _torch_output(module: nn.Sequential, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_a_dropout_in_training_mode_is_refused_naming_it():
    module = _module(0.5).train()
    x = np.random.default_rng(0).random((50, 6)).astype(np.float32)
    # What PyTorch computes in this mode: random, unlike any fixed network.
    assert not np.allclose(_torch_output(module, x), _torch_output(module, x))
    with pytest.raises(NetworkError, match=r"module 2 \(Dropout\(p=0.5\)\) is in training mode"):
        xpnet.from_torch(module)


def test_only_the_dropout_modules_mode_counts():
    """A module put in eval mode, then one Dropout alone back in training mode."""
    module = _module(0.1).eval()
    module[2].train()
    with pytest.raises(NetworkError, match=r"module\.eval"):
        xpnet.from_torch(module)
    nested = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2)), nn.Linear(4, 2))
    nested.eval()
    nested[0][1].train()
    with pytest.raises(NetworkError, match=r"module 0\.1 \(Dropout"):
        xpnet.from_torch(nested)


@pytest.mark.parametrize("mode", ["eval", "train_without_dropout"])
def test_a_module_that_computes_the_same_in_its_mode_is_read_with_torchs_answer(mode):
    module = _module(0.3).eval() if mode == "eval" else _module(0.0).train()
    x = np.random.default_rng(1).random((50, 6)).astype(np.float32)
    network = xpnet.from_torch(module)
    np.testing.assert_allclose(
        xpnet.predict(network, x), _torch_output(module, x), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_is_refused_in_either_mode(training):
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    module.train(training)
    with pytest.raises(NetworkError, match="BatchNorm1d"):
        xpnet.from_torch(module)
