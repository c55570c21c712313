"""GenerationConfig: every decoding control of generate(), with transformers'
names, defaults and checks. Not the decoding loop (utils.py)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union


@dataclass
class GenerationConfig:
    max_new_tokens: int = 20  # tokens to generate after the prompt
    min_new_tokens: int = 0  # eos is blocked until this many are generated
    do_sample: bool = False  # False: greedy argmax
    temperature: float = 1.0  # 0 means greedy even with do_sample
    top_k: int = 50  # keep the k most likely tokens (0: off)
    top_p: float = 1.0  # nucleus: smallest set with this much probability (1: off)
    min_p: Optional[float] = None  # drop tokens below min_p * the top probability
    typical_p: float = 1.0  # locally typical sampling (1: off)
    repetition_penalty: float = 1.0  # CTRL-style, over prompt and output (1: off)
    frequency_penalty: float = 0.0  # OpenAI-style: minus penalty * count so far
    presence_penalty: float = 0.0  # OpenAI-style: minus penalty once a token appeared
    no_repeat_ngram_size: int = 0  # ban repeating any n-gram of this size (0: off)
    num_return_sequences: int = 1  # samples per prompt
    seed: Optional[int] = None  # seeds the sampler's generator; None: fresh entropy
    eos_token_id: Optional[Union[int, List[int]]] = None  # stop at any of these
    pad_token_id: Optional[int] = None  # fills finished rows and left padding
    bos_token_id: Optional[int] = None
    stop_strings: Optional[Union[str, List[str]]] = None  # stop once the output contains one
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)

    def update(self, **kwargs: Any) -> "GenerationConfig":
        """A copy with the given fields replaced (None values are ignored);
        an unknown name raises TypeError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(k for k in kwargs if k not in names)
        if unknown:
            raise TypeError(f"unknown generation arguments: {', '.join(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in kwargs.items() if v is not None})

    def eos_ids(self) -> List[int]:
        if self.eos_token_id is None:
            return []
        if isinstance(self.eos_token_id, int):
            return [self.eos_token_id]
        return [int(e) for e in self.eos_token_id]

    def stop_list(self) -> List[str]:
        if self.stop_strings is None:
            return []
        if isinstance(self.stop_strings, str):
            return [self.stop_strings]
        return list(self.stop_strings)

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0.0

    def validate(self) -> None:
        """Raise ValueError naming the first control that is out of range."""

        def bad(msg: str) -> None:
            raise ValueError(msg)

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.max_new_tokens) or self.max_new_tokens <= 0:
            bad(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not is_int(self.min_new_tokens) or self.min_new_tokens < 0:
            bad(f"min_new_tokens must be a non-negative integer, got {self.min_new_tokens!r}")
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            bad(f"temperature must be >= 0 (0 means greedy), got {self.temperature!r}")
        if not is_int(self.top_k) or self.top_k < 0:
            bad(f"top_k must be an integer >= 0 (0 disables it), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            bad(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.min_p is not None and not 0.0 <= self.min_p <= 1.0:
            bad(f"min_p must be in [0, 1], got {self.min_p!r}")
        if not isinstance(self.typical_p, (int, float)) or not 0.0 < self.typical_p <= 1.0:
            bad(f"typical_p must be in (0, 1], got {self.typical_p!r}")
        if not isinstance(self.repetition_penalty, (int, float)) or not self.repetition_penalty > 0:
            bad(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        for name in ("frequency_penalty", "presence_penalty"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v)):
                bad(f"{name} must be a number, got {v!r}")
        if not is_int(self.no_repeat_ngram_size) or self.no_repeat_ngram_size < 0:
            bad(f"no_repeat_ngram_size must be an integer >= 0, got {self.no_repeat_ngram_size!r}")
        if not is_int(self.num_return_sequences) or self.num_return_sequences < 1:
            bad(f"num_return_sequences must be a positive integer, got {self.num_return_sequences!r}")
        if self.num_return_sequences > 1 and self.greedy:
            bad("num_return_sequences > 1 needs do_sample=True (greedy decoding would repeat one sequence)")
        if self.seed is not None and (not is_int(self.seed) or self.seed < 0):
            bad(f"seed must be a non-negative integer, got {self.seed!r}")
        for s in self.stop_list():
            if not isinstance(s, str) or not s:
                bad(f"stop_strings must be non-empty strings, got {s!r}")

    @classmethod
    def from_model_config(cls, config: Any) -> "GenerationConfig":
        return cls(eos_token_id=getattr(config, "eos_token_id", None),
                   pad_token_id=getattr(config, "pad_token_id", None),
                   bos_token_id=getattr(config, "bos_token_id", None))

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d


def as_list(x: Optional[Union[int, Sequence[int]]]) -> List[int]:
    if x is None:
        return []
    return [int(x)] if isinstance(x, int) else [int(v) for v in x]
