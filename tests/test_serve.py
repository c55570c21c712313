"""`pyllm serve` through the official openai client: answers equal the library's generate() for the same
arguments (alone or under load), OpenAI's shapes and error bodies, cancellation, the queue, the API key."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pyllm
from pyllm import ops
from pyllm.generation.logits_process import FrequencyPresencePenaltyLogitsProcessor

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

N_CTX = 1024
EOS = 2  # SmolLM2-135M-Instruct's <|im_end|> (also its pad id)


class Running:
    """A uvicorn server on 127.0.0.1 on a free port, in a thread of this process."""

    def __init__(self, app):
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                break
            time.sleep(0.05)
        assert self.server.started, "the server did not start"

    def client(self, **kw):
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=kw.pop("api_key", "none"), max_retries=0, **kw)

    def metric(self, name, **labels):
        text = httpx.get(f"{self.url}/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            m = re.match(rf"^{name}(\{{(.*)\}})? (\S+)$", line)
            if m and (m.group(2) or "") == want:
                return float(m.group(3))
        return 0.0

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def server(smollm_path):
    # a small prefill chunk: prompts prefill over several steps while others decode
    run = Running(pyllm.serve.create_app([f"smol={smollm_path}"], n_ctx=N_CTX, max_parallel=32, prefill_chunk=16))
    yield run
    run.close()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def chat_ids(tok, messages):
    return list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


def reference(model, ids, max_tokens, stop=(), **kw):
    """The new tokens and text generate() gives for one prompt, as the server should answer it."""
    out = model.generate([ids], max_new_tokens=max_tokens, top_k=0, stop_strings=list(stop) or None, **kw)
    rows = []
    for row in out:
        new = [int(t) for t in row[len(ids):]]
        if EOS in new:
            new = new[: new.index(EOS) + 1]
        text = model.tokenizer.decode(new, skip_special_tokens=True)
        cuts = [text.find(s) for s in stop if s in text]
        rows.append((new, text[: min(cuts)] if cuts else text))
    return rows


MESSAGES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three colors."}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "user", "content": "Count from one to ten."}],
]


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == ["smol"]
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert client.models.retrieve("smol").id == "smol"


@pytest.mark.parametrize("messages", MESSAGES[:2])
def test_chat_greedy_equals_generate(client, smollm, messages):
    ids = chat_ids(smollm.tokenizer, messages)
    r = client.chat.completions.create(model="smol", messages=messages, max_tokens=12, temperature=0)
    [(new, text)] = reference(smollm, ids, 12)
    assert r.choices[0].message.content == text
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == ("stop" if new[-1] == EOS else "length")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(ids), len(new))
    assert r.usage.total_tokens == len(ids) + len(new)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")


def test_chat_seeded_sampling_n_equals_generate(client, smollm):
    messages = MESSAGES[2]
    ids = chat_ids(smollm.tokenizer, messages)
    r = client.chat.completions.create(model="smol", messages=messages, max_tokens=10, temperature=0.9, top_p=0.95,
                                       seed=11, n=3)
    ref = reference(smollm, ids, 10, do_sample=True, temperature=0.9, top_p=0.95, seed=11, num_return_sequences=3)
    assert [c.message.content for c in r.choices] == [t for _, t in ref]
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1  # three different samples
    assert r.usage.completion_tokens == sum(len(n) for n, _ in ref)


def test_penalties_and_logit_bias_equal_generate(client, smollm):
    messages = MESSAGES[3]
    ids = chat_ids(smollm.tokenizer, messages)
    [(greedy, _)] = reference(smollm, ids, 4)
    ban = greedy[0]  # the token greedy decoding starts with, pushed away

    def bias(input_ids, scores):
        out = np.array(scores, dtype=np.float32)
        out[:, ban] -= 100.0
        return out

    procs = [FrequencyPresencePenaltyLogitsProcessor(0.7, 0.4, prompt_ignore_length=len(ids)), bias]
    r = client.chat.completions.create(model="smol", messages=messages, max_tokens=14, temperature=0.7, seed=3,
                                       frequency_penalty=0.7, presence_penalty=0.4, logit_bias={str(ban): -100})
    [(new, text)] = reference(smollm, ids, 14, do_sample=True, temperature=0.7, seed=3, logits_processor=procs)
    assert new[0] != ban
    assert r.choices[0].message.content == text


def test_stop_strings(client, smollm):
    messages = MESSAGES[3]
    ids = chat_ids(smollm.tokenizer, messages)
    [(_, full)] = reference(smollm, ids, 24)
    stop = full.split()[2][-1]  # a character the greedy answer has, early on
    r = client.chat.completions.create(model="smol", messages=messages, max_tokens=24, temperature=0, stop=[stop])
    [(new, text)] = reference(smollm, ids, 24, stop=[stop])
    assert r.choices[0].message.content == text and stop not in text
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == len(new)


def test_streaming_equals_non_streaming(client, smollm):
    messages = MESSAGES[0]
    ids = chat_ids(smollm.tokenizer, messages)
    [(new, text)] = reference(smollm, ids, 16)
    stream = client.chat.completions.create(model="smol", messages=messages, max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop" if new[-1] == EOS else "length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(new)
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_logprobs_are_the_models(client, smollm):
    messages = MESSAGES[1]
    ids = chat_ids(smollm.tokenizer, messages)
    r = client.chat.completions.create(model="smol", messages=messages, max_tokens=8, temperature=0, logprobs=True,
                                       top_logprobs=3)
    [(new, text)] = reference(smollm, ids, 8)
    shown = [t for t in new if t != EOS]
    lp = ops.log_softmax(smollm(ids + new[:-1]).logits[0])[len(ids) - 1:]  # row j predicts new[j]
    content = r.choices[0].logprobs.content
    assert len(content) == len(shown)
    tok = smollm.tokenizer
    for j, entry in enumerate(content):
        assert entry.logprob == pytest.approx(float(lp[j, shown[j]]), abs=1e-5)
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
        assert entry.token == tok.decode([shown[j]])
        tops = entry.top_logprobs
        assert len(tops) == 3 and tops[0].token == entry.token  # greedy: the top token is the chosen one
        assert [t.logprob for t in tops] == sorted((t.logprob for t in tops), reverse=True)
        assert tops[1].logprob == pytest.approx(float(np.sort(lp[j])[-2]), abs=1e-5)
    assert "".join(e.token for e in content) == text


def test_completion_echo_logprobs_score_the_prompt(client, smollm):
    prompt = "The quick brown fox jumps over"
    ids = list(smollm.tokenizer.encode(prompt))
    r = client.completions.create(model="smol", prompt=prompt, max_tokens=5, temperature=0, echo=True, logprobs=2)
    [(new, text)] = reference(smollm, ids, 5)
    c = r.choices[0]
    assert c.text == prompt + text
    lps = c.logprobs.token_logprobs
    assert lps[0] is None and len(lps) == len(ids) + len(new)
    np.testing.assert_allclose(lps[1:len(ids)], smollm.score(ids).logprobs, atol=1e-5)
    assert c.logprobs.text_offset[: 2] == [0, len(c.logprobs.tokens[0])]
    assert all(len(t) == 2 for t in c.logprobs.top_logprobs[1:])
    # scoring alone: max_tokens=0
    r0 = client.completions.create(model="smol", prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    np.testing.assert_allclose(r0.choices[0].logprobs.token_logprobs[1:], smollm.score(ids).logprobs, atol=1e-5)
    assert r0.usage.completion_tokens == 0
    s0 = client.completions.create(model="smol", prompt=prompt, max_tokens=0, echo=True, logprobs=0, stream=True)
    assert "".join(ch.choices[0].text for ch in s0 if ch.choices) == prompt


def test_completion_prompts_as_tokens_and_lists(client, smollm):
    tok = smollm.tokenizer
    texts = ["Once upon a time", "The weather today is"]
    ids = [list(tok.encode(t)) for t in texts]
    r = client.completions.create(model="smol", prompt=texts, max_tokens=6, temperature=0)
    assert [c.text for c in r.choices] == [reference(smollm, i, 6)[0][1] for i in ids]
    r2 = client.completions.create(model="smol", prompt=ids[1], max_tokens=6, temperature=0)
    assert r2.choices[0].text == r.choices[1].text
    assert r.usage.prompt_tokens == sum(len(i) for i in ids)
    stream = client.completions.create(model="smol", prompt=texts[0], max_tokens=6, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream) == r.choices[0].text


def test_prefix_reuse_is_reported_and_changes_nothing(client, smollm):
    system = {"role": "system", "content": "You are a patient teacher who explains things in simple words. " * 4}
    a = [system, {"role": "user", "content": "What is rain?"}]
    b = [system, {"role": "user", "content": "What is snow?"}]
    client.chat.completions.create(model="smol", messages=a, max_tokens=2, temperature=0)
    r = client.chat.completions.create(model="smol", messages=b, max_tokens=10, temperature=0)
    ids = chat_ids(smollm.tokenizer, b)
    assert r.usage.prompt_tokens_details.cached_tokens >= len(chat_ids(smollm.tokenizer, [system])) - 2
    assert r.choices[0].message.content == reference(smollm, ids, 10)[0][1]


def test_tokenize_detokenize(server, smollm):
    tok = smollm.tokenizer
    r = httpx.post(f"{server.url}/tokenize", json={"prompt": "Hello there, world"}).json()
    assert r["tokens"] == list(tok.encode("Hello there, world")) and r["count"] == len(r["tokens"])
    assert r["max_model_len"] == N_CTX
    m = httpx.post(f"{server.url}/tokenize", json={"messages": MESSAGES[0]}).json()
    assert m["tokens"] == chat_ids(tok, MESSAGES[0])
    d = httpx.post(f"{server.url}/detokenize", json={"tokens": r["tokens"]}).json()
    assert d == {"prompt": "Hello there, world"}
    bad = httpx.post(f"{server.url}/detokenize", json={"tokens": [10**9]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"


def error_of(server, path, body, raw=None):
    if raw is not None:
        r = httpx.post(f"{server.url}{path}", content=raw, headers={"Content-Type": "application/json"})
    else:
        r = httpx.post(f"{server.url}{path}", json=body)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return r.status_code, err


def test_errors_have_openai_bodies(server, client):
    chat = "/v1/chat/completions"
    ok = {"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    status, err = error_of(server, chat, None, raw=b'{"model": "smol", "messages": [')
    assert status == 400 and "malformed JSON" in err["message"]
    status, err = error_of(server, chat, {**ok, "model": "nope"})
    assert (status, err["param"], err["code"]) == (404, "model", "model_not_found")
    for field, value in [("temperature", 3), ("top_p", 0), ("n", 0), ("max_tokens", -1), ("top_logprobs", 3),
                         ("presence_penalty", 9), ("logit_bias", {"x": 1}), ("logit_bias", {"5": 500}),
                         ("stop", ["a", "b", "c", "d", "e"]), ("seed", -1), ("frobnicate", 1)]:
        status, err = error_of(server, chat, {**ok, field: value})
        assert status == 400 and err["param"] == field, (field, err)
    status, err = error_of(server, chat, {**ok, "max_tokens": N_CTX})
    assert (status, err["code"]) == (400, "context_length_exceeded")
    status, err = error_of(server, chat, {**ok, "messages": [{"role": "user", "content": "word " * N_CTX}]})
    assert (status, err["code"]) == (400, "context_length_exceeded")
    status, err = error_of(server, "/v1/completions", {"model": "smol", "prompt": [1, 2, 10**8]})
    assert (status, err["param"]) == (400, "prompt")
    status, err = error_of(server, chat, {"model": "smol"})
    assert (status, err["param"]) == (400, "messages")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "x"}], temperature=-1)
    assert client.chat.completions.create(model="smol", messages=ok["messages"], max_tokens=2).choices


def expected_load(smollm):
    """32 requests of mixed lengths and sampling, and each one's solo result."""
    jobs = []
    for i in range(32):
        messages = MESSAGES[i % 4] + ([{"role": "user", "content": f"Again, number {i}."}] if i % 3 else [])
        kw = {"temperature": 0} if i % 2 == 0 else {"temperature": 0.8, "seed": 100 + i}
        jobs.append((messages, 2 + (i * 5) % 15, kw))
    refs = []
    for messages, max_tokens, kw in jobs:
        gen = {"do_sample": True, "temperature": kw["temperature"], "seed": kw["seed"]} if "seed" in kw else {}
        refs.append(reference(smollm, chat_ids(smollm.tokenizer, messages), max_tokens, **gen)[0][1])
    return jobs, refs


