"""`pyllm serve`'s /v1/embeddings through the official openai client: vectors equal the model's own
encode() for the same texts (float and base64), the four input forms, usage counts, and OpenAI's error
bodies (empty input, too long input, dimensions, chat to an encoder); a decoder's vectors (mean-pooled
final hidden states) equal encode() and transformers' on the same ids, while streams run beside them."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import pyllm
from pyllm.models.bert import BertModel

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

TINY_DECODER = Path(__file__).parent / "data" / "tiny" / "llama2" / "llama2-f32.gguf"
TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
         "Ünïcödé àccents, 数字 and emoji 🎉", "ok"]
LONG = "word " * 300  # 302 tokens with [CLS] and [SEP]: past all-MiniLM-L6-v2's 256


class Running:
    """A uvicorn server on 127.0.0.1 on a free port, in a thread of this process."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                break
            time.sleep(0.05)
        assert self.server.started, "the server did not start"

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def minilm():
    return BertModel.from_pretrained("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def server():
    run = Running(pyllm.serve.create_app(["all-MiniLM-L6-v2", f"tiny={TINY_DECODER}"], n_ctx=64, max_parallel=2))
    yield run
    run.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


def _post(server, body):
    return httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=60)


def test_models_lists_encoder_and_decoder(client):
    assert [m.id for m in client.models.list().data] == ["all-MiniLM-L6-v2", "tiny"]
    assert client.models.retrieve("all-MiniLM-L6-v2").model_extra["max_model_len"] == 256


def test_float_vectors_equal_encode(client, minilm):
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, encoding_format="float")
    want = minilm.encode(TEXTS, normalize=True)  # modules.json ends in Normalize: unit vectors, as OpenAI's
    got = np.array([d.embedding for d in r.data], dtype=np.float32)
    assert [d.index for d in r.data] == list(range(len(TEXTS)))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert r.model == "all-MiniLM-L6-v2" and r.object == "list" and r.data[0].object == "embedding"
    n_tokens = sum(len(minilm.tokenizer(t)["input_ids"]) for t in TEXTS)
    assert r.usage.prompt_tokens == r.usage.total_tokens == n_tokens


def test_base64_decodes_to_the_same_floats(server, client, minilm):
    want = minilm.encode(TEXTS[:2], normalize=True)
    raw = _post(server, {"model": "all-MiniLM-L6-v2", "input": TEXTS[:2], "encoding_format": "base64"}).json()
    for d, w in zip(raw["data"], want):
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4"), w)
    # the client asks for base64 by default and decodes it itself
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[:2])
    np.testing.assert_array_equal(np.array([d.embedding for d in r.data], dtype=np.float32), want)


def test_one_string_and_token_lists(client, minilm):
    one = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[2], encoding_format="float")
    assert len(one.data) == 1
    np.testing.assert_array_equal(np.array(one.data[0].embedding, dtype=np.float32),
                                  minilm.encode(TEXTS[2], normalize=True))
    # token lists as /tokenize gives them ([CLS] ... [SEP]): the text's vector, to float rounding
    ids = [list(minilm.tokenizer(t)["input_ids"]) for t in TEXTS]
    many = client.embeddings.create(model="all-MiniLM-L6-v2", input=ids, encoding_format="float")
    np.testing.assert_allclose(np.array([d.embedding for d in many.data]), minilm.encode(TEXTS, normalize=True),
                               atol=1e-6, rtol=0)
    single = client.embeddings.create(model="all-MiniLM-L6-v2", input=ids[0], encoding_format="float")
    np.testing.assert_allclose(single.data[0].embedding, minilm.encode(TEXTS[0], normalize=True), atol=1e-6)
    assert single.usage.prompt_tokens == len(ids[0])


def test_too_long_input_is_a_400_unless_truncated(server, client, minilm):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=["short", LONG])
    err = e.value.body
    assert err["code"] == "context_length_exceeded" and err["param"] == "input"
    assert "input[1]" in err["message"] and "256" in err["message"]
    ok = _post(server, {"model": "all-MiniLM-L6-v2", "input": LONG, "truncate": True, "encoding_format": "float"})
    assert ok.status_code == 200
    np.testing.assert_array_equal(np.array(ok.json()["data"][0]["embedding"], dtype=np.float32),
                                  minilm.encode(LONG, normalize=True))
    assert ok.json()["usage"]["prompt_tokens"] == 256


