"""Reads `torch.save`d checkpoints without running any code they pickle.

PyTorch Lightning checkpoints pickle more than tensors: `hyper_parameters`
may hold an `argparse.Namespace` or the training code's own objects (the
reference's augmentation classes), `callbacks` is keyed by callback classes.
A plain `torch.load(..., weights_only=False)` would import those modules and
call whatever the pickle names, i.e. run arbitrary code from a downloaded
file. Instead, every class or function a checkpoint names that PyTorch's
`weights_only` unpickler does not already allow is listed statically
(`torch.serialization.get_unsafe_globals_in_checkpoint`, which disassembles
the pickle without running it) and allowlisted under its name as an inert
`PickledObject` subclass: the `weights_only` unpickler then builds tensors
and containers as usual and, for those names, only records the arguments
and state the pickle gives them. Nothing from the checkpoint is imported or
called.
"""

import os
import re

# Classes that are plain dicts in every respect the converter needs; the
# weights-only unpickler only fills exact `dict`s, so they are read as one.
_READ_AS_DICT = ("pytorch_lightning.utilities.parsing.AttributeDict",)


class CheckpointReadError(ValueError):
    """A file that is not a readable `torch.save` checkpoint."""


class PickledObject:
    """Stands in for an object of a class the checkpoint names but that is
    never imported: it keeps the pickle's arguments and state as data.

    Attributes:
        pickled_name: the fully qualified name the pickle gave, e.g.
            `"argparse.Namespace"`.
        args: the positional arguments the pickle passed when creating it.
        state: the state the pickle set on it (usually the object's
            `__dict__`), or None.
    """

    pickled_name = "?"

    def __new__(cls, *args, **kwargs):
        instance = super().__new__(cls)
        instance.args = args
        instance.state = None
        return instance

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<pickled {self.pickled_name}>"


def placeholder_class(name):
    """A distinct `PickledObject` subclass standing in for global `name`."""
    class_name = "Pickled_" + re.sub(r"\W", "_", name)
    return type(class_name, (PickledObject,), {"pickled_name": name})


def _require_torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "Reading PyTorch checkpoints needs torch (only to read them): "
            "install keras-ecg's `torch` extra, `pip install 'keras-ecg[torch]'` "
            "(on a CPU-only machine install `torch` from the CPU wheel index "
            "first)."
        ) from error
    return torch


def load_torch_checkpoint(path):
    """Loads a `torch.save`d object with tensors, executing none of its code.

    Args:
        path: the checkpoint file.

    Returns:
        `(obj, foreign_names)`: the unpickled object (tensors on the CPU;
        objects of classes outside PyTorch's safe set as `PickledObject`s)
        and the sorted names of those classes and functions.

    Raises:
        CheckpointReadError: the file is missing or not a readable
            `torch.save` file.
        ImportError: torch is not installed.
    """
    torch = _require_torch()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointReadError(f"{path}: no such file.")
    try:
        foreign = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as error:  # torch raises several types here
        raise CheckpointReadError(
            f"{path}: not a checkpoint written by torch.save (zip format, "
            f"PyTorch >= 1.6): {_one_line(error)}"
        ) from error
    allowed = [
        (dict if name in _READ_AS_DICT else placeholder_class(name), name)
        for name in foreign
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure
        raise CheckpointReadError(
            f"{path}: cannot be read safely (without running code it pickles): "
            f"{_one_line(error)}"
        ) from error
    return obj, foreign


def plain_data(value):
    """`value` with `PickledObject`s of simple classes turned into dicts.

    An `argparse.Namespace` (what Lightning saved for modules that assigned
    `self.hparams = args`) becomes the dict of its attributes; other pickled
    objects stay `PickledObject`s. Containers are converted recursively.
    """
    if isinstance(value, PickledObject):
        if value.pickled_name == "argparse.Namespace" and isinstance(value.state, dict):
            return plain_data(value.state)
        return value
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_data(v) for v in value)
    return value


def _one_line(error):
    text = " ".join(str(error).split())
    return text[:300] + ("..." if len(text) > 300 else "")
