"""pipeline("text-generation"): text or chat messages in, generated text out,
in transformers' result format. Not a place for decoding logic."""

from __future__ import annotations

import os
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
        if _is_chat(item):
            messages = list(item)  # type: ignore[call-overload]
        elif not isinstance(item, str):
            raise TypeError(f"text_inputs must be a string, chat messages (a list of dicts) or a list of them, "
                            f"got a list holding {type(item).__name__}")
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

    def __call__(self, text_inputs: Union[str, Messages, Sequence[Union[str, Messages]]],
                 return_full_text: bool = True, **generate_kwargs: Any) -> List[Any]:
        """Generate for one input (a list of results) or a list of inputs (a list of lists);
        ``generate_kwargs`` are :meth:`generate`'s (``max_new_tokens``, ``max_length``,
        ``do_sample``, ``num_return_sequences``, ``num_beams``, ...)."""
        if isinstance(text_inputs, str) or _is_chat(text_inputs):
            return self._one(text_inputs, return_full_text, generate_kwargs)
        if not isinstance(text_inputs, (list, tuple)):
            raise TypeError(f"text_inputs must be a string, chat messages (a list of dicts) or a list of them, "
                            f"got {type(text_inputs).__name__}")
        return [self._one(x, return_full_text, generate_kwargs) for x in text_inputs]


def _is_chat(item: object) -> bool:
    return isinstance(item, (list, tuple)) and len(item) > 0 and isinstance(item[0], dict)


def pipeline(task: str, model: Any = None, tokenizer: Any = None, n_threads: Optional[int] = None,
             n_ctx: Optional[int] = None, device: Any = None, device_map: Any = None, torch_dtype: Any = None,
             dtype: Any = None, **generate_defaults: Any) -> TextGenerationPipeline:
    """``pipeline("text-generation", model=name_or_path)`` as in transformers
    (the default model when ``model`` is None). ``device`` (-1 or "cpu"),
    ``device_map`` ("cpu", "auto"), ``torch_dtype`` / ``dtype`` are accepted
    as in :meth:`AutoModelForCausalLM.from_pretrained` (a GPU device raises
    ValueError; a dtype other than float32 is ignored with a warning).

    >>> pipe = pipeline("text-generation", model="SmolLM2-135M-Instruct", device=-1)   # doctest: +SKIP
    >>> pipe([{"role": "user", "content": "Hi!"}], max_new_tokens=20)                  # doctest: +SKIP
    """
    if task != "text-generation":
        raise ValueError(f"unsupported task {task!r}; supported: text-generation")
    from .hub import DEFAULT_MODEL
    from .models import AutoModelForCausalLM
    from .models.base import check_device, check_dtype

    check_device(device, "device")
    check_device(device_map, "device_map")
    check_dtype(torch_dtype, "torch_dtype")
    check_dtype(dtype, "dtype")
    if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
        model = AutoModelForCausalLM.from_pretrained(model or DEFAULT_MODEL, n_threads=n_threads, n_ctx=n_ctx)
    elif not hasattr(model, "generate"):
        raise TypeError(f"model must be a model, a path or a registered model name, got {type(model).__name__}")
    if isinstance(tokenizer, (str, os.PathLike)):
        from .models import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    return TextGenerationPipeline(model, tokenizer, **generate_defaults)
