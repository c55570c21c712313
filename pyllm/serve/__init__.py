# `pyllm serve`: an OpenAI-compatible HTTP server with continuous batching (needs the `serve` extra:
# pip install "pyllm[serve]"). This module stays light: the web stack is imported when an app is made.
"""Serve models over OpenAI's HTTP API.

>>> import pyllm
>>> pyllm.serve("SmolLM2-135M-Instruct", port=8000)              # doctest: +SKIP
>>> app = pyllm.serve.create_app(["SmolLM2-135M-Instruct"])        # doctest: +SKIP

``pyllm.serve(...)`` is :func:`serve` (the module is callable); ``create_app``
returns the ASGI app to run with any ASGI server or mount in another app.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Optional, Sequence, Union

__all__ = ["create_app", "serve"]


def _need_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ImportError(f"pyllm serve needs the serve extra: pip install 'pyllm[serve]' ({e})") from e


def create_app(models: Union[str, Sequence[Any]] = ("SmolLM2-135M-Instruct",), **kwargs: Any) -> Any:
    """The FastAPI app serving ``models`` (see :func:`pyllm.serve.app.create_app` for the arguments)."""
    _need_extra()
    from .app import create_app as _create

    return _create([models] if isinstance(models, str) else list(models), **kwargs)


def serve(models: Union[str, Sequence[Any]] = ("SmolLM2-135M-Instruct",), host: str = "127.0.0.1",
          port: int = 8000, *, n_ctx: Optional[int] = None, threads: Optional[int] = None, max_parallel: int = 32,
          max_queue: Optional[int] = None, prefill_chunk: int = 128, api_key: Optional[str] = None,
          log_level: str = "info") -> None:
    """Load ``models`` and serve them on ``host:port`` until interrupted (uvicorn).

    Binds to 127.0.0.1 unless told otherwise; ``api_key`` makes the API routes ask for
    ``Authorization: Bearer <api_key>``.
    """
    app = create_app(models, n_ctx=n_ctx, threads=threads, max_parallel=max_parallel, max_queue=max_queue,
                     prefill_chunk=prefill_chunk, api_key=api_key)
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level)


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> None:
        serve(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
