"""Every GGUF file type llama.cpp's quantizer writes (Q2_K ... Q8_0, IQ4_NL,
IQ4_XS), made from the default model by llama.cpp itself, loads in pyllm and
answers what transformers + torch fp32 answers on the same file: the greedy
continuation of a chat question, and the ten largest logits at every step to
float32 error. The reference is scripts/record_mixture_refs.py's record when
the file made here has the recorded sha256, else transformers run live.
Needs llama-cpp-python (the test extra installs it)."""

from __future__ import annotations

import json
from pathlib import Path

import mixtures
import numpy as np
import pytest

REF = json.loads((Path(__file__).parent / "data" / "smollm2_mixtures.json").read_text())
LOGIT_TOL = 1e-3  # as tests/test_fidelity.py: fp32 implementations summing in different orders


@pytest.fixture(scope="session")
def mixture_dir(smollm_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python makes the files (pip install '.[test]')")
    return mixtures.mixture_dir(smollm_path)


def test_the_record_covers_every_mixture():
    assert list(REF["files"]) == mixtures.MIXTURES


@pytest.mark.parametrize("name", mixtures.MIXTURES)
def test_mixture_matches_transformers(name, smollm_path, mixture_dir):
    from pyllm import AutoModelForCausalLM

    path = mixtures.make_mixture(smollm_path, name, mixture_dir)
    rec = REF["files"][name]
    types = mixtures.tensor_types(path)
    prompt = REF["prompt_ids"]
    if mixtures.sha256(path) == rec["sha256"]:
        ref = rec
    else:  # another llama.cpp build quantized differently: ask transformers now
        print(f"\n{name}: the file differs from the recorded one; transformers runs live")
        ref = mixtures.transformers_reference(path, prompt, len(rec["new_ids"]))
    # the K recipes' fallbacks: the types the record saw, whatever the build
    assert types == rec["tensor_types"]

    model = AutoModelForCausalLM.from_pretrained(path)
    new = ref["new_ids"]
    out = model.generate(prompt, max_new_tokens=len(new), min_new_tokens=len(new))
    assert out[0, len(prompt):].tolist() == new
    logits = model(np.array(prompt + new)).logits[0, len(prompt) - 1 : len(prompt) + len(new) - 1]
    mine = np.take_along_axis(logits, np.array(ref["top_ids"]), axis=1)
    err = float(np.abs(mine - np.array(ref["top_logits"])).max())
    print(f"\n{name} {types}: {len(new)} greedy tokens equal; top-10 logits within {err:.1e}; "
          f"smallest top-1 margin {min(ref['margin']):.2e}")
    assert err <= LOGIT_TOL
    # a near tie would make greedy equality luck: every step was decided by more than the error
    assert min(ref["margin"]) > 2 * err
