"""What a trained weights file says about its making: ``xpnet train`` writes it, ``infer`` shows it.

:class:`TrainingRecord` is stored as the metadata of the weights file's header
(:func:`xpnet.save_weights`, :func:`xpnet.read_weights_info`) and printed by
``xpnet train --json``; :func:`summary` is the one line ``xpnet infer`` prints about it.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class TrainingRecord:
    """How a network was trained (data, command, settings, machine) and how well it did.

    ``xpnet train`` stores it, as a JSON object, as the ``metadata`` of the weights file's
    header; :func:`xpnet.read_weights_info` checks that its fields have these types.
    """

    command: str
    """An ``xpnet train`` command line with every setting spelled out."""
    dataset: str
    dataset_md5: dict[str, str]
    """Each file of the training split and the md5 of its canonical copy, which the loader
    checked (through the decompressed bytes' md5, where the copy was re-compressed)."""
    test_md5: dict[str, str]
    """The same for the test split's files."""
    train_images: int
    test_images: int
    backend: str
    device: str
    dtype: str
    layers: list[int]
    activations: list[str]
    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    augment_shift: int
    seed: int
    """Seeds the initial weights, the shuffling and the shifts."""
    epochs: int
    epochs_completed: int
    interrupted: bool
    """Stopped by Ctrl-C: the network is as of the last completed step."""
    train_loss: float | None
    """Mean loss over the last completed epoch's batches."""
    train_accuracy: float | None
    test_loss: float | None
    """On the whole test split, after training; ``None`` when interrupted."""
    test_accuracy: float | None
    train_seconds: float
    cpu_threads: int | None
    """Threads of the CPU math while training (NumPy's BLAS, or PyTorch's on the CPU);
    bitwise results depend on it. ``None`` where not known (GPUs, JAX)."""
    xpnet_version: str
    numpy_version: str
    date: str
    """When training ended, UTC, ISO 8601."""
    history: list[dict[str, Any]]
    """One entry per completed epoch: epoch, loss, accuracy, seconds."""


_RECORD_FIELDS = frozenset(field.name for field in fields(TrainingRecord))

MAX_NESTING = 64
"""The deepest a weights file's JSON header may nest arrays and objects: a training record
needs four levels; a header nested hundreds deep would make every reader that walks it
(printing it, copying it to JSON output) run out of stack."""


def load_json(text: str | bytes) -> Any:
    """The JSON ``text`` of a weights file's header, nested at most :data:`MAX_NESTING` deep.

    Raises
    ------
    ValueError
        One line saying what is wrong: not JSON, or nested too deeply.

    Examples
    --------
    >>> from xpnet.training_record import load_json
    >>> load_json('{"seed": [1, 2]}')
    {'seed': [1, 2]}
    >>> load_json("[" * 100 + "]" * 100)
    Traceback (most recent call last):
    ...
    ValueError: its JSON is nested too deeply (more than 64 levels)
    """
    too_deep = f"its JSON is nested too deeply (more than {MAX_NESTING} levels)"
    try:
        value = json.loads(text)
    except RecursionError:  # nested past the interpreter's stack: deeper than any bound
        raise ValueError(too_deep) from None
    except ValueError as exc:
        raise ValueError(f"it is not valid JSON: {exc}") from None
    check_nesting(value, too_deep)
    return value


def check_nesting(value: object, message: str) -> None:
    """Raise ``ValueError(message)`` if ``value``'s dicts and lists nest deeper than
    :data:`MAX_NESTING`; walked without recursion, so any depth is measured safely."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = list(item.values())
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        if depth > MAX_NESTING:
            raise ValueError(message)
        stack.extend((child, depth + 1) for child in children)


@functools.cache
def json_types() -> Mapping[str, tuple[type, ...]]:
    """Each field of :class:`TrainingRecord` and the Python types its JSON value may
    parse to, read from the field's annotation (a float may be written as an integer;
    ``X | None`` may be null; a dict or a list is checked as such). Read once, on the first
    call, not when xpnet is imported.

    Returns
    -------
    mapping of str to tuple of type
        Field name to the types :func:`xpnet.read_weights_info` accepts for it.

    Examples
    --------
    >>> from xpnet.training_record import json_types
    >>> json_types()["test_accuracy"]
    (<class 'int'>, <class 'float'>, <class 'NoneType'>)
    """
    kinds: dict[str, tuple[type, ...]] = {}
    for name, annotation in typing.get_type_hints(TrainingRecord).items():
        parts = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
        found: list[type] = []
        for part in parts or (annotation,):
            base = typing.get_origin(part) or part
            found += [int, float] if base is float else [base]
        kinds[name] = tuple(found)
    return types.MappingProxyType(kinds)  # shared by every caller: read-only


def summary(metadata: object) -> str:
    """One line on how the weights were made, from their header's metadata.

    Parameters
    ----------
    metadata : object
        The ``metadata`` of a weights file's header (:func:`xpnet.read_weights_info`).

    Returns
    -------
    str
        What a :class:`TrainingRecord` says in words; other metadata (written by other
        means, or with fields of the wrong types) as JSON. The text is as the file has it:
        escape control characters before printing it on a terminal.
    """
    if not _is_record(metadata):
        return json.dumps(metadata, default=str)
    assert isinstance(metadata, Mapping)
    files = ", ".join(f"{name} md5 {md5}" for name, md5 in metadata["dataset_md5"].items())
    tested = (
        "interrupted, not tested"
        if metadata["test_accuracy"] is None
        else f"test accuracy {metadata['test_accuracy']} on {metadata['test_images']} test images"
    )
    return (
        f"trained on {metadata['dataset']} ({metadata['train_images']} images; {files}), "
        f"{metadata['epochs_completed']} epochs, seed {metadata['seed']}; {tested}; "
        f"made by: {metadata['command']} (xpnet {metadata['xpnet_version']}, {metadata['date']})"
    )


def _is_record(metadata: object) -> bool:
    """Whether ``metadata`` has every field :func:`summary` reads, of the type it needs."""
    if not isinstance(metadata, Mapping) or _RECORD_FIELDS - metadata.keys():
        return False
    md5 = metadata["dataset_md5"]
    return (
        isinstance(md5, Mapping)
        and all(isinstance(value, str) for value in (*md5, *md5.values()))
        and all(
            isinstance(metadata[key], str)
            for key in ("dataset", "command", "xpnet_version", "date")
        )
        and all(
            isinstance(metadata[key], int) and not isinstance(metadata[key], bool)
            for key in ("train_images", "test_images", "epochs_completed", "seed")
        )
        and (
            metadata["test_accuracy"] is None
            or (
                isinstance(metadata["test_accuracy"], (int, float))
                and not isinstance(metadata["test_accuracy"], bool)
            )
        )
    )
