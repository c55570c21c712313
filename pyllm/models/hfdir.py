"""Hugging Face model directories: ``config.json`` and the safetensors
weights (one ``model.safetensors`` or shards listed by
``model.safetensors.index.json``), memory-mapped and read in place.
Not the meaning of an architecture's names (see the architecture modules).

The reader is pyllm's own: the ``safetensors`` package's numpy interface
copies every tensor and has no bfloat16, while here each tensor is a view
of the mapped file (bfloat16 as its raw 16-bit words, ggml type BF16).

>>> ckpt = HFCheckpoint("my-model")                          # doctest: +SKIP
>>> ckpt.config["model_type"], ckpt.type_of("model.norm.weight")   # doctest: +SKIP
('qwen2', 0)
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import numpy as np

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"

# safetensors dtype -> (numpy dtype of the view, ggml type id)
_DTYPES: Dict[str, Tuple[Any, int]] = {
    "F32": (np.float32, 0),
    "F16": (np.float16, 1),
    "BF16": (np.uint16, 30),
}
# dtypes that can be viewed and converted to float32 (GPT-2 directories) but have no runtime type
_VIEW_ONLY: Dict[str, Any] = {"F64": np.float64}


def _view_dtype(dtype: str) -> Any:
    return _DTYPES[dtype][0] if dtype in _DTYPES else _VIEW_ONLY.get(dtype)


def _dim(d: Any) -> int:
    if isinstance(d, bool) or not isinstance(d, int) or d < 0:
        raise TypeError(d)
    return d


class _Shard:
    """One safetensors file: its header parsed and checked, its bytes mapped."""

    def __init__(self, path: Path):
        self.path = path
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError(f"{path} is not a safetensors file (shorter than its 8-byte header length)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100 << 20:
                raise ValueError(f"{path}: header length {n} does not fit the file ({size} bytes)")
            try:
                header = json.loads(fh.read(n).decode("utf-8"))
            except ValueError as err:
                raise ValueError(f"{path}: the header is not valid JSON ({err})") from None
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        if not isinstance(header, dict):
            raise ValueError(f"{path}: the header is not a JSON object")
        header.pop("__metadata__", None)
        self.base = 8 + n
        self.entries: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {}
        for name, entry in header.items():
            try:  # dimensions and offsets are non-negative integers (not 2.5, true or -1)
                dtype, shape, (a, b) = (entry["dtype"], tuple(_dim(d) for d in entry["shape"]),
                                        tuple(_dim(o) for o in entry["data_offsets"]))
                if not isinstance(dtype, str):
                    raise TypeError(dtype)
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}: tensor {name!r} has a malformed header entry") from None
            if not 0 <= a <= b or self.base + b > size:
                raise ValueError(f"{path}: tensor {name!r} lies outside the file (truncated?)")
            view = _view_dtype(dtype)
            if view is not None:
                count = math.prod(shape)  # exact: numpy's product would wrap around on huge dimensions
                if count * np.dtype(view).itemsize != b - a:
                    raise ValueError(f"{path}: tensor {name!r} has {b - a} bytes for shape {shape} of {dtype}")
            self.entries[name] = (dtype, shape, a, b)

    def array(self, name: str) -> np.ndarray:
        dtype, shape, a, b = self.entries[name]
        view = _view_dtype(dtype)
        if view is None:
            raise ValueError(f"tensor {name!r} in {self.path} has dtype {dtype}; pyllm reads "
                             f"{', '.join(list(_DTYPES) + list(_VIEW_ONLY))} safetensors weights")
        if self._map is None or a == b:
            return np.zeros(shape, view)
        return np.frombuffer(self._map, dtype=view, count=(b - a) // np.dtype(view).itemsize,
                             offset=self.base + a).reshape(shape)


class HFCheckpoint:
    """A model directory: ``.config`` (config.json as a dict), tensor names,
    shapes, ggml type ids and read-only views of the mapped weights."""

    def __init__(self, directory: Union[str, "os.PathLike[str]"]):
        d = Path(os.fspath(directory))
        self.path = str(d)
        cfg = d / "config.json"
        if not cfg.is_file():
            raise FileNotFoundError(f"{d} has no config.json")
        try:
            self.config: Dict[str, Any] = json.loads(cfg.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{cfg} is not valid JSON: {e}") from None
        if not isinstance(self.config, dict):
            raise ValueError(f"{cfg} does not hold a JSON object")
        files: List[Path]
        if (d / WEIGHTS).is_file():
            files = [d / WEIGHTS]
        elif (d / INDEX).is_file():
            try:
                weight_map = json.loads((d / INDEX).read_text(encoding="utf-8"))["weight_map"]
                files = [d / f for f in sorted(set(weight_map.values()))]
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ValueError(f"{d / INDEX} has no valid weight_map") from None
            for f in files:
                if not f.is_file():
                    raise FileNotFoundError(f"{d / INDEX} lists {f.name}, which is missing")
        else:
            raise FileNotFoundError(f"{d} has no {WEIGHTS} or {INDEX} (pyllm reads safetensors checkpoints)")
        self._where: Dict[str, _Shard] = {}
        for f in files:
            shard = _Shard(f)
            for name in shard.entries:
                if name in self._where:
                    raise ValueError(f"tensor {name!r} appears in two shards of {d}")
                self._where[name] = shard

    @property
    def names(self) -> List[str]:
        return sorted(self._where)

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def shape(self, name: str) -> Tuple[int, ...]:
        return self._entry(name).entries[name][1]

    def dtype(self, name: str) -> str:
        """The safetensors dtype as the header says it (``"F32"``, ``"BF16"``, ...)."""
        return self._entry(name).entries[name][0]

    def type_of(self, name: str) -> int:
        dtype = self._entry(name).entries[name][0]
        if dtype not in _DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {dtype}; pyllm reads {', '.join(_DTYPES)} weights")
        return _DTYPES[dtype][1]

    def array(self, name: str) -> np.ndarray:
        """The tensor as stored: float32 / float16 views, bfloat16 as uint16 words."""
        return self._entry(name).array(name)

    def float32(self, name: str) -> np.ndarray:
        """The tensor converted to float32 (a copy unless stored so)."""
        a = self.array(name)
        if self.dtype(name) == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        return np.ascontiguousarray(a, dtype=np.float32)

    def _entry(self, name: str) -> _Shard:
        if name not in self._where:
            raise KeyError(f"no tensor named {name!r} in {self.path}")
        return self._where[name]
