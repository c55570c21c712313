# Tests of pyllm.generation's logits processors and sampler against the numpy reference, against
# transformers' classes, and fused-vs-one-by-one on many seeds. Not a speed test (bench/sampler.py).
from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyllm.generation.logits_process as lp
from pyllm.generation import sampling_ref as ref
from pyllm.generation.logits_process import (
    FrequencyPresencePenaltyLogitsProcessor,
    LogitsProcessor,
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    build_logits_processors,
    sample,
)

torch = pytest.importorskip("torch")
hf = pytest.importorskip("transformers.generation.logits_process")

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- helpers

def random_case(seed, B=None, V=None, T=None, ties=False, neg_inf=0.0):
    """scores (B,V) float32 and ids (B,T) with repeats, so penalties and n-grams have work."""
    rng = np.random.default_rng(seed)
    B = B or int(rng.integers(1, 4))
    V = V or int(rng.choice([1, 2, 7, 33, 100, 1023]))
    T = int(rng.integers(0, 40)) if T is None else T
    if ties:
        scores = rng.integers(-3, 4, size=(B, V)).astype(np.float32)
    else:
        scores = (rng.standard_normal((B, V)) * rng.choice([0.5, 2.0, 8.0])).astype(np.float32)
    if neg_inf:
        scores[rng.random((B, V)) < neg_inf] = -np.inf
    ids = rng.integers(0, max(1, min(V, 12)), size=(B, T))  # small alphabet: repeats and n-grams recur
    return scores, ids


def assert_same_scores(got, want, rtol=1e-6):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg="-inf pattern differs")
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=1e-6)


def run_hf(proc, scores, ids):
    out = proc(torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)), torch.from_numpy(scores.copy()))
    return out.numpy()


# (ours, reference, transformers) for one parameter setting of each processor
def cases():
    yield "temperature", TemperatureLogitsWarper(0.7), lambda s, i: ref.temperature(s, 0.7), \
        hf.TemperatureLogitsWarper(0.7)
    yield "top_k", TopKLogitsWarper(5), lambda s, i: ref.top_k(s, 5), hf.TopKLogitsWarper(5)
    yield "top_k_keep", TopKLogitsWarper(2, min_tokens_to_keep=4), lambda s, i: ref.top_k(s, 2, 4), \
        hf.TopKLogitsWarper(2, min_tokens_to_keep=4)
    yield "top_p", TopPLogitsWarper(0.8), lambda s, i: ref.top_p(s, 0.8), hf.TopPLogitsWarper(0.8)
    yield "top_p_keep", TopPLogitsWarper(0.1, min_tokens_to_keep=3), lambda s, i: ref.top_p(s, 0.1, 3), \
        hf.TopPLogitsWarper(0.1, min_tokens_to_keep=3)
    yield "min_p", MinPLogitsWarper(0.1), lambda s, i: ref.min_p(s, 0.1), hf.MinPLogitsWarper(0.1)
    yield "min_p_keep", MinPLogitsWarper(0.9, min_tokens_to_keep=2), lambda s, i: ref.min_p(s, 0.9, 2), \
        hf.MinPLogitsWarper(0.9, min_tokens_to_keep=2)
    yield "typical", TypicalLogitsWarper(0.7), lambda s, i: ref.typical(s, 0.7), hf.TypicalLogitsWarper(0.7)
    yield "typical_keep", TypicalLogitsWarper(0.2, min_tokens_to_keep=3), lambda s, i: ref.typical(s, 0.2, 3), \
        hf.TypicalLogitsWarper(0.2, min_tokens_to_keep=3)
    yield "repetition", RepetitionPenaltyLogitsProcessor(1.3), lambda s, i: ref.repetition_penalty(s, i, 1.3), \
        hf.RepetitionPenaltyLogitsProcessor(1.3)
    yield "repetition_reward", RepetitionPenaltyLogitsProcessor(0.5, prompt_ignore_length=3), \
        lambda s, i: ref.repetition_penalty(s, i, 0.5, 3), \
        hf.RepetitionPenaltyLogitsProcessor(0.5, prompt_ignore_length=3)
    for n in (1, 2, 3):
        yield f"ngram{n}", NoRepeatNGramLogitsProcessor(n), lambda s, i, n=n: ref.no_repeat_ngram(s, i, n), \
            hf.NoRepeatNGramLogitsProcessor(n)
    yield "min_new", MinNewTokensLengthLogitsProcessor(4, 30, [0, 2]), \
        lambda s, i: ref.min_new_tokens(s, i, 4, 30, [0, 2]), hf.MinNewTokensLengthLogitsProcessor(4, 30, [0, 2])
    yield "freq_presence", FrequencyPresencePenaltyLogitsProcessor(0.3, 0.5), \
        lambda s, i: ref.frequency_presence_penalty(s, i, 0.3, 0.5), None


