"""Model files and architectures: GGUF reading, llama configs and models,
and the AutoModel entry point."""

from .auto import AutoModelForCausalLM
from .gguf import GGUFFile, TensorInfo
from .llama import CausalLMOutput, LlamaConfig, LlamaForCausalLM

__all__ = ["AutoModelForCausalLM", "CausalLMOutput", "GGUFFile", "LlamaConfig", "LlamaForCausalLM", "TensorInfo"]
