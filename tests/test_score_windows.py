# model.score's sliding window against transformers + torch run over the same windows, the way
# transformers' "Perplexity of fixed-length models" does it. Not generation; not the CLI's output format.

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pyllm import AutoModelForCausalLM, cli

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TINY = Path(__file__).parent / "data" / "tiny"
N_CTX = 16


def reference(hf_dir: Path, ids: np.ndarray, n_ctx: int, stride: int) -> np.ndarray:
    """log p(ids[t+1] | window) for every target transformers' loop scores, NaN elsewhere; checks
    that the targets picked are the ones its masked loss covers (outputs.loss is their mean)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
    model.eval()
    seq = torch.tensor(ids[None, :], dtype=torch.long)
    out = np.full(len(ids) - 1, np.nan)
    prev_end = 0
    for begin in range(0, len(ids), stride):  # as the transformers docs loop
        end = min(begin + n_ctx, len(ids))
        trg_len = end - prev_end
        input_ids = seq[:, begin:end]
        labels = input_ids.clone()
        labels[:, :-trg_len] = -100
        with torch.no_grad():
            res = model(input_ids, labels=labels)
        lp = torch.log_softmax(res.logits[0].double(), dim=-1)
        picked = []
        for p in range(1, end - begin):  # the loss shifts: position p-1 predicts token p
            if labels[0, p] != -100:
                t = begin + p
                assert np.isnan(out[t - 1]), "a target scored twice"
                out[t - 1] = float(lp[p - 1, int(seq[0, t])])
                picked.append(out[t - 1])
        if picked:  # the masked mean loss transformers reports is the mean of exactly these
            assert -np.mean(picked) == pytest.approx(float(res.loss), rel=1e-5, abs=1e-5)
        prev_end = end
        if end == len(ids):
            break
    return out


@pytest.fixture(scope="module", params=["llama3", "gpt2"])
def pair(request):
    hf = TINY / request.param / "hf"
    return hf, AutoModelForCausalLM.from_pretrained(hf, n_ctx=N_CTX)


@pytest.mark.parametrize("stride", [N_CTX, N_CTX - 1, 5, 1])
def test_score_matches_transformers_windows(pair, stride):
    hf, model = pair
    vocab = json.loads((hf / "config.json").read_text())["vocab_size"]
    ids = np.random.default_rng(stride).integers(0, vocab, size=3 * N_CTX + 5)
    want = reference(hf, ids, N_CTX, stride)
    res = model.score(ids, stride=stride)
    assert res.logprobs.shape == (len(ids) - 1,)
    np.testing.assert_array_equal(np.isnan(res.logprobs), np.isnan(want))  # the same targets scored
    np.testing.assert_allclose(res.logprobs, want, rtol=1e-4, atol=1e-4)  # NaN == NaN here
    done = ~np.isnan(want)
    assert res.scored.tolist() == done.tolist()
    assert res.perplexity == pytest.approx(math.exp(-want[done].mean()), rel=1e-4)
    assert res.nll == pytest.approx(-want[done].mean(), rel=1e-4)
    if stride < N_CTX:
        assert done.all()  # overlapping windows score every token after the first
    else:
        # disjoint windows: the first token of each later window has no context
        assert np.flatnonzero(~done).tolist() == [t - 1 for t in range(N_CTX, len(ids), N_CTX)]


def test_cli_perplexity_at_stride_n_ctx(tmp_path, capsys):
    hf = TINY / "gpt2" / "hf"
    text = "the cat sat on the mat and then the dog sat on the cat; " * 8
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    assert cli.main(["perplexity", str(path), "--model", str(hf), "--n-ctx", str(N_CTX), "--stride", str(N_CTX),
                     "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = AutoModelForCausalLM.from_pretrained(hf, n_ctx=N_CTX)
    ids = np.asarray(model.tokenizer.encode(text, add_special_tokens=False))
    want = reference(hf, ids, N_CTX, N_CTX)
    done = ~np.isnan(want)
    assert out["tokens"] == len(ids) and out["scored"] == int(done.sum())
    assert out["perplexity"] == pytest.approx(math.exp(-want[done].mean()), rel=1e-4)
