"""GenerationConfig: every decoding control of generate(), with transformers'
names, defaults and checks. Not the decoding loop (utils.py)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .._inputs import is_real

DEFAULT_MAX_NEW_TOKENS = 20  # transformers' default max_length=20, counted after the prompt


@dataclass
class GenerationConfig:
    max_new_tokens: Optional[int] = None  # tokens to generate after the prompt (wins over max_length)
    max_length: Optional[int] = None  # prompt + new tokens; neither set: 20 new tokens
    min_new_tokens: int = 0  # eos is blocked until this many are generated
    do_sample: bool = False  # False: greedy argmax (or beam search with num_beams > 1)
    temperature: float = 1.0  # softmax temperature when sampling; must be > 0 with do_sample
    top_k: int = 50  # keep the k most likely tokens (0: off)
    top_p: float = 1.0  # nucleus: smallest set with this much probability (1: off)
    min_p: Optional[float] = None  # drop tokens below min_p * the top probability
    typical_p: float = 1.0  # locally typical sampling (1: off)
    repetition_penalty: float = 1.0  # CTRL-style, over prompt and output (1: off)
    frequency_penalty: float = 0.0  # OpenAI-style: minus penalty * count so far
    presence_penalty: float = 0.0  # OpenAI-style: minus penalty once a token appeared
    no_repeat_ngram_size: int = 0  # ban repeating any n-gram of this size (0: off)
    num_return_sequences: int = 1  # samples per prompt (with beams: the best ones, <= num_beams)
    num_beams: int = 1  # beam search when > 1 (do_sample=False)
    length_penalty: float = 1.0  # beam score = sum log p / generated length ** length_penalty
    early_stopping: Union[bool, str] = False  # beams: True, False (heuristic) or "never", as transformers
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
        # numpy integers are integers: store Python ints so every later check and use sees one type
        kw: Dict[str, Any] = {k: int(v) if isinstance(v, np.integer) else v for k, v in kwargs.items() if v is not None}
        return dataclasses.replace(self, **kw)

    def new_tokens(self, prompt_length: int) -> int:
        """How many tokens to generate after a prompt of ``prompt_length`` tokens (the padded width
        of a batch), as transformers reads ``max_new_tokens`` and ``max_length``: ``max_new_tokens``
        wins when both are set (with a warning); ``max_length`` counts the prompt; neither: 20."""
        if self.max_new_tokens is not None:
            if self.max_length is not None:
                warnings.warn(f"Both max_new_tokens (={self.max_new_tokens}) and max_length (={self.max_length}) "
                              "seem to have been set. max_new_tokens will take precedence.", UserWarning,
                              stacklevel=4)
            return self.max_new_tokens
        if self.max_length is not None:
            if prompt_length >= self.max_length:
                raise ValueError(f"the input is {prompt_length} tokens long but max_length is {self.max_length} "
                                 "(max_length counts the prompt); increase max_length or set max_new_tokens")
            return self.max_length - prompt_length
        return DEFAULT_MAX_NEW_TOKENS

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
        if not isinstance(self.stop_strings, (list, tuple)):
            raise ValueError(f"stop_strings must be a string or a list of strings, got {self.stop_strings!r}")
        return list(self.stop_strings)

    @property
    def greedy(self) -> bool:
        return not self.do_sample

    def validate(self) -> None:
        """Raise ValueError naming the first control that is out of range."""

        def bad(msg: str) -> None:
            raise ValueError(msg)

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        if self.max_new_tokens is not None and (not is_int(self.max_new_tokens) or self.max_new_tokens <= 0):
            bad(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.max_length is not None and (not is_int(self.max_length) or self.max_length <= 0):
            bad(f"max_length must be a positive integer (prompt + new tokens), got {self.max_length!r}")
        if not is_int(self.min_new_tokens) or self.min_new_tokens < 0:
            bad(f"min_new_tokens must be a non-negative integer, got {self.min_new_tokens!r}")
        do_sample: Any = self.do_sample
        if not isinstance(do_sample, (bool, np.bool_)):
            bad(f"do_sample must be True or False, got {do_sample!r}")
        if not is_real(self.temperature) or not self.temperature >= 0:
            bad(f"temperature must be a number > 0, got {self.temperature!r}")
        if self.do_sample and self.temperature == 0:
            # as transformers' TemperatureLogitsWarper: sampling at temperature 0 is not a distribution
            bad(f"temperature (={self.temperature}) has to be strictly positive when sampling (do_sample=True); "
                "for greedy decoding set do_sample=False")
        if not is_int(self.top_k) or self.top_k < 0:
            bad(f"top_k must be an integer >= 0 (0 disables it), got {self.top_k!r}")
        if not is_real(self.top_p) or not 0.0 < self.top_p <= 1.0:
            bad(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.min_p is not None and not (is_real(self.min_p) and 0.0 <= self.min_p <= 1.0):
            bad(f"min_p must be in [0, 1], got {self.min_p!r}")
        if not is_real(self.typical_p) or not 0.0 < self.typical_p <= 1.0:
            bad(f"typical_p must be in (0, 1], got {self.typical_p!r}")
        if not is_real(self.repetition_penalty) or not self.repetition_penalty > 0:
            bad(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        for name in ("frequency_penalty", "presence_penalty"):
            v = getattr(self, name)
            if not is_real(v) or math.isnan(v):
                bad(f"{name} must be a number, got {v!r}")
        if not is_int(self.no_repeat_ngram_size) or self.no_repeat_ngram_size < 0:
            bad(f"no_repeat_ngram_size must be an integer >= 0, got {self.no_repeat_ngram_size!r}")
        if not is_int(self.num_beams) or self.num_beams < 1:
            bad(f"num_beams must be a positive integer, got {self.num_beams!r}")
        if not is_real(self.length_penalty) or math.isnan(self.length_penalty):
            bad(f"length_penalty must be a number, got {self.length_penalty!r}")
        if self.early_stopping not in (True, False, "never"):
            bad(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if not is_int(self.num_return_sequences) or self.num_return_sequences < 1:
            bad(f"num_return_sequences must be a positive integer, got {self.num_return_sequences!r}")
        if self.num_beams > 1:
            if self.do_sample:
                bad("num_beams > 1 with do_sample=True (beam sampling) is not supported; use do_sample=False "
                    "for beam search")
            if self.num_return_sequences > self.num_beams:
                bad(f"num_return_sequences (={self.num_return_sequences}) has to be smaller or equal to "
                    f"num_beams (={self.num_beams})")
        elif self.num_return_sequences > 1 and self.greedy:
            bad("num_return_sequences > 1 needs do_sample=True or num_beams >= num_return_sequences (greedy "
                "decoding would repeat one sequence)")
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
