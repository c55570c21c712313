# Text out of a served sequence's tokens: deltas that never split a UTF-8 character, cut before a stop
# string (held back while it may still be one), and each token's text and bytes for logprobs. Not sampling.
"""Incremental text with OpenAI's stop-string rule and per-token text for logprobs."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..generation.streamers import TextDecodeBuffer


class TextAssembler:
    """Turns one choice's tokens into text deltas. The text ends before the first stop string (which
    OpenAI leaves out); a tail that could still become one is held back until it cannot. The deltas add
    up to ``tokenizer.decode(tokens, skip_special_tokens=True)`` cut at the first stop string.

    >>> a = TextAssembler(tok, ["\\n\\n"])   # doctest: +SKIP
    >>> a.push(token) + ... + a.finish()     # doctest: +SKIP
    """

    def __init__(self, tokenizer: Any, stops: List[str]):
        self.buffer = TextDecodeBuffer(tokenizer, words=False, skip_special_tokens=True)
        self.stops = list(stops)
        self.text = ""  # decoded so far (cut at a stop once one is seen)
        self.sent = 0  # characters handed out
        self.stopped = False

    def _cut(self) -> None:
        if not self.stops:
            return
        begin = max(0, self.sent - max(len(s) for s in self.stops))
        hits = [i for i in (self.text.find(s, begin) for s in self.stops) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def _held(self) -> int:
        """Characters at the end of the text that begin some stop string."""
        held = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.text)), held, -1):
                if self.text.endswith(s[:k]):
                    held = k
                    break
        return held

    def push(self, token: int) -> str:
        """The new text ``token`` makes final (often "")."""
        if self.stopped:
            return ""
        self.text += self.buffer.push([token])
        self._cut()
        end = len(self.text) if self.stopped else len(self.text) - self._held()
        delta = self.text[self.sent: max(end, self.sent)]
        self.sent = max(end, self.sent)
        return delta

    def finish(self) -> str:
        """The rest of the text once the sequence ended."""
        if not self.stopped:
            self.text += self.buffer.flush()
            self._cut()
        delta = self.text[self.sent:]
        self.sent = len(self.text)
        return delta


class TokenTexts:
    """Each token's text and UTF-8 bytes, as OpenAI's logprobs show them (cached per id)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._cache: Dict[int, Tuple[str, List[int]]] = {}

    def __call__(self, token: int) -> Tuple[str, List[int]]:
        hit = self._cache.get(token)
        if hit is None:
            raw = self._raw_bytes(token)
            hit = (raw.decode("utf-8", errors="replace"), list(raw))
            if len(self._cache) < 1 << 18:
                self._cache[token] = hit
        return hit

    def raw(self, token: int) -> bytes:
        """The token's bytes (part of a UTF-8 character for some byte-level tokens)."""
        return self._raw_bytes(token)

    def _raw_bytes(self, token: int) -> bytes:
        core: Optional[Any] = getattr(self.tokenizer, "_core", None)
        decode = getattr(core, "decode", None)
        if decode is not None:  # byte-level BPE: the token's own bytes, even part of a character
            try:
                raw = decode([token], False)
                if isinstance(raw, bytes):
                    return raw
            except (TypeError, ValueError):
                pass
        text: str = self.tokenizer.decode([token])
        return text.encode("utf-8")
