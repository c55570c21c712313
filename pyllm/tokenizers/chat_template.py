# Rendering of the Jinja chat templates model files carry, in a sandbox bounded in time and size.
# Not a template language of its own and not message policy: that stays in the tokenizers.
"""``render_chat_template(source, **variables) -> str``.

A chat template comes from the model file, so it is untrusted code. It runs in
jinja2's ``ImmutableSandboxedEnvironment`` (no attribute access to internals,
no mutation of the messages) as transformers does, with ``trim_blocks`` /
``lstrip_blocks``, ``loopcontrols``, ``raise_exception``, ``tojson`` and
``strftime_now``, and further bounded:

- the whole rendering must finish within :data:`MAX_SECONDS` (checked on
  every loop step over ``range``, call, attribute and item lookup and output
  chunk), so nested loops cannot run for ever;
- no string, list or output may pass :data:`MAX_CHARS` items: ``*`` and ``%``
  are checked before they allocate, padding widths of calls and filters
  likewise, ``**`` has a bounded exponent;
- compiled templates are kept in a small LRU cache (:data:`CACHE_SIZE`).

A template that passes a bound raises :class:`ChatTemplateError` (a ``ValueError``).

>>> render_chat_template("{% for m in messages %}{{ m.role }}: {{ m.content }}\\n{% endfor %}",
...                      messages=[{"role": "user", "content": "hi"}])
'user: hi\\n'
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any, Dict, Iterator, NoReturn, Optional, Tuple

__all__ = ["ChatTemplateError", "render_chat_template", "MAX_SECONDS", "MAX_CHARS", "CACHE_SIZE"]

MAX_SECONDS = 5.0  # wall time one rendering may take (real templates take milliseconds)
MAX_CHARS = 8 << 20  # items in any one string or list the template builds, and in the output
CACHE_SIZE = 32  # compiled templates kept (most recently used)
MAX_POWER_BITS = 1 << 16  # bits an integer ** may produce
_CHECK_EVERY = 256  # range() steps between two clock reads


class ChatTemplateError(ValueError):
    """A chat template went past a bound of the sandbox (time or size)."""


_state = threading.local()  # deadline of the rendering running on this thread


def _tick() -> None:
    deadline = getattr(_state, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise ChatTemplateError(f"chat template rendering took longer than {MAX_SECONDS:g} s; "
                                "the template loops too long (check its for loops)")


def _sized(x: Any, what: str) -> Any:
    if isinstance(x, (str, bytes, list, tuple, dict)) and len(x) > MAX_CHARS:
        raise ChatTemplateError(f"chat template {what} made a value of {len(x):,} items; "
                                f"the limit is {MAX_CHARS:,}")
    return x


def _check_widths(args: Tuple[Any, ...], kwargs: Dict[str, Any], what: str) -> None:
    # padding and repeat counts (center, ljust, zfill, indent, format widths...) are ints
    for a in (*args, *kwargs.values()):
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_CHARS:
            raise ChatTemplateError(f"chat template {what} was given {a:,}; numbers above "
                                    f"{MAX_CHARS:,} are refused (they size strings)")


_BIG_WIDTH = re.compile(r"\d{8,}")  # a width of 10**7 or more in a format string


def _check_format(fmt: Any, what: str) -> None:
    if isinstance(fmt, str) and _BIG_WIDTH.search(fmt):
        raise ChatTemplateError(f"chat template {what} asks for a field width over {MAX_CHARS:,}")


def _join(parts: Any) -> str:
    # the template's ~ operator: sized before the join allocates
    strs = [str(p) for p in parts]
    if sum(len(p) for p in strs) > MAX_CHARS:
        raise ChatTemplateError(f"chat template ~ would make a string over {MAX_CHARS:,} characters")
    return "".join(strs)


def _repeat_size(left: Any, right: Any) -> int:
    seq, n = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
        return len(seq) * max(n, 0)
    return 0


def _bounded_range(*args: int) -> Iterator[int]:
    from jinja2.sandbox import safe_range

    for i, v in enumerate(safe_range(*args)):  # safe_range caps one range at 100,000 items
        if i % _CHECK_EVERY == 0:
            _tick()
        yield v


def _environment() -> Any:
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from jinja2.utils import Namespace
    except ImportError as e:
        raise ImportError("apply_chat_template needs jinja2: pip install jinja2") from e

    class BoundedNamespace(Namespace):
        # {% set ns.x = ... %} is the one way a template keeps a value across loop steps
        def __setitem__(self, name: str, value: Any) -> None:
            _tick()
            super().__setitem__(name, _sized(value, f"namespace value {name!r}"))

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "%", "+"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _tick()
            if operator == "*" and _repeat_size(left, right) > MAX_CHARS:
                raise ChatTemplateError(f"chat template repetition would make {_repeat_size(left, right):,} "
                                        f"items; the limit is {MAX_CHARS:,}")
            if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 \
                    and abs(left) > 1 and right * abs(left).bit_length() > MAX_POWER_BITS:
                raise ChatTemplateError(f"chat template power {left} ** {right} is too large")
            if operator == "%" and isinstance(left, str):
                _check_format(left, "string formatting")
                _check_widths(right if isinstance(right, tuple) else (right,), {}, "string formatting")
            return _sized(super().call_binop(context, operator, left, right), f"operator {operator!r}")

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _tick()
            name = getattr(__obj, "__name__", "a function")
            _check_widths(args, kwargs, f"call of {name}")
            if name in ("format", "format_map"):
                _check_format(getattr(__obj, "__self__", None), f"call of {name}")
            if getattr(__obj, "__name__", None) == "replace" and isinstance(getattr(__obj, "__self__", None), str) \
                    and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
                s, old, new = __obj.__self__, args[0], args[1]
                hits = len(s) + 1 if not old else s.count(old)
                if len(s) + hits * (len(new) - len(old)) > MAX_CHARS:
                    raise ChatTemplateError(f"chat template replace() would make more than {MAX_CHARS:,} items")
            return _sized(super().call(__context, __obj, *args, **kwargs), "call")

        def getattr(self, obj: Any, attribute: str) -> Any:
            _tick()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            _tick()
            return super().getitem(obj, argument)

    def raise_exception(message: str) -> NoReturn:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
               separators: Optional[Tuple[str, str]] = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])

    def guarded(name: str, fn: Any) -> Any:
        skip = 2 if hasattr(fn, "jinja_pass_arg") else 1  # (context or environment,) value, then arguments

        def run(*args: Any, **kwargs: Any) -> Any:
            _tick()
            _check_widths(args[skip:], kwargs, f"filter {name!r}")
            if name == "format" and len(args) >= skip:
                _check_format(args[skip - 1], "filter 'format'")
            return _sized(fn(*args, **kwargs), f"filter {name!r}")

        for attr in ("jinja_pass_arg",):  # keep context / environment passing of the filter
            if hasattr(fn, attr):
                setattr(run, attr, getattr(fn, attr))
        return run

    env.filters["tojson"] = tojson
    env.filters = {name: guarded(name, fn) for name, fn in env.filters.items()}
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["range"] = _bounded_range
    env.globals["namespace"] = BoundedNamespace
    return env


_env_lock = threading.Lock()
_env: Any = None
_templates: "OrderedDict[str, Any]" = OrderedDict()  # source -> compiled template, most recent last


def _compiled(source: str) -> Any:
    global _env
    with _env_lock:
        template = _templates.get(source)
        if template is not None:
            _templates.move_to_end(source)
            return template
        if _env is None:
            _env = _environment()
        env = _env
    try:
        template = env.from_string(source)  # compiled outside the lock: it may take a while
    except RecursionError:
        # jinja2's parser recurses once per nesting level: a template nested thousands deep is refused
        raise ChatTemplateError("the chat template is nested too deeply to compile") from None
    # ~ compiles to a call of the module's str_join / markup_join: sized ones instead
    module = template.root_render_func.__globals__
    module["str_join"] = _join
    markup = module.get("markup_join")
    if markup is not None:
        module["markup_join"] = lambda parts: _checked_markup(markup, parts)
    with _env_lock:
        _templates[source] = template
        _templates.move_to_end(source)
        while len(_templates) > CACHE_SIZE:
            _templates.popitem(last=False)
    return template


def _checked_markup(markup: Any, parts: Any) -> Any:
    parts = list(parts)
    _join(parts)  # size check; autoescape is off for chat templates, so this path is rare
    return markup(parts)


def render_chat_template(source: str, **variables: Any) -> str:
    """Render ``source`` with ``variables`` under the bounds above; ``ChatTemplateError`` past one."""
    if not isinstance(source, str):
        raise TypeError(f"chat_template must be a string, got {type(source).__name__}")
    template = _compiled(source)
    outer = getattr(_state, "deadline", None)
    _state.deadline = time.monotonic() + MAX_SECONDS if outer is None else outer
    try:
        parts, size = [], 0
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > MAX_CHARS:
                raise ChatTemplateError(f"chat template output passed {MAX_CHARS:,} characters")
            _tick()
            parts.append(chunk)
        return "".join(parts)
    except ChatTemplateError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError) as e:
        # Python's own error inside the template (1/0, a tuple plus an int): said as the template's
        raise ChatTemplateError(f"the chat template failed while rendering: {type(e).__name__}: {e}") from None
    finally:
        _state.deadline = outer
