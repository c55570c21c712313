"""Model files and architectures: GGUF reading, llama configs and models,
GPT-2 (trainable), and the AutoModel entry point."""

from .auto import AutoModelForCausalLM, AutoTokenizer
from .gguf import GGUFFile, TensorInfo
from .gpt2 import GPT2Config, GPT2LMHeadModel
from .llama import CausalLMOutput, LlamaConfig, LlamaForCausalLM

__all__ = ["AutoModelForCausalLM", "AutoTokenizer", "CausalLMOutput", "GGUFFile", "GPT2Config", "GPT2LMHeadModel",
           "LlamaConfig", "LlamaForCausalLM", "TensorInfo"]
