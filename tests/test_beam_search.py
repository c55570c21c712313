"""Beam search (generate(num_beams=...)) against a numpy transliteration of transformers'
_beam_search, driven by the model's own logits, on small random llama models; and its bad input.
The comparison with transformers itself on SmolLM2 is in test_transformers_idioms.py."""

from __future__ import annotations

import numpy as np
import pytest

from pyllm import AutoModelForCausalLM

from test_llama import write_tiny_llama

gguf = pytest.importorskip("gguf")
f32 = np.float32


def _log_softmax(x):
    x = x.astype(np.float32)
    z = x - x.max(-1, keepdims=True)
    return (z - np.log(np.exp(z).sum(-1, keepdims=True))).astype(np.float32)


def _topk(x, k):
    """torch.topk(x, k)[1] for a 1-D array: the k largest, best first (ties: lower index first)."""
    return np.lexsort((np.arange(x.size), -x))[:k]


def hf_beam_search_ref(next_logits, prompt, num_beams, max_new_tokens, eos=(), length_penalty=1.0,
                       early_stopping=False, num_return_sequences=1, pad=0, processor=None):
    """transformers 5's GenerationMixin._beam_search for one prompt, its tensors as numpy arrays
    (running/finished buffers, -1e9 penalties, float32 scores). ``next_logits(ids)`` gives the
    logits (V,) after ``ids``; ``processor(ids, log_probs)`` is the logits processor list.
    Returns the (num_return_sequences, prompt + generated) ids and the number of steps run."""
    K, P = num_beams, len(prompt)
    max_length = P + max_new_tokens
    n_keep = max(2, 1 + len(eos)) * K
    top_num_beam_mask = np.arange(n_keep) < K
    running = np.full((K, max_length), pad, dtype=np.int64)
    running[:, :P] = prompt
    sequences = running.copy()
    running_scores = np.zeros(K, f32)
    running_scores[1:] = -1e9
    beam_scores = np.full(K, -1e9, f32)
    is_finished = np.zeros(K, bool)
    seq_len = np.zeros(K, np.int64)  # generated length of each finished slot
    unsatisfied = True
    cur = P
    while True:
        logits = np.stack([next_logits(running[k, :cur]) for k in range(K)])  # (K, V)
        V = logits.shape[1]
        logp = _log_softmax(logits)
        if processor is not None:
            logp = processor(running[:, :cur], logp)
        acc = (logp + running_scores[:, None]).reshape(-1)
        top = _topk(acc, n_keep)
        top_lp = acc[top]
        top_seqs = running[top // V].copy()
        top_seqs[:, cur] = top % V
        hits = np.isin(top % V, list(eos)) | (cur + 1 >= max_length)
        # running beams for the next step
        trl = (top_lp + hits.astype(f32) * f32(-1e9)).astype(f32)
        nxt = _topk(trl, K)
        running, running_scores = top_seqs[nxt], trl[nxt]
        # finished beams
        just = hits & top_num_beam_mask
        s = (top_lp / f32((cur + 1 - P) ** length_penalty)).astype(f32)
        s = s + f32(is_finished.all() and early_stopping is True) * f32(-1e9)
        s = s + f32(not unsatisfied) * f32(-1e9)
        s = (s + (~just).astype(f32) * f32(-1e9)).astype(f32)
        m_seqs = np.concatenate([sequences, top_seqs])
        m_scores = np.concatenate([beam_scores, s])
        m_fin = np.concatenate([is_finished, just])
        m_len = np.concatenate([seq_len, np.full(n_keep, cur + 1 - P)])
        idx = _topk(m_scores, K)
        sequences, beam_scores, is_finished, seq_len = m_seqs[idx], m_scores[idx], m_fin[idx], m_len[idx]
        cur += 1
        # the loop's stopping rule
        best_len = max_length - P if (early_stopping == "never" and length_penalty > 0) else cur - P
        best_possible = running_scores[0] / f32(best_len ** length_penalty)
        worst = np.where(is_finished, beam_scores.min(), f32(-1e9))
        unsatisfied = unsatisfied and bool(np.any(best_possible > worst))
        open_beam = not (is_finished.all() and early_stopping is True)
        if not (unsatisfied and open_beam and not hits.all()):
            break
    out = sequences[:num_return_sequences]
    return out[:, : P + int(seq_len[:num_return_sequences].max())], cur - P


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory):
    path = tmp_path_factory.mktemp("beam") / "tiny_f32.gguf"
    write_tiny_llama(path, gguf.GGMLQuantizationType.F32, seed=5)
    return AutoModelForCausalLM.from_pretrained(path, n_ctx=64)