CASES = list(cases())


# ---------------------------------------------------------------- each processor: reference and transformers

@pytest.mark.parametrize("name,ours,reference,theirs", CASES, ids=[c[0] for c in CASES])
@given(seed=st.integers(0, 2**32 - 1))
@FUZZ
def test_processor_matches_reference_and_transformers(name, ours, reference, theirs, seed):
    scores, ids = random_case(seed)
    before = scores.copy()
    got = ours(ids, scores)
    np.testing.assert_array_equal(scores, before)  # input untouched
    assert_same_scores(got, reference(scores, ids))
    if theirs is not None and scores.shape[1] > 1:
        want = run_hf(theirs, scores, ids)
        if name.startswith("typical"):
            want = typical_near_ties_as_ours(got, want, scores)
        assert_same_scores(got, want)


def typical_near_ties_as_ours(got, want, scores):
    """The typical warper ranks tokens by |-log p - entropy|; where two tokens' distances agree
    to float32 rounding (1e-6 relative), torch's float order and ours may keep a different one of
    them at the cut: such swaps are taken as agreement, any other difference is kept."""
    want = want.copy()
    for b in range(scores.shape[0]):
        diff = np.flatnonzero(np.isneginf(got[b]) != np.isneginf(want[b]))
        if diff.size == 0:
            continue
        logp = scores[b].astype(np.float64) - np.log(np.exp(scores[b].astype(np.float64)).sum())
        dist = np.abs(-logp - (-(np.exp(logp) * logp).sum()))
        kept_ours, kept_theirs = diff[~np.isneginf(got[b, diff])], diff[~np.isneginf(want[b, diff])]
        if kept_ours.size == kept_theirs.size and np.allclose(np.sort(dist[kept_ours]), np.sort(dist[kept_theirs]),
                                                              rtol=1e-6, atol=0):
            want[b, diff] = got[b, diff]
    return want


@pytest.mark.parametrize("name,ours,reference,theirs", CASES, ids=[c[0] for c in CASES])
@given(seed=st.integers(0, 2**32 - 1), neg_inf=st.sampled_from([0.3, 0.9]))
@FUZZ
def test_processor_matches_reference_with_ties_and_neg_inf(name, ours, reference, theirs, seed, neg_inf):
    # transformers breaks ties at the top-p/typical boundary in whatever order its sort leaves them;
    # ours ranks lower ids first, exactly as the reference does
    scores, ids = random_case(seed, ties=True, neg_inf=neg_inf)
    assert_same_scores(ours(ids, scores), reference(scores, ids))


def test_processors_on_full_vocab_match_transformers():
    scores, ids = random_case(7, B=2, V=49152, T=300)
    for _name, ours, reference, theirs in CASES:
        got = ours(ids, scores)
        assert_same_scores(got, reference(scores, ids))
        if theirs is not None:
            assert_same_scores(got, run_hf(theirs, scores, ids))


def test_top_k_keeps_every_tie_with_the_kth():
    s = np.array([[1.0, 3.0, 2.0, 2.0, 0.0]], np.float32)
    assert np.isfinite(TopKLogitsWarper(2)(None, s)).tolist() == [[False, True, True, True, False]]


def test_top_p_keeps_smallest_set_reaching_p():
    logits = np.log(np.array([[0.1, 0.5, 0.25, 0.15]], np.float32))
    keep = lambda p: np.isfinite(TopPLogitsWarper(p)(None, logits))[0].tolist()  # noqa: E731
    assert keep(0.5) == [False, True, False, False]
    assert keep(0.6) == [False, True, True, False]
    assert keep(0.9) == [False, True, True, True]
    assert keep(1.0) == [True, True, True, True]


