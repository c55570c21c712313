# Structured output for the server: response_format (json_object / json_schema) compiled by llguidance
# into a token mask applied as a logits processor. Not a grammar engine: llguidance does the matching.
"""JSON-constrained decoding through llguidance.

:class:`Grammars` holds a model's llguidance tokenizer (each token's bytes,
built once); :meth:`Grammars.processor` compiles a JSON schema into an
``LLMatcher`` and returns a logits processor that, before each sample,
advances the matcher over the tokens sampled since its last call and sets
every token the grammar does not allow next to ``-inf``. The end-of-sequence
token is allowed only where the document is complete.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np


class GrammarError(ValueError):
    """The schema cannot be compiled (unsupported or invalid)."""


class _Wrapper:
    """What llguidance's LLTokenizer reads from a tokenizer: token bytes, eos/bos, special ids, encode."""

    def __init__(self, tokenizer: Any, token_bytes: Sequence[bytes], eos: int):
        self.eos_token_id = eos
        self.bos_token_id = getattr(tokenizer, "bos_token_id", None)
        self.tokens = list(token_bytes)
        self.special_token_ids = list(getattr(tokenizer, "all_special_ids", []))
        self.is_tokenizer_wrapper = True
        self._tok = tokenizer

    def __call__(self, s: Any) -> List[int]:
        text = s.decode("utf-8", errors="replace") if isinstance(s, bytes) else str(s)
        return list(self._tok.encode(text, add_special_tokens=False))


class Grammars:
    """llguidance over one model's vocabulary."""

    def __init__(self, tokenizer: Any, token_bytes: Sequence[bytes], eos: int, vocab_size: int):
        import llguidance

        self._ll = llguidance
        self.vocab_size = vocab_size
        wrapper = _Wrapper(tokenizer, token_bytes, eos)
        self.tokenizer = llguidance.LLTokenizer(wrapper, n_vocab=vocab_size, eos_token=eos)  # type: ignore[arg-type]
        self.mask_seconds = 0.0  # time spent computing masks, and how many (the cost per token)
        self.masks = 0

    def compile(self, schema: Dict[str, Any]) -> str:
        try:
            grammar = self._ll.LLMatcher.grammar_from_json_schema(json.dumps(schema))
        except ValueError as e:
            raise GrammarError(f"response_format: the JSON schema is not valid: {e}") from e
        is_error, messages = self._ll.LLMatcher.validate_grammar_with_warnings(grammar, self.tokenizer)
        if is_error:
            raise GrammarError(f"response_format: unsupported JSON schema: {messages[0] if messages else ''}")
        return str(grammar)

    def processor(self, grammar: str, prompt_length: int) -> "JsonMask":
        """A fresh mask over a compiled grammar (:meth:`compile`) for one sequence."""
        return JsonMask(self, self._ll.LLMatcher(self.tokenizer, grammar, log_level=0), prompt_length)


class JsonMask:
    """Logits processor: tokens the matcher does not allow next get -inf. Stateful: one per sequence."""

    def __init__(self, grammars: Grammars, matcher: Any, prompt_length: int):
        self.grammars = grammars
        self.matcher = matcher
        self.consumed = prompt_length  # positions of input_ids the matcher has seen
        words = (grammars.vocab_size + 31) // 32
        self.bitmask = np.zeros(words, dtype=np.int32)
        self.bits = np.arange(32, dtype=np.int32)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        ids = np.asarray(input_ids).reshape(-1)
        for tok in ids[self.consumed:]:
            self.matcher.consume_token(int(tok))
        self.consumed = len(ids)
        if self.matcher.is_error():
            raise ValueError(f"structured output: the grammar refused a token: {self.matcher.get_error()}")
        t0 = time.perf_counter()
        self.matcher.unsafe_compute_mask_ptr(self.bitmask.ctypes.data, self.bitmask.nbytes)
        self.grammars.mask_seconds += time.perf_counter() - t0
        self.grammars.masks += 1
        allowed = ((self.bitmask[:, None] >> self.bits[None, :]) & 1).reshape(-1)[: scores.shape[-1]]
        out = np.array(scores, dtype=np.float32)
        out[:, allowed == 0] = -np.inf
        return out


def schema_of(response_format: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The JSON schema an OpenAI ``response_format`` asks for (None: free text)."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise GrammarError("response_format.json_schema: needs an object with a 'schema' object")
        schema = spec.get("schema", {})
        return schema if isinstance(schema, dict) else {}
    raise GrammarError(f"response_format.type: must be text, json_object or json_schema, got {kind!r}")
