"""Model files and architectures: GGUF reading now; configs, loaders and
AutoModel classes as they land."""

from .gguf import GGUFFile, TensorInfo

__all__ = ["GGUFFile", "TensorInfo"]