def test_load_32_streams_each_equal_to_its_solo_result(server, smollm):
    jobs, refs = expected_load(smollm)
    aclient = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)

    async def one(messages, max_tokens, kw):
        stream = await aclient.chat.completions.create(model="smol", messages=messages, max_tokens=max_tokens,
                                                       stream=True, **kw)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def bad_in_the_middle():
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient() as h:
            r = await h.post(f"{server.url}/v1/chat/completions", content=b'{"model": "smol", "messages": [}',
                             headers={"Content-Type": "application/json"})
            r2 = await h.post(f"{server.url}/v1/chat/completions",
                              json={"model": "smol", "messages": MESSAGES[0], "temperature": 7})
        return r.status_code, r2.status_code

    async def main():
        return await asyncio.gather(bad_in_the_middle(), *(one(*j) for j in jobs))

    steps0 = server.metric("pyllm_engine_steps", model="smol")
    bad, *texts = asyncio.run(main())
    assert bad == (400, 400)
    for i, (got, want) in enumerate(zip(texts, refs)):
        assert got == want, f"request {i}"
    # they shared steps: fewer steps than tokens generated one request at a time
    steps = server.metric("pyllm_engine_steps", model="smol") - steps0
    assert steps < sum(j[1] for j in jobs) / 2