def test_frequency_presence_counts():
    s = np.zeros((2, 4), np.float32)
    ids = np.array([[1, 1, 1, 3], [0, 2, 2, 2]])
    out = FrequencyPresencePenaltyLogitsProcessor(1.0, 0.25)(ids, s)
    assert out.tolist() == [[0.0, -3.25, 0.0, -1.25], [-1.25, 0.0, -3.25, 0.0]]


def test_rows_use_their_own_history():
    s = np.ones((2, 5), np.float32)
    ids = np.array([[0, 1, 0, 1], [3, 3, 4, 3]])
    out = RepetitionPenaltyLogitsProcessor(2.0)(ids, s)
    assert out.tolist() == [[0.5, 0.5, 1, 1, 1], [1, 1, 1, 0.5, 0.5]]
    out = NoRepeatNGramLogitsProcessor(2)(ids, s)  # row 0: "1 0" seen; row 1: "3 3" and "3 4" seen
    assert np.isneginf(out).tolist() == [[True, False, False, False, False], [False, False, False, True, True]]


# ---------------------------------------------------------------- sampling

def test_greedy_lowest_id_on_ties_like_torch():
    s = np.array([[0.0, 2.0, 2.0, 1.0], [5.0, 5.0, 5.0, 5.0], [-np.inf] * 4], np.float32)
    got = sample(s, do_sample=False)
    assert got.tolist() == torch.argmax(torch.from_numpy(s), dim=-1).tolist() == [1, 0, 0]
    assert got.dtype == np.int64


@given(seed=st.integers(0, 2**32 - 1), neg_inf=st.sampled_from([0.0, 0.5, 0.99]))
@FUZZ
def test_sample_matches_reference(seed, neg_inf):
    scores, _ = random_case(seed, neg_inf=neg_inf)
    scores[:, 0] = 1.0  # at least one finite score per row
    u = np.random.default_rng(seed).random(scores.shape[0])
    assert sample(scores, np.random.default_rng(seed)).tolist() == ref.sample(scores, u).tolist()


def test_sample_is_reproducible_and_draws_one_uniform_per_row():
    scores, _ = random_case(3, B=3, V=1000)
    a = sample(scores, np.random.default_rng(123))
    g = np.random.default_rng(123)
    b = sample(scores, g)
    assert a.tolist() == b.tolist()
    h = np.random.default_rng(123)
    h.random(3)
    assert g.random() == h.random()  # exactly B uniforms were drawn


def test_sample_follows_the_distribution():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    scores = np.tile(np.log(probs).astype(np.float32), (20000, 1))
    freq = np.bincount(sample(scores, np.random.default_rng(0)), minlength=4) / 20000
    np.testing.assert_allclose(freq, probs, atol=0.015)


def test_sample_edge_cases():
    g = np.random.default_rng(0)
    assert sample(np.zeros((3, 1), np.float32), g).tolist() == [0, 0, 0]  # V = 1
    only = np.full((4, 50), -np.inf, np.float32)
    only[np.arange(4), [3, 0, 49, 7]] = -100.0
    assert sample(only, g).tolist() == [3, 0, 49, 7]
    with pytest.raises(ValueError, match="every score is -inf"):
        sample(np.full((2, 5), -np.inf, np.float32), g)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        sample(np.zeros((1, 3), np.float32), 42)
    with pytest.raises(ValueError, match="shape"):
        sample(np.zeros(3, np.float32), g)


# ---------------------------------------------------------------- fused path == processors then sample

def outcome(fn):
    """The tokens, or the error message when every score of a row was banned."""
    try:
        return fn().tolist()
    except ValueError as e:
        return str(e)


