# The OpenAI request bodies the server takes (pydantic models, checked on arrival) and their mapping onto
# the engine's SamplingParams. Not the HTTP routes (app.py) and not the decoding (engine.py).
"""OpenAI-shaped requests: chat completions, completions, embeddings, tokenize / detokenize."""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from .engine import SamplingParams

__all__ = ["ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest", "TokenizeRequest", "DetokenizeRequest",
           "APIError"]


class APIError(Exception):
    """An error answered with OpenAI's body ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> Dict[str, Dict[str, Optional[str]]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Body(BaseModel):
    # an argument the server does not know is an error (as OpenAI's API answers), not silently ignored
    model_config = ConfigDict(extra="forbid")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, List[TextPart], None] = None
    name: Optional[str] = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(_Body):
    include_usage: bool = False


Stop = Union[str, List[str], None]


class _Sampling(_Body):
    model: str
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=256)
    stop: Stop = None
    seed: Optional[int] = Field(None, ge=0, lt=2**63)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: Optional[Dict[str, float]] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    # beyond OpenAI, under the names other OpenAI-compatible servers use
    top_k: Optional[int] = Field(None, ge=0)
    min_p: Optional[float] = Field(None, ge=0, le=1)
    repetition_penalty: Optional[float] = Field(None, gt=0)

    def stop_list(self) -> List[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise APIError(400, f"stop: at most 4 stop sequences, got {len(stops)}", param="stop")
        if any(not s for s in stops):
            raise APIError(400, "stop: stop sequences must be non-empty strings", param="stop")
        return stops

    def bias(self) -> Dict[int, float]:
        out: Dict[int, float] = {}
        for key, value in (self.logit_bias or {}).items():
            try:
                tid = int(key)
            except ValueError:
                raise APIError(400, f"logit_bias: keys must be token ids, got {key!r}", param="logit_bias") from None
            if not -100 <= value <= 100:
                raise APIError(400, f"logit_bias: values must be in [-100, 100], got {value} for token {key}",
                               param="logit_bias")
            out[tid] = float(value)
        return out

    def params(self, max_new_tokens: int, logprobs: Optional[int], prompt_logprobs: bool = False) -> SamplingParams:
        if self.stream_options is not None and not self.stream:
            raise APIError(400, "stream_options: only allowed when stream is true", param="stream_options")
        temperature = 1.0 if self.temperature is None else float(self.temperature)
        return SamplingParams(
            max_new_tokens=max_new_tokens, do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else 1.0,
            top_p=1.0 if self.top_p is None else float(self.top_p), top_k=self.top_k or 0, min_p=self.min_p,
            repetition_penalty=1.0 if self.repetition_penalty is None else float(self.repetition_penalty),
            frequency_penalty=float(self.frequency_penalty), presence_penalty=float(self.presence_penalty),
            logit_bias=self.bias(), seed=self.seed, stop=self.stop_list(), n=self.n, logprobs=logprobs,
            prompt_logprobs=prompt_logprobs)

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options is not None and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: List[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    response_format: Optional[Dict[str, Any]] = None  # {"type": "text" | "json_object" | "json_schema", ...}

    def logprobs_k(self) -> Optional[int]:
        if self.top_logprobs is not None and not self.logprobs:
            raise APIError(400, "top_logprobs: needs logprobs set to true", param="top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Sampling):
    prompt: Union[str, List[str], List[int], List[List[int]]]
    max_tokens: Optional[int] = Field(16, ge=0)  # OpenAI's default for completions
    logprobs: Optional[int] = Field(None, ge=0, le=5)
    echo: bool = False
    best_of: Optional[int] = Field(None, ge=1)
    suffix: Optional[str] = None

    def prompts(self) -> List[Union[str, List[int]]]:
        """The request's prompts (a string, token ids, or a list of either)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise APIError(400, "prompt: must not be empty", param="prompt")
        if all(isinstance(x, int) for x in p):
            return [[int(x) for x in p if isinstance(x, int)]]
        return [x for x in p if isinstance(x, (str, list))]


class EmbeddingRequest(_Body):
    model: str
    # a text, texts, one token list or token lists (OpenAI's four forms)
    input: Union[str, List[str], List[int], List[List[int]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(None, ge=1)
    user: Optional[str] = None
    # beyond OpenAI: cut inputs longer than the model takes instead of answering 400
    truncate: bool = False

    def inputs(self) -> List[Union[str, List[int]]]:
        """The request's inputs (each a text or a token list), each checked non-empty."""
        x = self.input
        if isinstance(x, str):
            items: List[Union[str, List[int]]] = [x]
        elif not x:
            raise APIError(400, "input: must not be empty", param="input")
        elif all(isinstance(t, int) for t in x):
            items = [[int(t) for t in x if isinstance(t, int)]]
        else:
            items = [t for t in x if isinstance(t, (str, list))]
        if len(items) > 2048:
            raise APIError(400, f"input: at most 2048 inputs per request, got {len(items)}", param="input")
        for i, item in enumerate(items):
            if len(item) == 0 if isinstance(item, list) else not item:
                where = "input" if len(items) == 1 else f"input[{i}]"
                raise APIError(400, f"{where}: must not be empty", param="input")
        return items


class TokenizeRequest(_Body):
    model: Optional[str] = None
    prompt: Optional[str] = None
    messages: Optional[List[ChatMessage]] = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class DetokenizeRequest(_Body):
    model: Optional[str] = None
    tokens: List[int]