def test_disconnects_free_their_slots(server, client):
    cancelled0 = server.metric("pyllm_generation_requests_total", model="smol", outcome="cancelled")
    body = {"model": "smol", "messages": MESSAGES[2], "max_tokens": 400, "temperature": 0.9, "seed": 1,
            "stream": True}
    with httpx.Client(timeout=60) as h:
        for _ in range(4):
            with h.stream("POST", f"{server.url}/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                lines = r.iter_lines()
                assert next(lines).startswith("data: ")  # streaming has begun; leave mid-stream
    for _ in range(300):
        if server.metric("pyllm_running_sequences", model="smol") == 0:
            break
        time.sleep(0.1)
    assert server.metric("pyllm_running_sequences", model="smol") == 0
    assert server.metric("pyllm_generation_requests_total", model="smol", outcome="cancelled") - cancelled0 == 4
    # the server goes on serving
    assert client.chat.completions.create(model="smol", messages=MESSAGES[0], max_tokens=2).choices


def test_api_key_and_bounded_queue(smollm_path):
    run = Running(pyllm.serve.create_app([smollm_path], n_ctx=256, max_parallel=1, max_queue=1, api_key="sekret"))
    try:
        name = "SmolLM2-135M-Instruct.Q4_1"
        assert httpx.get(f"{run.url}/health").status_code == 200  # public
        with pytest.raises(openai.AuthenticationError):
            run.client(api_key="wrong").models.list()
        r = httpx.get(f"{run.url}/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        good = run.client(api_key="sekret")
        assert [m.id for m in good.models.list().data] == [name]
        body = {"model": name, "messages": MESSAGES[2], "max_tokens": 200, "temperature": 0.9, "seed": 2,
                "stream": True}
        headers = {"Authorization": "Bearer sekret"}
        with httpx.Client(timeout=60, headers=headers) as h:
            with h.stream("POST", f"{run.url}/v1/chat/completions", json=body) as first:
                # The role chunk comes before admission; a token means the request holds the only slot.
                lines = (ln for ln in first.iter_lines() if ln.startswith("data: {"))
                next(ln for ln in lines if json.loads(ln[6:])["choices"][0]["delta"].get("content"))
                with h.stream("POST", f"{run.url}/v1/chat/completions", json=body) as second:
                    assert second.status_code == 200  # waits in the queue (1 place)
                    third = h.post(f"{run.url}/v1/chat/completions", json=body)
                    assert third.status_code == 429
                    assert third.json()["error"]["type"] == "rate_limit_error"
    finally:
        run.close()


def test_cli_serve(smollm_path, tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "pyllm.cli", "serve", "--help"], capture_output=True, text=True,
                               timeout=60, cwd=tmp_path).stdout
    for flag in ("--model", "--host", "--port", "--max-parallel", "--n-ctx", "--api-key", "--max-queue"):
        assert flag in help_text
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "PYLLM_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "pyllm.cli", "serve", "--model", f"m={smollm_path}", "--port",
                             str(port), "--n-ctx", "256", "--max-parallel", "4", "--log-level", "warning"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        r = c.chat.completions.create(model="m", messages=MESSAGES[0], max_tokens=3, temperature=0)
        assert r.usage.completion_tokens == 3 or r.choices[0].finish_reason == "stop"
        assert json.loads(httpx.get(f"http://127.0.0.1:{port}/v1/models").text)["data"][0]["id"] == "m"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                      "age": {"type": "integer", "minimum": 0, "maximum": 120}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                      "scores": {"type": "array", "items": {"type": "number", "minimum": 0,
                                                                            "maximum": 10},
                                                 "minItems": 1, "maxItems": 3}},
     "required": ["color", "scores"], "additionalProperties": False},
    {"type": "object", "properties": {"user": {"type": "object",
                                               "properties": {"id": {"type": "string", "pattern": "^[a-z]{2}[0-9]{3}$"},
                                                              "admin": {"type": "boolean"}},
                                               "required": ["id", "admin"], "additionalProperties": False},
                                      "tags": {"type": "array", "items": {"type": "string", "maxLength": 6},
                                               "maxItems": 2}},
     "required": ["user", "tags"], "additionalProperties": False},
]


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 5}])
def test_json_schema_output_validates(client, schema, sampling):
    jsonschema = pytest.importorskip("jsonschema")
    r = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Reply with a JSON document."}], max_tokens=96,
        response_format={"type": "json_schema", "json_schema": {"name": "doc", "schema": schema}}, **sampling)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_json_mode_equals_generate_with_the_same_mask(server, client, smollm):
    messages = [{"role": "user", "content": "Describe a cat as JSON."}]
    ids = chat_ids(smollm.tokenizer, messages)
    schema = SCHEMAS[0]
    r = client.chat.completions.create(model="smol", messages=messages, max_tokens=40, temperature=0,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "x", "schema": schema}})
    grammars = server.app.state.served["smol"].grammars()
    mask = grammars.processor(grammars.compile(schema), len(ids))
    [(_, text)] = reference(smollm, ids, 40, logits_processor=[mask])
    assert r.choices[0].message.content == text
    j = client.chat.completions.create(model="smol", messages=messages, max_tokens=60, temperature=0,
                                       response_format={"type": "json_object"})
    content = j.choices[0].message.content
    assert content.lstrip().startswith("{")  # an object, whole when it stopped by itself
    if j.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)
    free = client.chat.completions.create(model="smol", messages=messages, max_tokens=40, temperature=0)
    assert free.choices[0].message.content != content  # the mask changed what the model says


