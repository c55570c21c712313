"""Generation: GenerationConfig, logits processors and the seeded sampler,
streamers, and the decoding loop models inherit (GenerationMixin)."""

from .configuration import GenerationConfig
from .logits_process import LogitsProcessor, LogitsProcessorList
from .streamers import TextIteratorStreamer, TextStreamer
from .utils import GenerationMixin, ScoreResult

__all__ = [
    "GenerationConfig",
    "GenerationMixin",
    "LogitsProcessor",
    "LogitsProcessorList",
    "ScoreResult",
    "TextIteratorStreamer",
    "TextStreamer",
]
