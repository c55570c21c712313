# The HTTP side of `pyllm serve`: a FastAPI app with OpenAI's routes, request and response shapes, error
# bodies, bearer-key check and SSE streaming, over one Engine per decoder model and an EmbeddingModel per
# model. Not the scheduling (engine.py) and not the embedding math (embeddings.py).
"""``create_app(models, ...)``: the ASGI app; ``serve(...)`` runs it with uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .embeddings import EmbeddingModel, is_encoder
from .engine import DoneEvent, Engine, EngineStopped, PromptLogprobsEvent, QueueFull, SamplingParams, TokenEvent
from .metrics import ServerMetrics
from .protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
)
from .text import TextAssembler, TokenTexts

__all__ = ["create_app", "model_id"]

ModelSpec = Union[str, Any, Tuple[str, Any]]


def model_id(spec: str) -> str:
    """The id a model is served under: ``ALIAS=PATH`` gives ALIAS, a file its name without ``.gguf``,
    a directory its name, a registered name itself."""
    alias, sep, _ = spec.partition("=")
    if sep and alias and "/" not in alias and os.sep not in alias:
        return alias
    p = Path(spec)
    if p.exists():
        return p.stem if p.is_file() else p.name
    return spec


class _Served:
    """One model behind the API: a decoder's engine (none for an encoder), its embeddings (with the
    worker threads their requests wait on), its tokenizer and the texts of its tokens."""

    def __init__(self, name: str, model: Any, engine: Optional[Engine], embedder: EmbeddingModel):
        self.name, self.model = name, model
        self._engine, self.embedder = engine, embedder
        self.tokenizer = model.tokenizer
        self.texts = TokenTexts(self.tokenizer)
        self.created = int(time.time())
        self._grammars: Any = None
        self.max_len = embedder.max_len
        # an encoder's requests run here one at a time; a decoder's wait here for its engine
        self.worker = ThreadPoolExecutor(1 if engine is None else 4, thread_name_prefix=f"embed-{name}")

    @property
    def engine(self) -> Engine:
        """The decoder's engine; a chat or completion request to an embedding model is a 400."""
        if self._engine is None:
            raise APIError(400, f"model {self.name!r} is an embedding model: it serves /v1/embeddings only, not "
                           "chat or completions", param="model", code="model_not_supported")
        return self._engine

    def grammars(self) -> Any:
        """llguidance over the model's vocabulary (built on first use)."""
        if self._grammars is None:
            try:
                from .grammar import Grammars
            except ImportError as e:
                raise APIError(400, f"response_format needs llguidance (pip install 'pyllm[serve]'): {e}",
                               param="response_format") from e
            vocab = int(self.model.config.vocab_size)
            eos = sorted(self.engine.eos)[0] if self.engine.eos else int(self.tokenizer.eos_token_id)
            self._grammars = Grammars(self.tokenizer, [self.texts.raw(i) for i in range(vocab)], eos, vocab)
        return self._grammars