def test_bad_schemas_are_refused(server):
    ok = {"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    status, err = error_of(server, "/v1/chat/completions",
                           {**ok, "response_format": {"type": "json_schema",
                                                      "json_schema": {"name": "x", "schema": {"type": "frob"}}}})
    assert (status, err["param"]) == (422, "response_format")
    status, err = error_of(server, "/v1/chat/completions", {**ok, "response_format": {"type": "yaml"}})
    assert (status, err["param"]) == (400, "response_format")


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def requests_in_a_row(client, count):
    for i in range(count):
        r = client.chat.completions.create(model="smol", max_tokens=2, temperature=0,
                                           messages=[{"role": "user", "content": f"Say the number {i}."}])
        assert r.choices[0].finish_reason in ("stop", "length")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("count", [pytest.param(100), pytest.param(500, marks=pytest.mark.slow)])
def test_requests_in_a_row_leave_memory_flat(server, client, count):
    requests_in_a_row(client, 20)  # slots and caches warmed up
    before = rss_mb()
    requests_in_a_row(client, count)
    grown = rss_mb() - before
    engine = server.app.state.served["smol"].engine
    assert engine.running == 0 and engine.queue_length == 0 and not engine._active
    assert grown < 25, f"resident memory grew by {grown:.1f} MB over {count} requests"
