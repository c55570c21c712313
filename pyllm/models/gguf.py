"""Reading GGUF model files: metadata and tensors, memory-mapped and used in
place. The parsing is C++ (pyllm._C.GGUFFile); this is the Python face.
Not the interpretation of an architecture's metadata (see the model configs).

>>> f = GGUFFile("model.gguf")                         # doctest: +SKIP
>>> f.metadata["general.architecture"]                 # doctest: +SKIP
'llama'
>>> f.tensors["token_embd.weight"].type_name           # doctest: +SKIP
'Q8_0'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Dict, Tuple, Union

import numpy as np

from .. import _C


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type: int  # ggml type id
    type_name: str  # e.g. "Q4_1"
    shape: Tuple[int, ...]  # numpy order: the contiguous dimension last
    offset: int  # absolute byte offset in the file
    nbytes: int


class GGUFFile:
    """A GGUF v2/v3 file, validated when opened.

    Any inconsistency (bad magic or version, a count, length, dimension or
    offset that does not fit the file) raises ``ValueError`` saying what and
    where; a missing file raises ``FileNotFoundError``.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such GGUF file: {path}")
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path} is a directory, not a GGUF file")
        self._file = _C.GGUFFile(path)

    @property
    def path(self) -> str:
        return str(self._file.path)

    @property
    def version(self) -> int:
        return int(self._file.version)

    @property
    def file_size(self) -> int:
        return int(self._file.file_size)

    @cached_property
    def metadata(self) -> Dict[str, Any]:
        """Key -> value: ints, floats, bools, strs; arrays of strings as
        lists, numeric arrays as numpy arrays, nested arrays as lists."""
        return dict(self._file.metadata())

    @cached_property
    def tensors(self) -> Dict[str, TensorInfo]:
        return {t["name"]: TensorInfo(**t) for t in self._file.tensors()}

    def tensor_bytes(self, name: str) -> np.ndarray:
        """The tensor's raw bytes as a read-only uint8 view of the mapped file."""
        if name not in self.tensors:
            raise KeyError(f"no tensor named {name!r} in {self.path}")
        return self._file.tensor_bytes(name)

    def check_unchanged(self) -> None:
        """Raise ``OSError`` when the file was truncated or rewritten in place since it was
        opened: its tensors are views of the mapping, and reading a page past a truncated end
        would kill the process with SIGBUS. One ``fstat``; models call it before every step."""
        why = self._file.changed()
        if why:
            raise OSError(why)

    def __repr__(self) -> str:
        return f"GGUFFile({self.path!r}, version={self.version}, tensors={len(self.tensors)})"