def random_config(rng):
    kw = dict(do_sample=bool(rng.random() < 0.8))
    if rng.random() < 0.7:
        kw["temperature"] = float(rng.choice([0.05, 0.3, 0.7, 1.0, 1.5, 3.0]))
    if rng.random() < 0.7:
        kw["top_k"] = int(rng.choice([0, 1, 2, 5, 50, 200, 5000]))
    if rng.random() < 0.7:
        kw["top_p"] = float(rng.choice([0.05, 0.5, 0.9, 0.99, 1.0]))
    if rng.random() < 0.3:
        kw["min_p"] = float(rng.choice([0.0, 0.05, 0.5, 1.0]))
    if rng.random() < 0.5:
        kw["repetition_penalty"] = float(rng.choice([0.8, 1.1, 1.5]))
    if rng.random() < 0.3:
        kw["frequency_penalty"] = float(rng.choice([-0.5, 0.3]))
        kw["presence_penalty"] = float(rng.choice([0.0, 0.7]))
    if rng.random() < 0.3:
        kw["no_repeat_ngram_size"] = int(rng.choice([1, 2, 3]))
    if rng.random() < 0.3:
        kw.update(min_new_tokens=int(rng.integers(1, 50)), eos_token_id=[0, 1], prompt_length=int(rng.integers(0, 20)))
    if rng.random() < 0.2:
        kw["min_tokens_to_keep"] = int(rng.integers(1, 6))
    return kw


@pytest.mark.parametrize("seed", range(400))
def test_fused_sample_equals_processors_then_sample(seed):
    rng = np.random.default_rng(seed)
    kw = random_config(rng)
    V = int(rng.choice([1, 3, 17, 64, 1000, 4099]))
    scores, ids = random_case(seed, V=V, ties=bool(seed % 3 == 0), neg_inf=float(rng.choice([0, 0, 0.5, 0.97])))
    scores[:, int(rng.integers(V))] = 0.5  # keep a finite score per row
    procs = build_logits_processors(**kw)
    assert procs._fused_plan() is not None
    fused = outcome(lambda: procs.sample(ids, scores, np.random.default_rng(seed), do_sample=kw["do_sample"]))
    slow = outcome(lambda: sample(procs(ids, scores), np.random.default_rng(seed), do_sample=kw["do_sample"]))
    assert fused == slow, kw


