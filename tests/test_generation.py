"""generate / stream / score / pipeline and the CLI: against reference loops
over the model's own forward pass, and the bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import pyllm
from pyllm import AutoModelForCausalLM, GenerationConfig, TextIteratorStreamer, TextStreamer, pipeline

from test_llama import TINY, write_tiny_llama

gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "tiny.gguf"
    write_tiny_llama(path, gguf.GGMLQuantizationType.Q8_0, seed=3)
    return AutoModelForCausalLM.from_pretrained(path, n_ctx=64)


def greedy_reference(model, prompt, n):
    """argmax chain over full forward passes, no cache reuse."""
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(np.argmax(model(ids).logits[0, -1])))
    return ids


def test_greedy_matches_full_forward_reference(tiny):
    prompt = [5, 17, 42, 8]
    out = tiny.generate(prompt, max_new_tokens=12)
    assert out.shape == (1, 16) and out.dtype == np.int64
    assert out[0].tolist() == greedy_reference(tiny, prompt, 12)


def test_sampling_is_seeded_and_thread_independent(tiny):
    kw = dict(do_sample=True, temperature=1.3, top_k=0, max_new_tokens=20)
    a = tiny.generate([1, 2, 3], seed=7, **kw)
    b = tiny.generate([1, 2, 3], seed=7, **kw)
    c = tiny.generate([1, 2, 3], seed=8, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    before = pyllm.get_num_threads()
    try:
        pyllm.set_num_threads(1)
        one = tiny.generate([1, 2, 3], seed=7, **kw)
    finally:
        pyllm.set_num_threads(before)
    np.testing.assert_array_equal(a, one)


def test_batched_ragged_prompts_and_num_return_sequences(tiny):
    p1, p2 = [4, 5, 6, 7, 8], [9, 10]
    out = tiny.generate([p1, p2], max_new_tokens=6, pad_token_id=0)
    assert out.shape == (2, 5 + 6)
    assert out[0].tolist() == tiny.generate(p1, max_new_tokens=6)[0].tolist()
    assert out[1].tolist() == [0, 0, 0] + tiny.generate(p2, max_new_tokens=6)[0].tolist()
    # the same prompts as a left-padded 2-D batch with a mask
    arr = np.array([p1, [0, 0, 0] + p2])
    mask = np.array([[1] * 5, [0, 0, 0, 1, 1]])
    np.testing.assert_array_equal(tiny.generate(arr, attention_mask=mask, max_new_tokens=6, pad_token_id=0), out)
    many = tiny.generate(p2, max_new_tokens=4, do_sample=True, num_return_sequences=3, seed=1)
    assert many.shape == (3, 6) and (many[:, :2] == p2).all()


def _one_at_a_time(model):
    """The model with its batched decode path switched off (sequences run one after another)."""
    class Sequential:
        def __enter__(self):
            model._batch_size = lambda: 1
            return model

        def __exit__(self, *exc):
            del model._batch_size

    return Sequential()


def test_batched_decode_logits_equal_single_sequence_steps(tiny):
    # decode_batch computes each row exactly as a one-token step of that sequence alone
    live = tiny._live()
    prompts = [[3, 4, 5], [9, 1], [7, 7, 7, 7, 2]]
    alone = []
    for p in prompts:
        live.truncate(0)
        live.forward(np.array(p, np.int32))
        alone.append(live.forward(np.array([11], np.int32)))
    live.set_n_seq(3)
    try:
        for s, p in enumerate(prompts):
            live.truncate(0, s)
            live.forward(np.array(p, np.int32), False, s)
        both = live.decode_batch(np.array([11, 11], np.int32), np.array([2, 0], np.int64))
        np.testing.assert_array_equal(both[0], alone[2])
        np.testing.assert_array_equal(both[1], alone[0])
        assert [live.seq_n_past(s) for s in range(3)] == [4, 2, 6]
    finally:
        live.set_n_seq(1)
        tiny.reset()


def test_batched_decode_bad_input(tiny):
    live = tiny._live()
    live.set_n_seq(2)
    try:
        for s in range(2):
            live.truncate(0, s)
            live.forward(np.array([1, 2], np.int32), False, s)
        with pytest.raises(ValueError, match="appears twice"):
            live.decode_batch(np.array([1, 2], np.int32), np.array([1, 1], np.int64))
        with pytest.raises(ValueError, match="out of range"):
            live.decode_batch(np.array([1], np.int32), np.array([2], np.int64))
        with pytest.raises(ValueError, match="token id 96"):
            live.decode_batch(np.array([96], np.int32), np.array([0], np.int64))
        with pytest.raises(ValueError, match="seqs has 1 entries"):
            live.decode_batch(np.array([1, 2], np.int32), np.array([0], np.int64))
        with pytest.raises(ValueError, match="int64"):
            live.decode_batch(np.array([1], np.int32), np.array([0], np.int32))
        with pytest.raises(ValueError, match="at least 1"):
            live.set_n_seq(0)
        with pytest.raises(ValueError, match="out of range"):
            live.forward(np.array([1], np.int32), False, 5)
        live.forward(np.arange(62, dtype=np.int32) % 90, False, 1)  # sequence 1 now holds all 64 positions
        with pytest.raises(ValueError, match="already holds n_ctx=64"):
            live.decode_batch(np.array([1, 1], np.int32), np.array([0, 1], np.int64))
        assert live.seq_n_past(0) == 2  # a refused step changes nothing
    finally:
        live.set_n_seq(1)
        tiny.reset()


@pytest.mark.parametrize("kw", [dict(), dict(do_sample=True, temperature=1.2, top_k=20, repetition_penalty=1.2, seed=3),
                                dict(do_sample=True, top_p=0.8, no_repeat_ngram_size=2, seed=9, min_new_tokens=3)])
def test_batched_generate_equals_one_sequence_at_a_time(tiny, kw):
    # ragged prompts, several return sequences, eos stopping some rows early:
    # the batched path yields exactly the sequential path's tokens
    prompts = [[5, 17, 42, 8], [9, 10], [1, 2, 3, 4, 5, 6, 7], [30]]
    free = tiny.generate(prompts[0], max_new_tokens=12)[0].tolist()
    args = dict(max_new_tokens=12, num_return_sequences=2 if kw else 1, eos_token_id=free[7], pad_token_id=0, **kw)
    batched = tiny.generate(prompts, **args)
    assert tiny._live().n_seq == 1  # the extra caches are gone after the call
    with _one_at_a_time(tiny):
        sequential = tiny.generate(prompts, **args)
    np.testing.assert_array_equal(batched, sequential)
    assert batched.shape[0] == 4 * args["num_return_sequences"]
    if not kw:  # greedy: as the prompt alone, up to and including the first eos
        k = free.index(free[7], 4) + 1
        assert batched[0].tolist()[3:3 + k] == free[:k]  # left-padded to the 7-token prompt


def test_batched_generate_keeps_the_prefix_cache(tiny):
    # sequence 0 decodes in the model's own cache: the next call reuses its history
    prompt = [5, 17, 42, 8]
    out = tiny.generate([prompt, [9, 10]], max_new_tokens=6)[0].tolist()
    fed = []
    real = tiny.step

    def spy(ids, all_logits=False):
        fed.append(list(ids))
        return real(ids, all_logits)

    tiny.step = spy
    try:
        again = tiny.generate(out + [3], max_new_tokens=2)[0].tolist()
    finally:
        del tiny.step
    assert fed[0] == out[-1:] + [3]  # only what the cache lacks ran: the last sampled token and the new one
    tiny.reset()
    assert again == tiny.generate(out + [3], max_new_tokens=2)[0].tolist()


def test_eos_stops_and_pads(tiny):
    prompt = [5, 17, 42, 8]
    free = tiny.generate(prompt, max_new_tokens=10)[0].tolist()
    eos = free[6]  # the third generated token
    out = tiny.generate([prompt, prompt[:3]], max_new_tokens=10, eos_token_id=eos, pad_token_id=0)
    first_stop = free[4:].index(eos) + 1
    assert out[0, 4: 4 + first_stop].tolist() == free[4: 4 + first_stop]
    assert (out[0, 4 + first_stop:] == 0).all()
    # min_new_tokens forbids eos until then
    forced = tiny.generate(prompt, max_new_tokens=10, eos_token_id=eos, min_new_tokens=10)[0].tolist()
    assert eos not in forced[4:]


def test_user_logits_processor(tiny):
    banned = set(tiny.generate([1, 2], max_new_tokens=8)[0, 2:].tolist())

    def ban(input_ids, scores):
        scores[:, sorted(banned)] = -np.inf
        return scores

    out = tiny.generate([1, 2], max_new_tokens=8, logits_processor=[ban])[0, 2:].tolist()
    assert not banned & set(out)


def test_prefix_reuse_runs_only_new_tokens(tiny):
    fed = []
    real = tiny.step

    def counting_step(ids, all_logits=False):
        fed.append(len(np.asarray(ids).reshape(-1)))
        return real(ids, all_logits)

    tiny.step = counting_step
    try:
        history = [3, 4, 5, 6, 7, 8, 9, 10]
        first = tiny.generate(history, max_new_tokens=3)[0].tolist()
        fed.clear()
        # the next turn extends the conversation: only the new suffix is prefilled
        tiny.generate(first + [11, 12], max_new_tokens=3)
        assert fed[0] == 3  # the last generated token (never fed back) + 2 new ones
    finally:
        del tiny.step
    assert tiny.generate(first + [11, 12], max_new_tokens=3)[0].tolist() == greedy_reference(tiny, first + [11, 12], 3)


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(max_new_tokens=0), "max_new_tokens"), (dict(max_new_tokens=-3), "max_new_tokens"),
     (dict(temperature=-0.1), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
     (dict(top_k=-1), "top_k"), (dict(min_p=2.0), "min_p"), (dict(typical_p=0.0), "typical_p"),
     (dict(repetition_penalty=0.0), "repetition_penalty"), (dict(no_repeat_ngram_size=-1), "no_repeat_ngram"),
     (dict(num_return_sequences=2), "do_sample"), (dict(max_new_tokens=60), "exceeds the context"),
     (dict(seed=-1), "seed")],
)
def test_bad_generation_arguments(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny.generate([1, 2, 3, 4, 5], **kwargs)


def test_bad_prompts(tiny):
    with pytest.raises(ValueError, match="empty"):
        tiny.generate([], max_new_tokens=2)
    with pytest.raises(ValueError, match="out of range"):
        tiny.generate([1, 96], max_new_tokens=2)
    with pytest.raises(TypeError, match="unknown generation arguments"):
        tiny.generate([1], max_new_tokns=2)


def test_concurrent_generation_serializes(tiny):
    want = tiny.generate([7, 8, 9], max_new_tokens=10).tolist()
    got = []

    def work():
        for _ in range(3):
            got.append(tiny.generate([7, 8, 9], max_new_tokens=10).tolist())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert got == [want] * 9


def test_score_matches_full_forward(tiny):
    ids = list(np.random.default_rng(4).integers(0, TINY["vocab_size"], size=50))
    logits = tiny(ids).logits[0].astype(np.float64)
    lp = logits - logits.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    want = lp[np.arange(49), ids[1:]]
    res = tiny.score(ids)
    np.testing.assert_allclose(res.logprobs, want, rtol=1e-4, atol=1e-4)
    assert res.perplexity == pytest.approx(float(np.exp(-want.mean())), rel=1e-4)


def test_score_sliding_window(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path, gguf.GGMLQuantizationType.F32, seed=5)
    model = AutoModelForCausalLM.from_pretrained(path, n_ctx=16)
    ids = list(np.random.default_rng(6).integers(0, TINY["vocab_size"], size=40))
    res = model.score(ids, stride=8)
    # each target is scored once, with the context its window gives: recompute window by window
    want = []
    begin = 0
    while len(want) < 39:
        end = min(begin + 16, 40)
        logits = model(ids[begin:end]).logits[0].astype(np.float64)
        lp = logits - logits.max(-1, keepdims=True)
        lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
        for t in range(begin, end - 1):
            if t + 1 == len(want) + 1:
                want.append(lp[t - begin, ids[t + 1]])
        begin += 8
    np.testing.assert_allclose(res.logprobs, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="two tokens"):
        model.score([5])


# ---- with the real model and its tokenizer


def test_streamers_and_stream_match_generate(smollm, capsys):
    tok = smollm.tokenizer
    ids = tok.encode("The capital of France is")
    out = smollm.generate(ids, max_new_tokens=12)[0].tolist()
    text = tok.decode(out[len(ids):], skip_special_tokens=True)
    smollm.generate(ids, max_new_tokens=12, streamer=TextStreamer(tok, skip_prompt=True, skip_special_tokens=True))
    assert capsys.readouterr().out == text + "\n"
    assert "".join(smollm.stream(ids, max_new_tokens=12)) == text
    it = TextIteratorStreamer(tok, skip_prompt=True, timeout=60, skip_special_tokens=True)
    th = threading.Thread(target=smollm.generate, args=(ids,), kwargs=dict(max_new_tokens=12, streamer=it))
    th.start()
    pieces = list(it)
    th.join()
    assert "".join(pieces) == text


def _pieces_whole_history(tok, ids, **kw):
    """Reference for TextDecodeBuffer: decode everything so far at every token,
    hand out up to the last space (all of it after a newline or a CJK
    character), hold back a text ending in an incomplete UTF-8 character."""
    from pyllm.generation.streamers import _is_cjk

    pieces, printed = [], 0
    for i in range(1, len(ids) + 1):
        text = tok.decode(ids[:i], **kw)
        if text.endswith("\ufffd"):
            pieces.append("")
            continue
        end = len(text) if text.endswith("\n") or (text and _is_cjk(text[-1])) else text.rfind(" ") + 1
        pieces.append(text[printed:end] if end > printed else "")
        printed = max(printed, end)
    return pieces, tok.decode(ids, **kw)[printed:]


def test_text_decode_buffer_matches_whole_history_decoding(smollm):
    # windowed decoding gives the pieces a full decode at every token gives,
    # on text with multi-byte characters split over tokens, CJK and newlines
    from pyllm.generation.streamers import TextDecodeBuffer

    tok = smollm.tokenizer
    rng = np.random.default_rng(5)
    texts = ["Hello, world! The café serves crème brûlée.  Twice spaced.",
             "emoji 👩‍👩‍👧 and 🎉🎉 then 日本語のテキスト mixed with English words",
             "line one\nline two\n\nafter a blank line and trailing spaces   ",
             "Ünïcödé wörds: naïve façade, Ελληνικά, русский, हिन्दी"]
    cases = [tok.encode(t, add_special_tokens=False) for t in texts]
    cases += [rng.integers(0, smollm.config.vocab_size, 60).tolist() for _ in range(20)]
    for ids in cases:
        for kw in ({}, {"skip_special_tokens": True}):
            want, want_rest = _pieces_whole_history(tok, ids, **kw)
            buf = TextDecodeBuffer(tok, **kw)
            got = [buf.push([t]) for t in ids]
            rest = buf.flush()
            assert "".join(got) + rest == tok.decode(ids, **kw)
            assert got == want and rest == want_rest
            assert len(buf.tokens) == 0
    # (these pieces came from the tokenizer's own _decode_ids; each pushed id is checked once)
    assert TextDecodeBuffer(tok)._raw is not None
    with pytest.raises(ValueError, match=f"token id {smollm.config.vocab_size} is out of range"):
        TextDecodeBuffer(tok).push([smollm.config.vocab_size])


def test_stop_strings(smollm):
    tok = smollm.tokenizer
    ids = tok.encode("1, 2, 3, 4, 5,")
    free = tok.decode(smollm.generate(ids, max_new_tokens=20)[0, len(ids):].tolist())
    assert " 8" in free
    stopped = tok.decode(smollm.generate(ids, max_new_tokens=20, stop_strings=" 8")[0, len(ids):].tolist())
    assert stopped.endswith(" 8") or stopped.rstrip().endswith("8")
    assert len(stopped) < len(free)


def test_pipeline_text_and_chat(smollm):
    pipe = pipeline("text-generation", model=smollm)
    out = pipe("Once upon a time", max_new_tokens=8)
    assert len(out) == 1 and out[0]["generated_text"].startswith("Once upon a time")
    chat = pipe([{"role": "user", "content": "Say hello."}], max_new_tokens=8)
    conv = chat[0]["generated_text"]
    assert conv[0] == {"role": "user", "content": "Say hello."} and conv[-1]["role"] == "assistant"
    with pytest.raises(ValueError, match="unsupported task"):
        pipeline("summarization", model=smollm)


def test_generation_config_defaults_from_model(smollm):
    cfg = smollm.generation_config
    assert isinstance(cfg, GenerationConfig) and cfg.eos_token_id == 2
    ids = smollm.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    out = smollm.generate(ids, max_new_tokens=200)[0].tolist()
    assert out[-1] == 2 or len(out) == len(ids) + 200  # stops at <|im_end|> (id 2) by default


def _cli(*args, stdin=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "pyllm.cli", *args], capture_output=True, text=True,
                          input=stdin, timeout=timeout, cwd=str(__import__("tempfile").gettempdir()))


def test_cli_generate_and_bench(smollm_path):
    out = _cli("generate", "The capital of France is", "-m", str(smollm_path), "-n", "8")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("The capital of France is") and "tok/s" in out.stderr
    bench = _cli("bench", "-m", str(smollm_path), "--prompt-tokens", "32", "--new-tokens", "8", "--repeats", "1",
                 "--json")
    assert bench.returncode == 0, bench.stderr
    figures = json.loads(bench.stdout)
    assert figures["prefill_tok_s"] > 0 and figures["decode_tok_s"] > 0


def test_cli_chat_and_perplexity(smollm_path, tmp_path):
    chat = _cli("chat", "-m", str(smollm_path), "-n", "6", stdin="Hello!\n/reset\nWhat is 2+2?\n")
    assert chat.returncode == 0, chat.stderr
    assert len([line for line in chat.stdout.splitlines() if line.strip()]) >= 2
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be, that is the question. " * 20)
    ppl = _cli("perplexity", str(text), "-m", str(smollm_path), "--json", "--n-ctx", "64")
    assert ppl.returncode == 0, ppl.stderr
    res = json.loads(ppl.stdout)
    assert res["tokens"] > 64 and 1.0 < res["perplexity"] < 50
    bad = _cli("generate", "hi", "-m", str(smollm_path), "-n", "0")
    assert bad.returncode == 1 and "max_new_tokens" in bad.stderr