@pytest.fixture(scope="module")
def tiny_q8(tmp_path_factory):
    path = tmp_path_factory.mktemp("beam") / "tiny_q8.gguf"
    write_tiny_llama(path, gguf.GGMLQuantizationType.Q8_0, seed=6)
    return AutoModelForCausalLM.from_pretrained(path, n_ctx=64)


def full_forward(model):
    return lambda ids: model(np.asarray(ids)).logits[0, -1]


def incremental(model):
    """Logits after ids from a fresh prefill + one decode step per token: the path a beam's own KV
    cache takes (for quantized weights the one-token path differs from a full forward)."""
    def next_logits(ids):
        ids = [int(t) for t in ids]
        model.reset()
        logits = model.step(ids[:PROMPT_LEN])
        for t in ids[PROMPT_LEN:]:
            logits = model.step([t])
        return logits
    return next_logits


PROMPT_LEN = 5
EOS = tuple(range(0, 96, 9))  # 11 of the 96 ids
# with eos boosted, hypotheses end often and the stopping rules decide how long the search runs
CASES = [
    dict(num_beams=2, max_new_tokens=8),
    dict(num_beams=4, max_new_tokens=10, eos=(7, 11, 30)),
    dict(num_beams=3, max_new_tokens=12, eos=EOS, boost=1.0, length_penalty=0.5, early_stopping=True,
         num_return_sequences=3),
    dict(num_beams=4, max_new_tokens=14, eos=EOS, boost=2.0, length_penalty=0.5, early_stopping="never",
         num_return_sequences=2),
    dict(num_beams=4, max_new_tokens=14, eos=EOS, boost=2.0, length_penalty=0.5, early_stopping=False,
         num_return_sequences=4),
    dict(num_beams=3, max_new_tokens=10, eos=EOS, boost=3.0, length_penalty=-1.0, num_return_sequences=2),
    dict(num_beams=3, max_new_tokens=10, eos=EOS[:2], boost=4.0, length_penalty=2.0, early_stopping="never"),
]


class Boost:
    """A logits processor that adds ``by`` to some ids' scores (here: makes beams end often)."""

    def __init__(self, ids, by):
        self.ids, self.by = list(ids), np.float32(by)

    def __call__(self, input_ids, scores):
        scores = scores.copy()
        scores[:, self.ids] += self.by
        return scores


def _generate(model, prompt, case):
    """generate(num_beams=...) and the number of decode steps it ran."""
    kw = {k: v for k, v in case.items() if k not in ("eos", "boost")}
    eos = list(case.get("eos", ())) or None
    procs = [Boost(eos, case["boost"])] if "boost" in case else None
    steps = []
    step = model._batch_step
    model._batch_step = lambda tokens, seqs: (steps.append(1), step(tokens, seqs))[1]
    try:
        out = model.generate(prompt, eos_token_id=eos, pad_token_id=0, logits_processor=procs, **kw)
    finally:
        del model._batch_step
    return out, len(steps) + 1  # the first step's logits come from the prefill


def _reference(model, prompt, case, logits_fn):
    kw = {k: v for k, v in case.items() if k not in ("max_new_tokens", "num_beams", "eos", "boost")}
    boost = Boost(case["eos"], case["boost"]) if "boost" in case else None
    return hf_beam_search_ref(logits_fn(model), prompt, case["num_beams"], case["max_new_tokens"],
                              eos=case.get("eos", ()), pad=0, processor=boost, **kw)


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_beam_search_equals_reference_on_full_forward_logits(tiny_f32, case):
    # float32 weights: the KV-cached steps equal a full forward to float error
    for seed in range(6):
        prompt = np.random.default_rng(seed).integers(0, 96, PROMPT_LEN).tolist()
        got, steps = _generate(tiny_f32, prompt, case)
        want, want_steps = _reference(tiny_f32, prompt, case, full_forward)
        np.testing.assert_array_equal(got, want)
        assert steps == want_steps


