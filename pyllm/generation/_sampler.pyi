# Type stubs for the compiled logits-processor and sampler loops (_sampler.pyx).
# Signatures only; the semantics are documented in logits_process.py.

from typing import Any

import numpy as np
import numpy.typing as npt

_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_I32 = npt.NDArray[np.int32]

def repetition_penalty_(scores: _F32, ids: _I64, start: int, penalty: float) -> None: ...
def frequency_presence_penalty_(scores: _F32, ids: _I64, start: int, frequency: float, presence: float) -> None: ...
def no_repeat_ngram_(scores: _F32, ids: _I64, ngram: int) -> None: ...
def top_k_(scores: _F32, k: int) -> None: ...
def top_p_(scores: _F32, top_p: float, min_keep: int) -> None: ...
def min_p_(scores: _F32, min_p: float, min_keep: int) -> None: ...
def typical_(scores: _F32, mass: float, min_keep: int) -> None: ...
def sample_rows(scores: _F32, u: _F64, out: _I64) -> int: ...
def fused_sample(
    scores: _F32,
    ids: _I64,
    op_kind: _I32,
    op_a: _F64,
    op_b: _F64,
    op_start: _I64,
    ban_list: _I64,
    ban_off: _I64,
    temperature: float | np.floating[Any],
    top_k: int,
    top_p: float,
    top_p_keep: int,
    min_p: float,
    min_p_keep: int,
    warp: bool,
    u: _F64,
    do_sample: bool,
    out: _I64,
    scratch: npt.NDArray[np.uint64] | None = None,
) -> int: ...
def fused_scratch_bytes(V: int, T: int) -> int: ...

# op kinds of fused_sample's penalty ops
OP_REPETITION: int
OP_FREQ_PRESENCE: int
OP_NGRAM: int
OP_BAN: int
