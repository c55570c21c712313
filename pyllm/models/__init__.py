"""Model files and architectures: GGUF and Hugging Face directory reading, the
architecture registry, the base class of every model (PreTrainedCausalLM), the
decoder model every architecture runs as, GPT-2 (trainable), BERT encoders, and the AutoModel
entry point."""

from .auto import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from .base import CausalLMOutput, PreTrainedCausalLM
from .bert import BertConfig, BertForSequenceClassification, BertModel
from .decoder import DecoderConfig, DecoderForCausalLM
from .gguf import GGUFFile, TensorInfo
from .gpt2 import GPT2Config, GPT2LMHeadModel
from .llama import LlamaConfig, LlamaForCausalLM

__all__ = ["AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification", "AutoTokenizer", "BertConfig",
           "BertForSequenceClassification", "BertModel", "CausalLMOutput", "DecoderConfig", "DecoderForCausalLM", "GGUFFile", "GPT2Config", "GPT2LMHeadModel",
           "LlamaConfig", "LlamaForCausalLM", "PreTrainedCausalLM", "TensorInfo"]
