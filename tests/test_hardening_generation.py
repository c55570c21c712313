# generate()'s argument checks a hostile caller meets: logits processors that
# return the wrong shape or dtype, numpy integer seeds, a tiny temperature.
# Not the sampling distributions (test_logits_process.py).

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from pyllm import AutoModelForCausalLM

TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tiny", "llama3", "llama3-f32.gguf")
PROMPT = [1, 2, 3]


@pytest.fixture(scope="module")
def model() -> Any:
    with AutoModelForCausalLM.from_pretrained(TINY) as m:
        yield m


@pytest.mark.parametrize("do_sample", [False, True])
def test_processor_dropping_columns_is_refused(model, do_sample):
    def first_five(input_ids, scores):
        return scores[:, :5]

    with pytest.raises(ValueError, match=r"first_five returned scores of shape \(1, 5\), expected \(1, 384\)"):
        model.generate(PROMPT, max_new_tokens=2, do_sample=do_sample, logits_processor=[first_five])


def test_processor_returning_booleans_is_refused(model):
    def mask(input_ids, scores):
        return scores > 0

    with pytest.raises(TypeError, match="mask returned scores of dtype bool"):
        model.generate(PROMPT, max_new_tokens=2, logits_processor=[mask])


def test_processor_returning_float64_is_taken(model):
    def wider(input_ids, scores):
        return scores.astype(np.float64)

    want = model.generate(PROMPT, max_new_tokens=4)
    assert (model.generate(PROMPT, max_new_tokens=4, logits_processor=[wider]) == want).all()


@pytest.mark.parametrize("seed", [np.int64(5), np.int32(5), np.uint8(5)])
def test_numpy_integer_seeds(model, seed):
    want = model.generate(PROMPT, max_new_tokens=4, do_sample=True, seed=5)
    assert (model.generate(PROMPT, max_new_tokens=4, do_sample=True, seed=seed) == want).all()


@pytest.mark.parametrize("temperature", [1e-8, 1e-30])
def test_tiny_temperature_is_greedy(model, temperature):
    # scores / T overflow to +-inf for a tiny T: the largest score must still win (as greedy), not NaN
    want = model.generate(PROMPT, max_new_tokens=6)
    got = model.generate(PROMPT, max_new_tokens=6, do_sample=True, temperature=temperature, seed=0)
    assert (got == want).all()