@pytest.mark.parametrize("case", CASES[1:4], ids=["case1", "case2", "case3"])
def test_beam_search_over_batched_decode_equals_reference(tiny_q8, case):
    # Q8_0 weights take the batched decode path (decode_batch over sequences 1..K, copy_seq to reorder)
    assert tiny_q8._live().decode_batch_supported
    for seed in range(3):
        prompt = np.random.default_rng(10 + seed).integers(0, 96, PROMPT_LEN).tolist()
        got, steps = _generate(tiny_q8, prompt, case)
        want, want_steps = _reference(tiny_q8, prompt, case, incremental)
        np.testing.assert_array_equal(got, want)
        assert steps == want_steps


def test_beam_search_keeps_the_prompt_cache_and_batches_prompts(tiny_q8):
    p1, p2 = [4, 5, 6, 7, 8], [9, 10, 11]
    one = tiny_q8.generate(p1, num_beams=3, max_new_tokens=6)
    assert tiny_q8._cached == p1  # sequence 0 keeps the prompt: the next call reuses it
    assert tiny_q8._live().n_seq == 1  # the beams' caches are freed
    both = tiny_q8.generate([p1, p2], num_beams=3, max_new_tokens=6, num_return_sequences=2, pad_token_id=0)
    assert both.shape[0] == 4
    assert both[0].tolist() == one[0].tolist()
    alone = tiny_q8.generate(p2, num_beams=3, max_new_tokens=6, num_return_sequences=2, pad_token_id=0)
    np.testing.assert_array_equal(both[2:, 2:], alone)


def test_beam_search_with_one_cache_replays_prefixes(tiny_q8):
    # models without several caches (GPT-2) run beams through the prefix cache: same tokens
    want = tiny_q8.generate([1, 2, 3, 4, 5], num_beams=4, max_new_tokens=8, eos_token_id=[7, 11])
    tiny_q8._max_sequences = lambda: 1
    try:
        got = tiny_q8.generate([1, 2, 3, 4, 5], num_beams=4, max_new_tokens=8, eos_token_id=[7, 11])
    finally:
        del tiny_q8._max_sequences
    np.testing.assert_array_equal(got, want)


def test_beam_search_one_beam_returned_per_prompt_is_not_greedy(tiny_f32):
    prompt = [3, 1, 4, 1, 5]
    beams = tiny_f32.generate(prompt, num_beams=4, max_new_tokens=10)
    greedy = tiny_f32.generate(prompt, max_new_tokens=10)
    # beam search maximizes the summed log-probability: never below greedy's
    def logp(row):
        lp = _log_softmax(tiny_f32(row).logits[0].astype(np.float64))
        return float(sum(lp[t - 1, row[t]] for t in range(len(prompt), len(row))))
    assert logp(beams[0]) >= logp(greedy[0]) - 1e-4


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(num_beams=0), ValueError, "num_beams"),
    (dict(num_beams=2.0), ValueError, "num_beams"),
    (dict(num_beams=2, num_return_sequences=3), ValueError, "smaller or equal to num_beams"),
    (dict(num_beams=2, early_stopping="sometimes"), ValueError, "early_stopping"),
    (dict(num_beams=2, length_penalty="long"), ValueError, "length_penalty"),
    (dict(num_beams=2, do_sample=True), ValueError, "beam sampling"),
])
def test_bad_beam_arguments(tiny_f32, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tiny_f32.generate([1, 2, 3], max_new_tokens=4, **kwargs)


def test_beam_search_refuses_a_streamer(tiny_f32):
    from pyllm import TextStreamer
    from pyllm.tokenizers import CharTokenizer

    with pytest.raises(ValueError, match="streamer"):
        tiny_f32.generate([1, 2, 3], num_beams=2, max_new_tokens=4, streamer=TextStreamer(CharTokenizer("ab")))
    with pytest.raises(ValueError, match="num_beams"):
        tiny_f32.stream([1, 2, 3], tokenizer=CharTokenizer("ab"), num_beams=2)