class _Sink:
    """Engine events into the request's asyncio queue, tagged with the prompt they belong to."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: "asyncio.Queue[Tuple[int, Any]]", tag: int):
        self.loop, self.queue, self.tag = loop, queue, tag

    def put(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (self.tag, item))


class _Choice:
    """What one choice has produced so far."""

    def __init__(self, served: _Served, stops: List[str], prefix: str = ""):
        self.served = served
        self.text = TextAssembler(served.tokenizer, stops)
        self.prefix = prefix  # the echoed prompt
        self.content = ""
        self.finish: Optional[str] = None
        self.tokens: List[int] = []
        self.logprobs: List[Tuple[int, float, Optional[List[Tuple[int, float]]]]] = []  # shown in logprobs
        self.prompt_entries: List[Tuple[int, Optional[float], Optional[List[Tuple[int, float]]]]] = []

    def push(self, ev: TokenEvent) -> str:
        self.tokens.append(ev.token)
        delta = self.text.push(ev.token)
        if ev.finish is not None:
            delta += self.text.finish()
            self.finish = ev.finish
        eos = ev.finish == "stop" and ev.token in self.served.engine.eos
        if ev.logprob is not None and not eos:
            self.logprobs.append((ev.token, ev.logprob, ev.top))
        self.content += delta
        return delta


class _Call:
    """One HTTP request's engine requests (one per prompt) and their merged events."""

    def __init__(self, served: _Served, prompts: List[List[int]], params: SamplingParams):
        self.served, self.prompts, self.params = served, prompts, params
        self.queue: "asyncio.Queue[Tuple[int, Any]]" = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.handles = []
        try:
            for i, p in enumerate(prompts):
                self.handles.append(served.engine.submit(p, params, _Sink(loop, self.queue, i)))
        except ValueError as e:
            self.cancel()
            raise APIError(400, str(e), code="context_length_exceeded" if "n_ctx" in str(e) else None) from e
        except QueueFull as e:
            self.cancel()
            raise APIError(429, str(e), type="rate_limit_error", code="queue_full") from e
        except EngineStopped as e:
            self.cancel()
            raise APIError(503, str(e), type="server_error", code="unavailable") from e
        self.pending = len(self.handles)
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}

    def cancel(self) -> None:
        for h in self.handles:
            h.cancel()

    async def events(self) -> AsyncIterator[Tuple[int, Any]]:
        """(prompt index, TokenEvent | PromptLogprobsEvent) until every prompt is done."""
        while self.pending:
            tag, ev = await self.queue.get()
            if isinstance(ev, DoneEvent):
                if ev.error is not None:
                    self.cancel()
                    status = 503 if isinstance(ev.error, EngineStopped) else 500
                    raise APIError(status, f"generation failed: {ev.error}", type="server_error")
                self.pending -= 1
                self.usage["prompt_tokens"] += ev.prompt_tokens
                self.usage["completion_tokens"] += ev.completion_tokens
                self.usage["cached_tokens"] += ev.cached_tokens
                continue
            yield tag, ev

    def usage_body(self) -> Dict[str, Any]:
        u = self.usage
        return {"prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"],
                "total_tokens": u["prompt_tokens"] + u["completion_tokens"],
                "prompt_tokens_details": {"cached_tokens": u["cached_tokens"]}}


async def _until_disconnect(request: Request, call: _Call) -> None:
    """Cancels the call when the client goes away."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            call.cancel()
            return


class _EventStream(StreamingResponse):
    """Server-sent events; whatever ends the response (the end, a disconnect, an error) runs ``on_close``."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


class _Guard:
    """ASGI middleware: the bearer key on the API routes, and the request counter."""

    PUBLIC = ("/health", "/metrics", "/docs", "/openapi.json")

    def __init__(self, app: ASGIApp, api_key: Optional[str], metrics: ServerMetrics):
        self.app, self.api_key, self.metrics = app, api_key, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        status = {"code": 500}

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            if self.api_key is not None and path not in self.PUBLIC and not self._authorized(scope):
                err = APIError(401, "invalid or missing API key: send the header 'Authorization: Bearer <key>'",
                               code="invalid_api_key")
                await JSONResponse(err.body(), status_code=401)(scope, receive, counted)
                return
            await self.app(scope, receive, counted)
        finally:
            endpoint = path if path in _ENDPOINTS else "other"
            self.metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()

    def _authorized(self, scope: Scope) -> bool:
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                assert self.api_key is not None
                return scheme.lower() == "bearer" and secrets.compare_digest(token.strip(), self.api_key)
        return False


_ENDPOINTS = ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/health", "/metrics",
              "/tokenize", "/detokenize")


def _from_source(source: Any, n_ctx: Optional[int], threads: Optional[int]) -> Any:
    """A decoder (AutoModelForCausalLM) or, for a BERT directory or name, an encoder (BertModel)."""
    from ..models import AutoModel, AutoModelForCausalLM

    if is_encoder(source):
        return AutoModel.from_pretrained(source)
    return AutoModelForCausalLM.from_pretrained(source, n_threads=threads, n_ctx=n_ctx)


def _load(spec: ModelSpec, n_ctx: Optional[int], threads: Optional[int]) -> Tuple[str, Any]:
    if isinstance(spec, tuple):
        name, obj = spec
        if isinstance(obj, (str, os.PathLike)):
            return str(name), _from_source(obj, n_ctx, threads)
        return str(name), obj
    if isinstance(spec, (str, os.PathLike)):
        text = str(spec)
        name = model_id(text)
        alias, sep, path = text.partition("=")
        source = path if sep and name == alias else text
        return name, _from_source(source, n_ctx, threads)
    origin = getattr(spec, "source", None)
    return (model_id(str(origin)) if origin else type(spec).__name__), spec


