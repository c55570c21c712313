"""Streamers: text out of a generation as it is produced, cut at safe
boundaries (whole UTF-8 characters, whole words), with transformers' names
and protocol (put(token_ids) then end()). Not the decoding loop."""

from __future__ import annotations

import queue
import sys
from typing import Any, Callable, List, Optional, TextIO, cast


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
            or 0x3040 <= cp <= 0x30FF or 0xAC00 <= cp <= 0xD7A3)


class TextDecodeBuffer:
    """Turns a growing list of token ids into text pieces that never split a
    UTF-8 character and, by default, never split a word.

    Each push decodes only a short window: the tokens since the last piece of
    text was read, once with and once without the new ones (both from the
    same start, so tokenizers that drop a leading space decode alike), and
    the difference is the new text. A whole-history decode per token would
    grow with the length of the output."""

    def __init__(self, tokenizer: Any, words: bool = True, **decode_kwargs: Any):
        self.tokenizer = tokenizer
        self.words = words
        self.decode_kwargs = decode_kwargs
        self.tokens: List[int] = []  # the window: tokens[:read] were read last time, then the new ones
        self.read = 0
        self.pending = ""  # decoded text not handed out yet (the last, unfinished word)
        # a pyllm tokenizer whose decode is the shared one (checked ids into _decode_ids) decodes
        # directly: push checks each id once, not each decode of the window (those checks were a third
        # of a server's per-token time)
        from ..tokenizers.base import TokenizerMixin

        self._vocab = getattr(tokenizer, "vocab_size", None)
        raw = getattr(tokenizer, "_decode_ids", None)
        self._raw: Optional[Callable[[List[int], bool], str]] = None
        if callable(raw) and isinstance(self._vocab, int) and set(decode_kwargs) <= {"skip_special_tokens"} \
                and getattr(type(tokenizer), "decode", None) is TokenizerMixin.decode:
            self._raw = cast(Callable[[List[int], bool], str], raw)
        self._skip = bool(decode_kwargs.get("skip_special_tokens", False))

    def _decode(self, ids: List[int]) -> str:
        if self._raw is not None:
            return self._raw(ids, self._skip)
        text: str = self.tokenizer.decode(ids, **self.decode_kwargs)
        return text

    def _new_text(self) -> str:
        """The text the tokens after ``read`` add to the window's."""
        before = self._decode(self.tokens[:self.read]) if self.read else ""
        after = self._decode(self.tokens)
        return after[len(before):]

    def push(self, ids: List[int]) -> str:
        new_ids = [int(i) for i in ids]
        if self._raw is not None:
            assert isinstance(self._vocab, int)
            for i in new_ids:
                if not 0 <= i < self._vocab:
                    raise ValueError(f"token id {i} is out of range [0, {self._vocab})")
        self.tokens.extend(new_ids)
        new = self._new_text()
        if new and not new.endswith("\ufffd"):  # else: inside a UTF-8 character, wait for its bytes
            # the next window starts at the tokens just read; older ones are done
            del self.tokens[:self.read]
            self.read = len(self.tokens)
            self.pending += new
        text = self.pending
        if text.endswith("\n") or not self.words or (text and _is_cjk(text[-1])):
            end = len(text)
        else:
            end = text.rfind(" ") + 1
        self.pending = text[end:]
        return text[:end]

    def flush(self) -> str:
        piece = self.pending + (self._new_text() if self.read < len(self.tokens) else "")
        self.tokens, self.read, self.pending = [], 0, ""
        return piece


class BaseStreamer:
    def put(self, value: Any) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


class TextStreamer(BaseStreamer):
    """Prints text to ``file`` (stdout) as generation goes, as transformers'
    TextStreamer. The first ``put`` is the prompt, printed unless ``skip_prompt``.

    >>> model.generate(ids, streamer=TextStreamer(tokenizer), max_new_tokens=20)  # doctest: +SKIP
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, file: Optional[TextIO] = None,
                 **decode_kwargs: Any):
        self.buffer = TextDecodeBuffer(tokenizer, **decode_kwargs)
        self.skip_prompt = skip_prompt
        self.file = file
        self._next_is_prompt = True

    def put(self, value: Any) -> None:
        ids = [int(v) for v in (value.reshape(-1) if hasattr(value, "reshape") else value)]
        if self._next_is_prompt:
            self._next_is_prompt = False
            if self.skip_prompt:
                return
        self.on_finalized_text(self.buffer.push(ids))

    def end(self) -> None:
        self.on_finalized_text(self.buffer.flush(), stream_end=True)
        self._next_is_prompt = True

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if not text and not stream_end:
            return  # most tokens end inside a word: nothing to print yet
        out = self.file or sys.stdout
        print(text, end="" if not stream_end else "\n", file=out, flush=True)


class TextIteratorStreamer(TextStreamer):
    """Collects the text pieces in a queue for another thread to iterate, as
    transformers' TextIteratorStreamer; ``timeout`` (seconds) bounds each wait.

    >>> streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)        # doctest: +SKIP
    >>> Thread(target=model.generate, args=(ids,), kwargs={"streamer": streamer}).start()  # doctest: +SKIP
    >>> "".join(streamer)                                                   # doctest: +SKIP
    """

    _STOP = object()

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, timeout: Optional[float] = None,
                 **decode_kwargs: Any):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.queue: "queue.Queue[object]" = queue.Queue()  # text pieces, then _STOP
        self.timeout = timeout

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.queue.put(text, timeout=self.timeout)
        if stream_end:
            self.queue.put(self._STOP, timeout=self.timeout)

    def __iter__(self) -> "TextIteratorStreamer":
        return self

    def __next__(self) -> str:
        value = self.queue.get(timeout=self.timeout)
        if value is self._STOP:
            raise StopIteration
        return cast(str, value)  # anything but the stop marker is a text piece
