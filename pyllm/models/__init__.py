"""Model files and architectures: GGUF reading, llama configs and models,
and the AutoModel entry point."""

from .auto import AutoModelForCausalLM, AutoTokenizer
from .gguf import GGUFFile, TensorInfo
from .llama import CausalLMOutput, LlamaConfig, LlamaForCausalLM

__all__ = ["AutoModelForCausalLM", "AutoTokenizer", "CausalLMOutput", "GGUFFile", "LlamaConfig", "LlamaForCausalLM", "TensorInfo"]