def test_fused_scratch_reuse_is_invisible():
    # the per-thread work buffer keeps whatever the last call left in it; a
    # buffer full of garbage, one that is too small, or none give the same tokens
    from pyllm.generation import _sampler

    scores, ids = random_case(3, B=2, V=4099, T=40)
    for kw in (dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, repetition_penalty=1.3),
               dict(do_sample=False, repetition_penalty=1.3), dict(do_sample=False)):
        procs = build_logits_processors(**kw)
        fused = procs._fused_args()
        outs = []
        for scratch in (None, np.full(_sampler.fused_scratch_bytes(4099, 40) // 8 + 1, 0x7FF8DEADBEEF0001, np.uint64),
                        np.zeros(16, np.uint64)):
            out = np.empty(2, np.int64)
            u = np.random.default_rng(0).random(2)
            before = scores.copy()
            assert _sampler.fused_sample(scores, ids, *fused, u, kw["do_sample"], out, scratch) == -1
            np.testing.assert_array_equal(scores, before)  # read in place or copied, never written
            outs.append(out.tolist())
        assert outs[0] == outs[1] == outs[2], kw
        assert outs[0] == sample(procs(ids, scores), np.random.default_rng(0), do_sample=kw["do_sample"]).tolist()


@pytest.mark.parametrize("seed", range(6))
def test_fused_default_settings_full_vocab(seed):
    scores, ids = random_case(seed, B=2, V=49152, T=300, ties=seed % 2 == 1)
    procs = build_logits_processors(do_sample=True, temperature=0.7, top_k=50, top_p=0.9, repetition_penalty=1.1)
    for draw in range(20):
        fused = procs.sample(ids, scores, np.random.default_rng(1000 * seed + draw))
        slow = sample(procs(ids, scores), np.random.default_rng(1000 * seed + draw))
        assert fused.tolist() == slow.tolist()


def test_fused_top_p_without_top_k_sorts_past_the_first_rounds():
    # flat logits: the nucleus needs most of the vocabulary, so the partial ranking must grow
    rng = np.random.default_rng(5)
    scores = (rng.standard_normal((2, 20000)) * 0.01).astype(np.float32)
    procs = build_logits_processors(do_sample=True, top_p=0.95)
    assert np.isfinite(procs(np.zeros((2, 0), np.int64), scores)).sum() > 30000
    for seed in range(10):
        a = procs.sample(np.zeros((2, 0), np.int64), scores, np.random.default_rng(seed))
        b = sample(procs(np.zeros((2, 0), np.int64), scores), np.random.default_rng(seed))
        assert a.tolist() == b.tolist()


def test_fused_handles_temperature_rounding_ties_at_the_kth():
    # scores that differ in the last bit become equal after dividing by the temperature
    base = np.float32(1.0)
    near = [base]
    for _ in range(8):
        near.append(np.nextafter(near[-1], np.float32(0)))
    scores = np.array([near[::-1] + [np.float32(-5.0)] * 8], np.float32)
    for t in (0.3, 0.7, 3.0, 7.0):
        for k in range(1, 10):
            procs = build_logits_processors(do_sample=True, temperature=t, top_k=k)
            for seed in range(5):
                a = procs.sample(np.zeros((1, 0), np.int64), scores, np.random.default_rng(seed))
                b = sample(procs(np.zeros((1, 0), np.int64), scores), np.random.default_rng(seed))
                assert a.tolist() == b.tolist(), (t, k, seed)


def test_lists_that_cannot_fuse_still_give_the_same_tokens():
    scores, ids = random_case(11, B=2, V=300, T=20)
    ban_five = lambda input_ids, s: np.where(np.arange(s.shape[1]) == 5, -np.inf, s).astype(np.float32)  # noqa: E731
    lists = [
        LogitsProcessorList([TopPLogitsWarper(0.9), TopKLogitsWarper(10)]),  # out of the fused order
        LogitsProcessorList([TemperatureLogitsWarper(0.5), RepetitionPenaltyLogitsProcessor(1.2)]),
        build_logits_processors(do_sample=True, typical_p=0.8, top_k=20),
        build_logits_processors(do_sample=True, top_k=20, logits_processor=[ban_five]),
    ]
    for procs in lists:
        assert procs._fused_plan() is None
        for seed in range(5):
            a = procs.sample(ids, scores, np.random.default_rng(seed))
            b = sample(procs(ids, scores), np.random.default_rng(seed))
            assert a.tolist() == b.tolist()
    out = lists[-1](ids, scores)
    assert np.isneginf(out[:, 5]).all()


def test_user_processor_subclass_in_list():
    class Ban(LogitsProcessor):
        def __call__(self, input_ids, scores):
            out = np.array(scores, np.float32)
            out[:, 0] = -np.inf
            return out

    procs = LogitsProcessorList([Ban(), TopKLogitsWarper(1)])
    s = np.array([[9.0, 1.0, 2.0]], np.float32)
    assert procs.sample(np.zeros((1, 0), np.int64), s, np.random.default_rng(0)).tolist() == [2]


def test_fused_edge_cases():
    g = lambda: np.random.default_rng(0)  # noqa: E731
    none = np.zeros((1, 0), np.int64)
    one = build_logits_processors(do_sample=True, temperature=0.5, top_k=3, top_p=0.5, min_p=0.1)
    assert one.sample(none, np.array([[2.0]], np.float32), g()).tolist() == [0]  # V = 1, top_k > V
    s = np.full((1, 100), -np.inf, np.float32)
    s[0, 42] = 3.0
    assert one.sample(none, s, g()).tolist() == [42]
    with pytest.raises(ValueError, match="every score is -inf"):
        one.sample(none, np.full((1, 5), -np.inf, np.float32), g())
    banned_all = build_logits_processors(do_sample=True, no_repeat_ngram_size=1)
    with pytest.raises(ValueError, match="every score is -inf"):
        banned_all.sample(np.array([[0, 1, 2]]), np.zeros((1, 3), np.float32), g())
    greedy = build_logits_processors(repetition_penalty=10.0)
    assert greedy.sample(np.array([[1]]), np.array([[0.0, 5.0, 1.0]], np.float32), do_sample=False).tolist() == [2]
    assert build_logits_processors(do_sample=True, top_p=1.0) == []


# ---------------------------------------------------------------- building and validation

def test_build_order_matches_transformers():
    procs = build_logits_processors(
        do_sample=True, temperature=0.7, top_k=50, top_p=0.9, min_p=0.05, typical_p=0.95,
        repetition_penalty=1.1, frequency_penalty=0.1, no_repeat_ngram_size=3, min_new_tokens=5,
        eos_token_id=2, prompt_length=10)
    assert [type(p).__name__ for p in procs] == [
        "RepetitionPenaltyLogitsProcessor", "FrequencyPresencePenaltyLogitsProcessor",
        "NoRepeatNGramLogitsProcessor", "MinNewTokensLengthLogitsProcessor", "TemperatureLogitsWarper",
        "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper"]
    theirs = hf.LogitsProcessorList([
        hf.RepetitionPenaltyLogitsProcessor(1.1), hf.NoRepeatNGramLogitsProcessor(3),
        hf.MinNewTokensLengthLogitsProcessor(10, 5, 2), hf.TemperatureLogitsWarper(0.7), hf.TopKLogitsWarper(50),
        hf.TopPLogitsWarper(0.9), hf.MinPLogitsWarper(0.05), hf.TypicalLogitsWarper(0.95)])
    ours = LogitsProcessorList(p for p in procs if not isinstance(p, FrequencyPresencePenaltyLogitsProcessor))
    scores, ids = random_case(2, B=2, V=5000, T=12)
    assert_same_scores(ours(ids, scores), run_hf(theirs, scores, ids))


@pytest.mark.parametrize("make,match", [
    (lambda: TemperatureLogitsWarper(0.0), "temperature must be > 0.*greedy"),
    (lambda: TemperatureLogitsWarper(-1.0), "temperature must be > 0"),
    (lambda: TemperatureLogitsWarper(float("nan")), "temperature must be a finite number"),
    (lambda: TopKLogitsWarper(-1), "top_k must be an integer >= 0"),
    (lambda: TopKLogitsWarper(2.5), "top_k must be an integer"),
    (lambda: TopKLogitsWarper(5, min_tokens_to_keep=0), "min_tokens_to_keep must be an integer >= 1"),
    (lambda: TopPLogitsWarper(0.0), r"top_p must be in \(0, 1\]"),
    (lambda: TopPLogitsWarper(1.5), r"top_p must be in \(0, 1\]"),
    (lambda: MinPLogitsWarper(-0.1), r"min_p must be in \[0, 1\]"),
    (lambda: MinPLogitsWarper(1.1), r"min_p must be in \[0, 1\]"),
    (lambda: TypicalLogitsWarper(0.0), r"typical_p \(mass\) must be in \(0, 1\]"),
    (lambda: RepetitionPenaltyLogitsProcessor(0.0), "repetition_penalty must be > 0"),
    (lambda: RepetitionPenaltyLogitsProcessor(1.1, prompt_ignore_length=-1), "prompt_ignore_length"),
    (lambda: FrequencyPresencePenaltyLogitsProcessor(float("inf")), "frequency_penalty must be a finite"),
    (lambda: NoRepeatNGramLogitsProcessor(-2), "no_repeat_ngram_size must be an integer >= 0"),
    (lambda: MinNewTokensLengthLogitsProcessor(0, -1, 2), "min_new_tokens must be an integer >= 0"),
    (lambda: MinNewTokensLengthLogitsProcessor(0, 1, []), "eos_token_id"),
    (lambda: build_logits_processors(min_new_tokens=3, eos_token_id=2), "prompt_length"),
    (lambda: build_logits_processors(do_sample=True, temperature=0.0), "greedy"),
    (lambda: build_logits_processors(do_sample=True, top_p=2.0), "top_p"),
])
def test_invalid_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="input_ids must have shape"):
        RepetitionPenaltyLogitsProcessor(1.1)(np.zeros((3, 4), np.int64), np.zeros((2, 5), np.float32))


def test_docstring_examples():
    result = doctest.testmod(lp, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0


def test_processors_are_immutable_and_the_fused_plan_follows_list_edits():
    procs = build_logits_processors(do_sample=True, top_k=1)
    with pytest.raises(AttributeError, match="immutable"):
        procs[0].top_k = 5
    s = np.array([[0.0, 3.0, 1.0]], np.float32)
    none = np.zeros((1, 0), np.int64)
    assert procs.sample(none, s, np.random.default_rng(0)).tolist() == [1]
    procs.insert(0, RepetitionPenaltyLogitsProcessor(100.0))
    assert procs.sample(np.array([[1]]), s, np.random.default_rng(0)).tolist() == [2]
    procs[1] = TopKLogitsWarper(3)
    procs.append(lambda ids, x: np.where(np.arange(3) == 0, x, -np.inf).astype(np.float32))
    assert procs._fused_args() is None
    assert procs.sample(np.array([[1]]), s, np.random.default_rng(0)).tolist() == [0]
