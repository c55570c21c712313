"""Tokenizers: byte-level BPE (GPT-2 / llama-3 style) and their helpers."""

from .bpe import BPETokenizer
from .bytelevel import bytes_to_unicode, decode_bytelevel, encode_bytelevel

__all__ = ["BPETokenizer", "bytes_to_unicode", "encode_bytelevel", "decode_bytelevel"]
