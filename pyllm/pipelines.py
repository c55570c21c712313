"""pipeline("text-generation"): text or chat messages in, generated text out,
in transformers' result format. Not a place for decoding logic."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

__all__ = ["pipeline", "TextGenerationPipeline"]

Messages = List[Dict[str, str]]


class TextGenerationPipeline:
    """Callable: ``pipe(text_or_messages, **generate_kwargs)`` returns
    ``[{"generated_text": ...}]`` (one dict per returned sequence); a list of
    inputs gives a list of such lists. For chat messages, generated_text is
    the conversation with the assistant's reply appended, as transformers
    returns it."""

    def __init__(self, model: Any, tokenizer: Any = None, **defaults: Any):
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        self.defaults = defaults

    def _one(self, item: object, return_full_text: bool, kwargs: Dict[str, Any]) -> List[Dict[str, Any]]:
        messages: List[Any] = []  # of a chat
        if isinstance(item, (list, tuple)) and item and isinstance(item[0], dict):
            messages = list(item)
        elif not isinstance(item, str):
            raise ValueError(f"text-generation input must be a string or chat messages, got {type(item).__name__}")
        ids = self.model.encode_prompt(item, self.tokenizer)
        out = self.model.generate(ids, tokenizer=self.tokenizer, **{**self.defaults, **kwargs})
        results = []
        for row in out:
            new = [int(t) for t in row[len(ids):]]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            if isinstance(item, str):
                value: Any = (item + text) if return_full_text else text
            else:
                value = messages + [{"role": "assistant", "content": text}]
            results.append({"generated_text": value})
        return results

    def __call__(self, inputs: Union[str, Messages, Sequence[Union[str, Messages]]], return_full_text: bool = True,
                 **generate_kwargs: Any) -> Any:
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], dict)):
            return self._one(inputs, return_full_text, generate_kwargs)
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError("text-generation input is empty")
        return [self._one(x, return_full_text, generate_kwargs) for x in inputs]


def pipeline(task: str, model: Any = None, tokenizer: Any = None, n_threads: Optional[int] = None,
             n_ctx: Optional[int] = None, **generate_defaults: Any) -> TextGenerationPipeline:
    """``pipeline("text-generation", model=name_or_path)`` as in transformers
    (the default model when ``model`` is None).

    >>> pipe = pipeline("text-generation", model="SmolLM2-135M-Instruct")     # doctest: +SKIP
    >>> pipe([{"role": "user", "content": "Hi!"}], max_new_tokens=20)          # doctest: +SKIP
    """
    if task != "text-generation":
        raise ValueError(f"unsupported task {task!r}; supported: text-generation")
    from .hub import DEFAULT_MODEL
    from .models import AutoModelForCausalLM

    if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
        model = AutoModelForCausalLM.from_pretrained(model or DEFAULT_MODEL, n_threads=n_threads, n_ctx=n_ctx)
    return TextGenerationPipeline(model, tokenizer, **generate_defaults)
