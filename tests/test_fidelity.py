"""Generation you can trust: greedy output equal to transformers + torch fp32
on the same GGUF file (references recorded by scripts/record_generation_refs.py),
and the logits generate reads equal, bit for bit, to model(ids).logits whatever
ran before on the model, the thread count, the prefill chunking and the batch.
Not tokenizer or sampler unit tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pyllm

from test_llama import TINY, Q, write_tiny_llama

REF = Path(__file__).parent / "data" / "smollm2_generation.json"
PROMPTS = json.loads(REF.read_text())["prompts"]
# float32 error between two fp32 implementations summing in different orders:
# measured up to 4.4e-5 on these logits (magnitude ~20); a wrong kernel is off by far more
LOGIT_TOL = 1e-3


class Record:
    """A logits processor that keeps a copy of every row of scores it sees."""

    def __init__(self):
        self.rows = []

    def __call__(self, input_ids, scores):
        self.rows.append(np.array(scores, dtype=np.float32, copy=True))
        return scores


def recorded(model, ids, **kw):
    rec = Record()
    out = model.generate(ids, logits_processor=[rec], **kw)
    return out, np.concatenate(rec.rows)


@pytest.mark.parametrize("p", PROMPTS, ids=[p["name"] for p in PROMPTS])
def test_greedy_generation_equals_transformers(smollm, p):
    ids, new = p["prompt_ids"], p["new_ids"]
    smollm.reset()
    out = smollm.generate(ids, max_new_tokens=len(new))
    assert out[0, len(ids):].tolist() == new
    # teacher-forced on the reference continuation: the ten largest logits of every position
    logits = smollm(np.array(ids + new)).logits[0, len(ids) - 1 : len(ids) + len(new) - 1]
    mine = np.take_along_axis(logits, np.array(p["top_ids"]), axis=1)
    err = float(np.abs(mine - np.array(p["top_logits"])).max())
    print(f"\n{p['name']}: {len(new)} tokens equal; top-10 logits within {err:.1e} of transformers; "
          f"smallest reference top-1 margin {min(p['margin']):.1e}")
    assert err <= LOGIT_TOL
    # every recorded step's choice was decided by more than the tolerance, so equality above is meaningful
    assert min(p["margin"]) > 2 * err


def test_generate_reads_the_forward_logits_bit_for_bit(smollm):
    # prompt logits (a prefill of 943 tokens: four chunks) and every decode step
    p = next(p for p in PROMPTS if p["name"] == "tempest")
    ids = p["prompt_ids"]
    smollm.reset()
    out, rows = recorded(smollm, ids, max_new_tokens=16)
    full = smollm(out[0]).logits[0]
    np.testing.assert_array_equal(rows, full[len(ids) - 1 : -1])


def test_same_call_same_answer_whatever_ran_before(smollm):
    p = next(p for p in PROMPTS if p["name"] == "sky")
    ids = p["prompt_ids"]
    smollm.reset()
    first, rows = recorded(smollm, ids, max_new_tokens=24)
    again, rows_again = recorded(smollm, ids, max_new_tokens=24)  # the cache holds the prompt now
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(rows, rows_again)
    smollm.generate(PROMPTS[0]["prompt_ids"], max_new_tokens=5)  # something else in between
    np.testing.assert_array_equal(recorded(smollm, ids, max_new_tokens=24)[1], rows)
    kw = dict(do_sample=True, temperature=0.9, top_p=0.95, seed=7, max_new_tokens=24)
    sampled = smollm.generate(ids, **kw)
    np.testing.assert_array_equal(smollm.generate(ids, **kw), sampled)
    smollm.reset()
    np.testing.assert_array_equal(smollm.generate(ids, **kw), sampled)


def test_same_answer_on_any_thread_count(smollm):
    ids = next(p for p in PROMPTS if p["name"] == "haiku")["prompt_ids"]
    before = pyllm.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            pyllm.set_num_threads(n)
            smollm.reset()
            runs.append(recorded(smollm, ids, max_new_tokens=12))
    finally:
        pyllm.set_num_threads(before)
    for out, rows in runs[1:]:
        np.testing.assert_array_equal(out, runs[0][0])
        np.testing.assert_array_equal(rows, runs[0][1])


def test_prefill_chunking_does_not_change_the_logits(smollm):
    ids = np.array(next(p for p in PROMPTS if p["name"] == "tempest")["prompt_ids"][:600])
    full = smollm(ids).logits[0]
    smollm.reset()
    parts = [smollm.step(ids[a:b], all_logits=True) for a, b in [(0, 1), (1, 7), (7, 300), (300, 555), (555, 600)]]
    np.testing.assert_array_equal(np.concatenate(parts), full)


def test_batched_sequences_get_their_alone_answers(smollm):
    # several prompts decode together in one batched step (sampled batches: tests/test_generation.py)
    prompts = [p["prompt_ids"] for p in PROMPTS[:3]]
    together = smollm.generate(prompts, max_new_tokens=10)
    width = max(map(len, prompts))
    for r, ids in enumerate(prompts):
        alone = smollm.generate(ids, max_new_tokens=10)[0]  # may stop early at eos, the batch pads after
        np.testing.assert_array_equal(together[r, width - len(ids):][: len(alone)], alone)


@pytest.mark.parametrize("wtype", [Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.F16, Q.F32], ids=lambda t: t.name)
def test_every_path_gives_the_same_bits_tiny(isa, tmp_path, wtype):
    # on every ISA: one prefill, chunks, one-token steps and a batched step
    # give a position the same logits
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path, wtype, tied=False)
    model = pyllm.AutoModelForCausalLM.from_pretrained(path)
    ids = np.random.default_rng(5).integers(0, TINY["vocab_size"], size=21)
    full = model(ids).logits[0]
    model.reset()
    steps = [model.step(ids[:3], all_logits=True)] + [model.step(ids[t : t + 1])[None] for t in range(3, 21)]
    np.testing.assert_array_equal(np.concatenate(steps), full)
    if model._live().decode_batch_supported:
        live = model._live()
        live.set_n_seq(3)
        for s, n in ((1, 9), (2, 14)):
            live.forward(ids[:n].astype(np.int32), False, s)
        live.truncate(20, 0)
        batch = live.decode_batch(np.array([ids[20], ids[9], ids[14]], np.int32), np.array([0, 1, 2], np.int64))
        np.testing.assert_array_equal(batch, full[[20, 9, 14]])
        live.set_n_seq(1)
