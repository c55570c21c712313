# What users pass, checked in one place: token ids (lists, numpy arrays, torch tensors) and integer
# arguments (counts, seeds; numpy integers included). Not tokenization and not model code.
"""One validator for token ids and integer arguments.

Token ids are integers: Python ``int``, numpy integer scalars and arrays of
an integer dtype, or torch integer tensors (converted without importing
torch here). ``bool``, floats (even ``2.0``), complex numbers and strings
are refused with a ``TypeError`` naming the argument; ids outside the
vocabulary, empty prompts and ragged 2-D input raise ``ValueError``.

>>> token_ids([1, 2, 3], "input_ids", vocab_size=10)
[1, 2, 3]
>>> token_ids(np.array([1.5, 2.0]), "token_ids")
Traceback (most recent call last):
TypeError: token_ids must hold integer token ids, got float64 values
>>> as_int(np.int64(5), "max_new_tokens", minimum=1)
5
"""

from __future__ import annotations

import numbers
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["as_int", "is_torch_tensor", "to_numpy", "like_input", "token_ids", "token_id_rows", "id_batch"]


def is_torch_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (checked by type, so torch is not imported)."""
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach") and hasattr(x, "numpy")


def to_numpy(x: Any) -> Any:
    """A torch tensor as a numpy array; anything else unchanged."""
    if is_torch_tensor(x):
        return x.detach().cpu().numpy()
    return x


def like_input(template: Any, arr: np.ndarray) -> Any:
    """``arr`` as a torch tensor when ``template`` is one (what a transformers user gets back), else as is."""
    if is_torch_tensor(template):
        import torch

        return torch.from_numpy(np.ascontiguousarray(arr))
    return arr


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def as_int(value: Any, name: str, minimum: Optional[int] = None) -> int:
    """``value`` as an int: Python and numpy integers pass, ``bool`` and floats raise TypeError,
    values below ``minimum`` ValueError."""
    value = to_numpy(value)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


def _kind_error(name: str, what: str) -> TypeError:
    return TypeError(f"{name} must hold integer token ids, got {what}")


def _check_array(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size == 0 and arr.dtype.kind in "fO":
        return arr.astype(np.int64)  # np.asarray([]) is float64: an empty list holds no wrong type
    if arr.dtype == object:
        for i, v in enumerate(arr.reshape(-1)):
            if not _is_int(v):
                raise _kind_error(name, f"{type(v).__name__} {v!r}")
            if not -2**63 <= v < 2**63:
                raise ValueError(f"token id {v} at position {i} of {name} is out of range")
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise _kind_error(name, "str values" if arr.dtype.kind in "USOT" else f"{arr.dtype} values")
    return arr


def _scan(x: Sequence[Any], name: str) -> None:
    # numpy would read [True, 5] as [1, 5]: a Python list is looked at before it becomes an array
    for v in x:
        if isinstance(v, (bool, np.bool_)):
            raise _kind_error(name, f"bool {v!r}")
        if isinstance(v, (list, tuple)):
            _scan(v, name)


def _check_range(arr: np.ndarray, name: str, vocab_size: Optional[int], row_name: str = "row") -> None:
    if vocab_size is None or arr.size == 0:
        return
    bad = (arr < 0) | (arr >= vocab_size)
    if bad.any():
        where = np.argwhere(bad)[0]
        at = f"position {int(where[-1])}" + (f" of {row_name} {int(where[0])}" if arr.ndim == 2 else "")
        raise ValueError(f"token id {int(arr[tuple(where)])} at {at} of {name} is out of range [0, {vocab_size})")


def _as_array(x: Any, name: str) -> np.ndarray:
    x = to_numpy(x)
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be token ids (integers), got {type(x).__name__}; encode text with the tokenizer")
    if _is_int(x):
        if not -2**63 <= x < 2**63:
            raise ValueError(f"token id {x} of {name} is out of range")
        return np.asarray([x], dtype=np.int64)
    if isinstance(x, (bool, np.bool_, float, complex, np.floating, np.complexfloating)) or x is None:
        raise _kind_error(name, f"{type(x).__name__} {x!r}")
    if not isinstance(x, (np.ndarray, Sequence)):
        raise TypeError(f"{name} must be token ids: a list, numpy array or torch tensor of integers, "
                        f"got {type(x).__name__}")
    if isinstance(x, (list, tuple)):
        _scan(x, name)
    try:
        arr = np.asarray(x)
    except ValueError:
        raise ValueError(f"{name} rows must all have the same length (pad them and pass attention_mask)") from None
    if arr.dtype == object and arr.ndim == 1 and len(arr) and not _is_int(arr[0]):
        raise ValueError(f"{name} rows must all have the same length (pad them and pass attention_mask)")
    return arr


def token_ids(x: Any, name: str = "input_ids", vocab_size: Optional[int] = None) -> List[int]:
    """One sequence of ids (an int, a 1-D list / array / tensor, or a (1, T) batch) as a list of ints.

    >>> token_ids(np.array([[5, 6]]), "ids")
    [5, 6]
    """
    arr = _check_array(_as_array(x, name), name)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one sequence of ids (1-D), got shape {arr.shape}")
    _check_range(arr, name, vocab_size)
    return [int(t) for t in arr]


def id_batch(x: Any, name: str = "input_ids", vocab_size: Optional[int] = None) -> np.ndarray:
    """1-D or 2-D ids as a non-empty (B, T) int64 array."""
    arr = _check_array(_as_array(x, name), name)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (batch, time), got shape {arr.shape}")
    _check_range(arr, name, vocab_size)
    return arr.astype(np.int64, copy=False)


def _mask_array(mask: Any, shape: Tuple[int, ...]) -> np.ndarray:
    m = np.asarray(to_numpy(mask))
    if m.dtype.kind not in "iub":
        raise TypeError(f"attention_mask must hold 0/1 integers, got {m.dtype} values")
    if m.ndim == 1 and len(shape) == 2 and shape[0] == 1:
        m = m[None, :]
    if m.shape != shape:
        raise ValueError(f"attention_mask has shape {m.shape}, input_ids {shape}")
    return m


def token_id_rows(x: Any, vocab_size: int, attention_mask: Any = None,
                  name: str = "input_ids") -> Tuple[List[List[int]], int]:
    """Prompts as lists of ids, and the width of the input (its padded length).

    ``x``: a list of ids, a list of prompts of any lengths, or a 1-D / 2-D
    array or tensor; ``attention_mask`` (same shape, 0 = padding, on either
    side) selects each row's tokens.
    """
    x = to_numpy(x)
    nested = isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(to_numpy(x[0]), (list, tuple, np.ndarray))
    if nested:
        rows = [token_ids(r, f"{name}[{b}]", vocab_size) for b, r in enumerate(x)]
        if attention_mask is not None:
            lengths = {len(r) for r in rows}
            if len(lengths) != 1:
                raise ValueError("attention_mask goes with rows of one length (padded); got rows of different "
                                 "lengths")
            arr = np.asarray(rows, dtype=np.int64)
        else:
            width = max(len(r) for r in rows)
            for b, r in enumerate(rows):
                if not r:
                    raise ValueError(f"prompt {b} of {name} is empty: generation needs at least one token")
            return rows, width
    else:
        arr = _check_array(_as_array(x, name), name)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
        _check_range(arr, name, vocab_size, row_name="prompt")
    if attention_mask is not None:
        mask = _mask_array(attention_mask, arr.shape)
        rows = [[int(t) for t in arr[b][mask[b] != 0]] for b in range(arr.shape[0])]
    else:
        rows = [[int(t) for t in r] for r in arr]
    for b, r in enumerate(rows):
        if not r:
            raise ValueError(f"prompt {b} of {name} is empty: generation needs at least one token")
    return rows, int(arr.shape[1])


def is_real(v: Any) -> bool:
    """A real number that is not a bool (numpy floats and ints included)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