def create_app(models: Sequence[ModelSpec] = ("SmolLM2-135M-Instruct",), *, n_ctx: Optional[int] = None,
               threads: Optional[int] = None, max_parallel: int = 32, max_queue: Optional[int] = None,
               prefill_chunk: int = 128, api_key: Optional[str] = None) -> FastAPI:
    """The OpenAI-compatible app over ``models``: names, paths, ``ALIAS=PATH`` strings, loaded models or
    ``(id, model or path)`` pairs; requests pick one by ``model``. BERT encoders (``"all-MiniLM-L6-v2"``,
    a BERT directory, a loaded ``BertModel``) serve ``/v1/embeddings`` alone (run on a worker thread of
    their own); decoders serve it too, mean-pooled final hidden states at unit length, run by their
    engine between decode steps (see :class:`~pyllm.serve.embeddings.EmbeddingModel`). Each decoder
    gets an engine that decodes up to ``max_parallel`` sequences together and queues up to
    ``max_queue`` requests (default 4 x max_parallel; past it: 429). With ``api_key`` every route
    but /health and /metrics needs ``Authorization: Bearer <api_key>``. The server takes a loaded
    model over: do not generate with it from other threads while it serves (they would wait for it
    to be idle).

    >>> app = create_app(["SmolLM2-135M-Instruct"], max_parallel=16)   # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)                   # doctest: +SKIP
    """
    if not models:
        raise ValueError("create_app needs at least one model")
    metrics = ServerMetrics()
    served: Dict[str, _Served] = {}
    for spec in models:
        name, model = _load(spec, n_ctx, threads)
        if name in served:
            raise ValueError(f"two models are served as {name!r}; name one with ALIAS=PATH")
        if is_encoder(model):
            served[name] = _Served(name, model, None, EmbeddingModel(model))
            continue
        engine = Engine(model, name, max_parallel=max_parallel, max_queue=max_queue, prefill_chunk=prefill_chunk,
                        metrics=metrics)
        metrics.watch(engine)
        embeddings = EmbeddingModel(model, run=_on_engine(engine))
        served[name] = _Served(name, model, engine, embeddings)
    engines = [s._engine for s in served.values() if s._engine is not None]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for e in engines:
            e.start()
        yield
        for e in engines:
            await asyncio.get_running_loop().run_in_executor(None, e.stop)
        for s in served.values():
            s.worker.shutdown(wait=True)

    app = FastAPI(title="pyllm", lifespan=lifespan)
    app.state.served = served
    app.state.metrics = metrics
    _routes(app, served, metrics)
    app.add_middleware(_Guard, api_key=api_key, metrics=metrics)
    return app


def _on_engine(engine: Engine) -> Callable[[Callable[[], Any]], Any]:
    """Runs a callable on the engine's thread between steps and waits for its result."""
    def run(fn: Callable[[], Any]) -> Any:
        return engine.call(fn).result()
    return run


def _generator(served: Dict[str, _Served], name: Optional[str]) -> _Served:
    """The served decoder named ``name`` (an embedding model there is a 400)."""
    s = _pick(served, name)
    _ = s.engine  # raises APIError 400 for an embedding model
    return s


def _pick(served: Dict[str, _Served], name: Optional[str]) -> _Served:
    if name is None:
        if len(served) == 1:
            return next(iter(served.values()))
        raise APIError(400, "model: required when several models are served", param="model")
    s = served.get(name)
    if s is None:
        raise APIError(404, f"the model {name!r} does not exist; served: {', '.join(sorted(served))}",
                       param="model", code="model_not_found")
    return s


def _max_new(requested: Optional[int], prompt: int, n_ctx: int, param: str) -> int:
    if prompt >= n_ctx:
        raise APIError(400, f"this model's maximum context length is {n_ctx} tokens; the prompt has {prompt}",
                       param="messages" if param != "max_tokens" else "prompt", code="context_length_exceeded")
    if requested is None:
        return n_ctx - prompt
    if prompt + requested > n_ctx:
        raise APIError(400, f"this model's maximum context length is {n_ctx} tokens; {prompt + requested} were "
                       f"requested ({prompt} in the prompt, {requested} for the completion)", param=param,
                       code="context_length_exceeded")
    return requested


def _lp_entry(served: _Served, token: int, lp: float) -> Dict[str, Any]:
    text, raw = served.texts(token)
    return {"token": text, "logprob": lp, "bytes": raw}


