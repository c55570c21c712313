# The server's Prometheus metrics (prometheus-client, one registry per app): requests, tokens, queue,
# slots, time to first token, tokens/s. Not the scheduler: engines report here through four hooks.
"""Prometheus metrics of a served app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from .engine import Engine

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pyllm_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.finished = Counter("pyllm_generation_requests", "Generation requests that left the engine, by how",
                                ["model", "outcome"], registry=r)
        self.prompt_tokens = Counter("pyllm_prompt_tokens", "Prompt tokens of finished requests", ["model"],
                                     registry=r)
        self.cached_tokens = Counter("pyllm_prompt_tokens_cached", "Prompt tokens found in a KV cache (not prefilled)",
                                     ["model"], registry=r)
        self.generated_tokens = Counter("pyllm_generation_tokens", "Tokens generated", ["model"], registry=r)
        self.ttft = Histogram("pyllm_time_to_first_token_seconds", "From arrival to the first generated token",
                              ["model"], buckets=_TTFT_BUCKETS, registry=r)
        self.queue_time = Histogram("pyllm_queue_time_seconds", "From arrival to admission into the batch",
                                    ["model"], buckets=_TTFT_BUCKETS, registry=r)
        self.queue = Gauge("pyllm_queue_length", "Requests waiting for a slot", ["model"], registry=r)
        self.running = Gauge("pyllm_running_sequences", "Sequences holding a KV cache slot", ["model"], registry=r)
        self.slots = Gauge("pyllm_slots", "KV cache slots (--max-parallel)", ["model"], registry=r)
        self.rate = Gauge("pyllm_generation_tokens_per_second", "Tokens generated per second over the last 10 s",
                          ["model"], registry=r)
        self.steps = Gauge("pyllm_engine_steps", "Scheduler steps run", ["model"], registry=r)

    def watch(self, engine: Engine) -> None:
        """Gauges read from the engine when scraped."""
        name = engine.name
        self.queue.labels(model=name).set_function(lambda: engine.queue_length)
        self.running.labels(model=name).set_function(lambda: engine.running)
        self.slots.labels(model=name).set(engine.max_parallel)
        self.rate.labels(model=name).set_function(engine.tokens_per_second)
        self.steps.labels(model=name).set_function(lambda: engine.steps)

    # ---- the engine's hooks (called from its thread)

    def request_admitted(self, model: str, queued_s: float) -> None:
        self.queue_time.labels(model=model).observe(queued_s)

    def first_token(self, model: str, seconds: float) -> None:
        self.ttft.labels(model=model).observe(seconds)

    def tokens(self, model: str, prompt: int, cached: int, generated: int) -> None:
        self.prompt_tokens.labels(model=model).inc(prompt)
        self.cached_tokens.labels(model=model).inc(cached)
        self.generated_tokens.labels(model=model).inc(generated)

    def request_done(self, model: str, reason: str) -> None:
        self.finished.labels(model=model, outcome=reason).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