@pytest.mark.parametrize("body,param,fragment", [
    ({"input": ""}, "input", "must not be empty"),
    ({"input": []}, "input", "must not be empty"),
    ({"input": ["fine", ""]}, "input", "input[1]: must not be empty"),
    ({"input": [[101, 102], []]}, "input", "input[1]: must not be empty"),
    ({"input": [101, 99999, 102]}, "input", "token id 99999"),
    ({"input": "x", "dimensions": 128}, "dimensions", "384-dimensional"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format", "encoding_format"),
    ({"input": "x", "frobnicate": 1}, "frobnicate", "unrecognized"),
    ({"input": 5}, "input", "input"),
])
def test_bad_requests_get_openai_error_bodies(server, body, param, fragment):
    r = _post(server, {"model": "all-MiniLM-L6-v2", **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param and fragment in err["message"]


def test_dimensions_equal_to_the_width_is_fine(client):
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=384, encoding_format="float")
    assert len(r.data[0].embedding) == 384


def test_an_encoder_refuses_generation(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="all-MiniLM-L6-v2", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_supported" and "embedding model" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="all-MiniLM-L6-v2", prompt="hi")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="hello")
    # the decoder still serves
    r = client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0)
    assert r.usage.completion_tokens >= 1


def test_embedding_runs_off_the_event_loop(server, minilm):
    """A long embedding request runs on the encoder's worker thread: /health, sent while it runs,
    is answered before it finishes (an encoder run on the event loop would hold /health back)."""
    import asyncio

    texts = [f"sentence number {i} of a long request, " * 6 for i in range(256)]

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as c:
            order = []

            async def embed():
                r = await c.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": texts,
                                                         "encoding_format": "float"})
                order.append("embed")
                return r

            async def health():
                await asyncio.sleep(0.05)
                r = await c.get("/health")
                order.append("health")
                return r

            big, ok = await asyncio.gather(embed(), health())
            return order, big, ok

    order, big, ok = asyncio.run(run())
    assert ok.status_code == 200 and big.status_code == 200
    assert order == ["health", "embed"]
    vecs = np.array([d["embedding"] for d in big.json()["data"]], dtype=np.float32)
    np.testing.assert_array_equal(vecs, minilm.encode(texts, normalize=True))


# ---- a decoder's embeddings

@pytest.fixture(scope="module")
def tiny():
    with pyllm.AutoModelForCausalLM.from_pretrained(TINY_DECODER, n_ctx=64) as m:
        yield m


def test_decoder_vectors_equal_encode_and_transformers(client, tiny):
    texts = ["Hello there", "The quick brown fox jumps over the lazy dog", "a"]
    r = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    got = np.array([d.embedding for d in r.data], dtype=np.float32)
    np.testing.assert_array_equal(got, tiny.encode(texts, normalize=True))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert r.usage.prompt_tokens == sum(len(tiny.tokenizer(t)["input_ids"]) for t in texts)
    # token lists, against transformers' last hidden state of the source checkpoint, mean-pooled
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModel.from_pretrained(TINY_DECODER.parent / "hf", dtype=torch.float32)
    rows = [[1, 15, 27, 3, 80], [1, 4]]
    r = client.embeddings.create(model="tiny", input=rows, encoding_format="float")
    for d, row in zip(r.data, rows):
        with torch.no_grad():
            want = hf(torch.tensor([row])).last_hidden_state[0].mean(0).numpy()
        np.testing.assert_allclose(d.embedding, want / np.linalg.norm(want), atol=2e-6, rtol=0)


def test_decoder_embeddings_beside_streams(server, tiny):
    """Embedding requests run between the decode steps of running completions: every completion
    gives its solo text and every vector its solo value."""
    import asyncio

    prompts = [[1, 15, 27], [1, 80, 81, 82], [1, 4]]
    body = {"model": "tiny", "max_tokens": 12, "temperature": 0}
    solo = [httpx.post(f"{server.url}/v1/completions", json={**body, "prompt": p}, timeout=60).json()
            for p in prompts]
    texts = [f"embedding {i} " * (i % 4 + 1) for i in range(8)]
    want = tiny.encode(texts, normalize=True)

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as c:
            async def complete(p):
                return await c.post("/v1/completions", json={**body, "prompt": p})

            async def embed(t):
                return await c.post("/v1/embeddings", json={"model": "tiny", "input": t, "encoding_format": "float"})

            return await asyncio.gather(*[complete(p) for p in prompts], *[embed(t) for t in texts])

    out = asyncio.run(run())
    for alone, r in zip(solo, out[:3]):
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == alone["choices"][0]["text"]
        assert r.json()["usage"] == alone["usage"]
    for r, w in zip(out[3:], want):
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(np.array(r.json()["data"][0]["embedding"], dtype=np.float32), w)


@pytest.mark.parametrize("body,status,fragment", [
    ({"input": "word " * 80}, 400, "maximum of 64"),
    ({"input": [1] * 65}, 400, "maximum of 64"),
    ({"input": [1, 5000]}, 400, "token id 5000"),
])
def test_decoder_bad_embedding_requests(server, body, status, fragment):
    r = _post(server, {"model": "tiny", **body})
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]["message"]


def test_decoder_truncated_input(server, tiny):
    ids = [1] + [15] * 70
    r = _post(server, {"model": "tiny", "input": ids, "truncate": True, "encoding_format": "float"})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.array(r.json()["data"][0]["embedding"], dtype=np.float32),
                                  tiny.embed([ids[:64]], normalize=True)[0])