def _chat_logprobs(served: _Served, entries: List[Tuple[int, float, Optional[List[Tuple[int, float]]]]]
                   ) -> Dict[str, Any]:
    content = []
    for tok, lp, top in entries:
        e = _lp_entry(served, tok, lp)
        e["top_logprobs"] = [_lp_entry(served, t, v) for t, v in (top or [])]
        content.append(e)
    return {"content": content, "refusal": None}


def _completion_logprobs(served: _Served, choice: _Choice, offset0: int) -> Dict[str, Any]:
    tokens: List[str] = []
    lps: List[Optional[float]] = []
    tops: List[Optional[Dict[str, float]]] = []
    offsets: List[int] = []
    pos = offset0
    entries: List[Tuple[int, Optional[float], Optional[List[Tuple[int, float]]]]] = list(choice.prompt_entries)
    entries += [(t, lp, top) for t, lp, top in choice.logprobs]
    for tok, lp, top in entries:
        text = served.texts(tok)[0]
        tokens.append(text)
        lps.append(lp)
        tops.append(None if top is None else {served.texts(t)[0]: v for t, v in top})
        offsets.append(pos)
        pos += len(text)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


_UNION_TAG = re.compile(r"^(str|int|float|bool|list\[.*\]|dict\[.*\])$")


