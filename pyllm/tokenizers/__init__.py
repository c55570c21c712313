"""Tokenizers: byte-level BPE (GPT-2 / llama-3 style), character-level, their
helpers, and reading/writing them in model directories."""

from .bpe import BPETokenizer
from .bytelevel import bytes_to_unicode, decode_bytelevel, encode_bytelevel
from .char import CharTokenizer
from .files import load_tokenizer, save_tokenizer

__all__ = ["BPETokenizer", "CharTokenizer", "bytes_to_unicode", "encode_bytelevel", "decode_bytelevel",
           "load_tokenizer", "save_tokenizer"]
