"""Tokenizers: byte-level BPE (GPT-2, Llama 3, Qwen2 style), SentencePiece-style BPE
(Llama 2, Mistral, Gemma, Phi-3), BERT's WordPiece, character-level, their helpers, and reading/writing
them in model files and directories."""

from .base import AddedToken, TokenizerMixin
from .bpe import BPETokenizer
from .bytelevel import bytes_to_unicode, decode_bytelevel, encode_bytelevel
from .char import CharTokenizer
from .files import load_hf_tokenizer, load_tokenizer, save_tokenizer, tokenizer_from_gguf_metadata
from .spm import SentencePieceBPETokenizer
from .wordpiece import BertTokenizer, BertTokenizerFast

__all__ = ["AddedToken", "TokenizerMixin", "BPETokenizer", "SentencePieceBPETokenizer", "CharTokenizer",
           "BertTokenizerFast", "BertTokenizer",
           "bytes_to_unicode", "encode_bytelevel", "decode_bytelevel", "load_tokenizer", "load_hf_tokenizer",
           "tokenizer_from_gguf_metadata", "save_tokenizer"]