def _routes(app: FastAPI, served: Dict[str, _Served], metrics: ServerMetrics) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        # without "body" and pydantic's union member tags ("input.str" is OpenAI's "input")
        loc = [str(x) for x in first.get("loc", ()) if x != "body" and not _UNION_TAG.match(str(x))]
        kind = first.get("type", "")
        param = ".".join(loc) or None
        if kind == "json_invalid":
            message, param = f"malformed JSON body: {first.get('ctx', {}).get('error', first.get('msg'))}", None
        elif kind == "extra_forbidden":
            message = f"unrecognized request argument supplied: {param}"
        elif kind == "missing":
            message = f"{param}: a required argument is missing"
        elif param is None:
            message = f"the request body must be a JSON object: {first.get('msg', exc)}"
        else:
            message = f"{param}: {first.get('msg', 'invalid value')}"
        return JSONResponse(APIError(400, message, param=param).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        return JSONResponse(APIError(exc.status_code, message).body(), status_code=exc.status_code)

    @app.get("/health")
    async def health() -> JSONResponse:
        dead = [s.name for s in served.values() if s._engine is not None and s._engine.error is not None]
        if dead:
            return JSONResponse({"status": "error", "message": f"engine of {', '.join(dead)} died"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def model_card(s: _Served) -> Dict[str, Any]:
        return {"id": s.name, "object": "model", "created": s.created, "owned_by": "pyllm",
                "max_model_len": s.max_len}

    @app.get("/v1/models")
    async def list_models() -> Dict[str, Any]:
        return {"object": "list", "data": [model_card(s) for s in served.values()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> Dict[str, Any]:
        return model_card(_pick(served, name))

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest) -> Dict[str, Any]:
        s = _pick(served, body.model)
        if (body.prompt is None) == (body.messages is None):
            raise APIError(400, "pass one of prompt or messages", param="prompt")
        if body.messages is not None:
            ids = _chat_ids(s, body.messages, body.add_generation_prompt)
        else:
            ids = list(s.tokenizer.encode(body.prompt or "", add_special_tokens=body.add_special_tokens))
        return {"tokens": ids, "count": len(ids), "max_model_len": s.max_len}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest) -> Dict[str, Any]:
        s = _pick(served, body.model)
        vocab = int(s.model.config.vocab_size)
        bad = [t for t in body.tokens if not 0 <= t < vocab]
        if bad:
            raise APIError(400, f"tokens: {bad[0]} is not a token id in [0, {vocab})", param="tokens")
        return {"prompt": s.tokenizer.decode(body.tokens)}

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Dict[str, Any]:
        s = _pick(served, body.model)
        return await asyncio.get_running_loop().run_in_executor(s.worker, s.embedder.embed, body, s.name)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatCompletionRequest, request: Request) -> Union[Dict[str, Any], Response]:
        s = _generator(served, body.model)
        ids = _chat_ids(s, body.messages, True)
        requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        params = body.params(_max_new(requested, len(ids), int(s.model.n_ctx), "max_completion_tokens"),
                             body.logprobs_k())
        params.constraint = _constraint(s, body.response_format)
        call = _Call(s, [ids], params)
        choices = [_Choice(s, params.stop) for _ in range(params.n)]
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return _EventStream(_chat_stream(call, choices, body, rid, created), call.cancel)
        await _run(call, choices, request)
        return {
            "id": rid, "object": "chat.completion", "created": created, "model": s.name,
            "system_fingerprint": None,
            "choices": [{"index": i, "message": {"role": "assistant", "content": c.content, "refusal": None},
                         "logprobs": _chat_logprobs(s, c.logprobs) if params.logprobs is not None else None,
                         "finish_reason": c.finish} for i, c in enumerate(choices)],
            "usage": call.usage_body(),
        }

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Union[Dict[str, Any], Response]:
        s = _generator(served, body.model)
        if body.suffix:
            raise APIError(400, "suffix: not supported", param="suffix")
        if body.best_of is not None and body.best_of != body.n:
            raise APIError(400, "best_of: only best_of == n is supported", param="best_of")
        vocab = int(s.model.config.vocab_size)
        prompts: List[List[int]] = []
        for p in body.prompts():
            if isinstance(p, str):
                prompts.append(list(s.tokenizer.encode(p)) if p else [])
            else:
                if any(not 0 <= t < vocab for t in p):
                    raise APIError(400, f"prompt: token ids must be in [0, {vocab})", param="prompt")
                prompts.append(list(p))
        if any(not p for p in prompts):
            raise APIError(400, "prompt: must not be empty", param="prompt")
        n_ctx = int(s.model.n_ctx)
        longest = max(len(p) for p in prompts)
        if body.max_tokens == 0 and not (body.echo and body.logprobs is not None):
            raise APIError(400, "max_tokens: 0 is only allowed with echo and logprobs (to score the prompt)",
                           param="max_tokens")
        max_new = _max_new(body.max_tokens, longest, n_ctx, "max_tokens")
        params = body.params(max_new, body.logprobs, prompt_logprobs=body.echo and body.logprobs is not None)
        call = _Call(s, prompts, params)
        choices = []
        for p in prompts:
            prefix = s.tokenizer.decode(p) if body.echo else ""
            choices += [_Choice(s, params.stop, prefix) for _ in range(params.n)]
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return _EventStream(_completion_stream(call, choices, body, rid, created), call.cancel)
        await _run(call, choices, request)
        out = []
        for i, c in enumerate(choices):
            lp = _completion_logprobs(s, c, 0) if params.logprobs is not None else None
            out.append({"index": i, "text": c.prefix + c.content, "logprobs": lp,
                        "finish_reason": c.finish or "length"})
        return {"id": rid, "object": "text_completion", "created": created, "model": s.name,
                "system_fingerprint": None, "choices": out, "usage": call.usage_body()}


def _constraint(s: _Served, response_format: Optional[Dict[str, Any]]) -> Optional[Callable[[int], Any]]:
    """A token-mask factory for ``response_format`` (None for free text); a bad schema is an APIError."""
    from .grammar import GrammarError, schema_of

    try:
        schema = schema_of(response_format)
        if schema is None:
            return None
        grammars = s.grammars()
        grammar = grammars.compile(schema)
    except GrammarError as e:
        status = 422 if "unsupported" in str(e) else 400
        raise APIError(status, str(e), param="response_format", code="invalid_schema") from e

    def make(prompt_length: int) -> Any:
        return grammars.processor(grammar, prompt_length)

    return make


def _chat_ids(s: _Served, messages: Sequence[Any], add_generation_prompt: bool) -> List[int]:
    msgs = []
    for m in messages:
        d: Dict[str, Any] = {"role": m.role, "content": m.text()}
        if m.name is not None:
            d["name"] = m.name
        msgs.append(d)
    try:
        ids = s.tokenizer.apply_chat_template(msgs, add_generation_prompt=add_generation_prompt, tokenize=True)
    except (ValueError, TypeError) as e:
        raise APIError(400, f"messages: the chat template failed: {e}", param="messages") from e
    return list(ids)


def _apply(call: _Call, choices: List[_Choice], tag: int, ev: Any) -> Tuple[int, str]:
    """Feed one event to its choice: (choice index, new text)."""
    n = call.params.n
    if isinstance(ev, PromptLogprobsEvent):
        entries = list(zip(call.prompts[tag], ev.logprobs, ev.top))
        for c in choices[tag * n: (tag + 1) * n]:
            c.prompt_entries = entries
        return tag * n, ""
    assert isinstance(ev, TokenEvent)
    i = tag * n + ev.index
    return i, choices[i].push(ev)


async def _run(call: _Call, choices: List[_Choice], request: Request) -> None:
    watcher = asyncio.ensure_future(_until_disconnect(request, call))
    try:
        async for tag, ev in call.events():
            _apply(call, choices, tag, ev)
    finally:
        watcher.cancel()
        call.cancel()


async def _chat_stream(call: _Call, choices: List[_Choice], body: ChatCompletionRequest, rid: str,
                       created: int) -> AsyncIterator[str]:
    s = call.served
    usage = body.include_usage()

    def chunk(index: int, delta: Dict[str, Any], finish: Optional[str] = None,
              logprobs: Optional[Dict[str, Any]] = None) -> str:
        obj: Dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": s.name,
                               "system_fingerprint": None,
                               "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                            "finish_reason": finish}]}
        if usage:
            obj["usage"] = None
        return _sse(obj)

    async def body_stream() -> AsyncIterator[str]:
        for i in range(len(choices)):
            yield chunk(i, {"role": "assistant", "content": ""})
        async for tag, ev in call.events():
            before = len(choices[tag * call.params.n + getattr(ev, "index", 0)].logprobs)
            i, delta = _apply(call, choices, tag, ev)
            c = choices[i]
            lp = _chat_logprobs(s, c.logprobs[before:]) if call.params.logprobs is not None else None
            if delta or (lp is not None and lp["content"]):
                yield chunk(i, {"content": delta}, logprobs=lp)
            if c.finish is not None and isinstance(ev, TokenEvent) and ev.finish is not None:
                yield chunk(i, {}, finish=c.finish)
        if usage:
            yield _sse({"id": rid, "object": "chat.completion.chunk", "created": created, "model": s.name,
                        "system_fingerprint": None, "choices": [], "usage": call.usage_body()})
        yield "data: [DONE]\n\n"

    async for piece in _guarded(body_stream()):
        yield piece


async def _completion_stream(call: _Call, choices: List[_Choice], body: CompletionRequest, rid: str,
                             created: int) -> AsyncIterator[str]:
    s = call.served
    usage = body.include_usage()

    def chunk(index: int, text: str, finish: Optional[str] = None, logprobs: Optional[Dict[str, Any]] = None) -> str:
        obj: Dict[str, Any] = {"id": rid, "object": "text_completion", "created": created, "model": s.name,
                               "system_fingerprint": None,
                               "choices": [{"index": index, "text": text, "logprobs": logprobs,
                                            "finish_reason": finish}]}
        if usage:
            obj["usage"] = None
        return _sse(obj)

    async def body_stream() -> AsyncIterator[str]:
        echoed = [False] * len(choices)
        async for tag, ev in call.events():
            if isinstance(ev, PromptLogprobsEvent):
                _apply(call, choices, tag, ev)
                continue
            i = tag * call.params.n + ev.index
            c = choices[i]
            before = len(c.logprobs)
            _, delta = _apply(call, choices, tag, ev)
            text = delta
            lp: Optional[Dict[str, Any]] = None
            if call.params.logprobs is not None:
                sub = _Choice(s, [])
                sub.logprobs = c.logprobs[before:]
                if not echoed[i]:
                    sub.prompt_entries = c.prompt_entries
                lp = _completion_logprobs(s, sub, 0)
            if not echoed[i]:
                text, echoed[i] = c.prefix + text, True
            yield chunk(i, text, finish=ev.finish, logprobs=lp)
        for i, c in enumerate(choices):  # max_tokens 0: only the echoed prompt (scored)
            if not echoed[i]:
                lp = _completion_logprobs(s, c, 0) if call.params.logprobs is not None else None
                yield chunk(i, c.prefix, finish="length", logprobs=lp)
        if usage:
            yield _sse({"id": rid, "object": "text_completion", "created": created, "model": s.name,
                        "system_fingerprint": None, "choices": [], "usage": call.usage_body()})
        yield "data: [DONE]\n\n"

    async for piece in _guarded(body_stream()):
        yield piece


async def _guarded(stream: AsyncIterator[str]) -> AsyncIterator[str]:
    """An error after the stream began becomes an SSE error event (the status line is already sent)."""
    try:
        async for piece in stream:
            yield piece
    except APIError as e:
        yield _sse(e.body())

