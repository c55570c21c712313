"""Code a transformers user writes, with only the import changed, against transformers itself on the
same GGUF file (SmolLM2): tokenizer calls, generate (max_length, beams, tokenizer output), loss,
pipeline, from_pretrained arguments, and the bad inputs that must name what was wrong."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import pyllm
from pyllm import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, pipeline

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

TEXTS = ["Hello", "The capital of France is", "Hi there, how are you doing today?", "<|im_start|>user\nHi"]


@pytest.fixture(scope="module")
def torch_one_thread():
    # torch's threads spin against pyllm's and other jobs on a shared 2-core machine (20x slower here)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hf_tok(smollm_path):
    return transformers.AutoTokenizer.from_pretrained(str(smollm_path.parent), gguf_file=smollm_path.name)


@pytest.fixture(scope="module")
def hf_model(smollm_path, torch_one_thread):
    pytest.importorskip("accelerate")  # transformers needs it to load GGUF files
    model = transformers.AutoModelForCausalLM.from_pretrained(str(smollm_path.parent), gguf_file=smollm_path.name,
                                                              dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer(smollm_path):
    return AutoTokenizer.from_pretrained(smollm_path)


def _as_lists(enc):
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in enc.items()}


# ---- 1. the tokenizer

@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(padding=True),
    dict(padding="longest", return_tensors="np"),
    dict(padding="max_length", max_length=12, truncation=True),
    dict(truncation=True, max_length=3),
    dict(padding=True, truncation=True, max_length=5, return_tensors="pt"),
    dict(padding=True, padding_side="left", return_tensors="np"),
    dict(padding=True, pad_to_multiple_of=8),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_tokenizer_call_equals_transformers(tokenizer, hf_tok, kwargs):
    ours, ref = tokenizer(TEXTS, **kwargs), hf_tok(TEXTS, **kwargs)
    assert set(ours.keys()) == {"input_ids", "attention_mask"}
    assert _as_lists(ours) == {k: _as_lists(ref)[k] for k in ("input_ids", "attention_mask")}
    if kwargs.get("return_tensors") == "pt":
        assert isinstance(ours.input_ids, torch.Tensor) and ours.input_ids.dtype == torch.int64
    if kwargs.get("return_tensors") == "np":
        assert isinstance(ours["input_ids"], np.ndarray) and ours.attention_mask.shape == ref["attention_mask"].shape
    one, one_ref = tokenizer(TEXTS[1], **kwargs), hf_tok(TEXTS[1], **kwargs)
    assert _as_lists(one) == {k: _as_lists(one_ref)[k] for k in ("input_ids", "attention_mask")}


def test_tokenizer_pads_on_the_side_transformers_does(tokenizer, hf_tok, smollm_path):
    assert tokenizer.padding_side == hf_tok.padding_side == "right"
    assert tokenizer.pad_token_id == hf_tok.pad_token_id
    left = AutoTokenizer.from_pretrained(smollm_path, padding_side="left")
    hf_tok.padding_side = "left"
    try:
        assert _as_lists(left(TEXTS, padding=True)) == _as_lists(hf_tok(TEXTS, padding=True))
    finally:
        hf_tok.padding_side = "right"


def test_encode_return_tensors(tokenizer, hf_tok, monkeypatch):
    text = "Hello world, this is pyllm."
    ids = tokenizer.encode(text, return_tensors="np")
    assert isinstance(ids, np.ndarray) and ids.shape == (1, len(hf_tok.encode(text)))
    np.testing.assert_array_equal(ids, hf_tok.encode(text, return_tensors="np"))
    pt = tokenizer.encode(text, return_tensors="pt")
    assert isinstance(pt, torch.Tensor) and torch.equal(pt, hf_tok.encode(text, return_tensors="pt"))
    assert tokenizer.encode(text) == hf_tok.encode(text)
    with pytest.raises(ValueError, match="padding=True"):
        tokenizer(TEXTS, return_tensors="np")  # rows of different lengths, as transformers refuses
    monkeypatch.setitem(sys.modules, "torch", None)  # torch not importable
    with pytest.raises(ImportError, match="return_tensors='pt' needs PyTorch"):
        tokenizer.encode(text, return_tensors="pt")


def test_decode_and_batch_decode_of_arrays_and_tensors(tokenizer, hf_tok):
    enc = hf_tok(TEXTS, padding=True, return_tensors="pt")
    ids = enc["input_ids"]
    assert tokenizer.batch_decode(ids, skip_special_tokens=True) == hf_tok.batch_decode(ids, skip_special_tokens=True)
    assert tokenizer.batch_decode(ids.numpy()) == hf_tok.batch_decode(ids)
    assert tokenizer.decode(ids[1]) == hf_tok.decode(ids[1])
    assert tokenizer.decode(ids[1].numpy(), skip_special_tokens=True) == hf_tok.decode(ids[1], skip_special_tokens=True)
    assert tokenizer.decode(ids) == hf_tok.decode(ids)  # a batch decodes to a list, as in transformers 5
    assert tokenizer.decode(np.int64(19556)) == hf_tok.decode(19556)


# ---- 2. generate

def test_generate_takes_the_tokenizer_output(smollm, tokenizer, hf_tok):
    model = smollm.eval()
    inputs = tokenizer("The capital of France is", return_tensors="pt").to(model.device)
    outputs = model.generate(**inputs, max_new_tokens=8)
    assert isinstance(outputs, torch.Tensor) and outputs.shape == (1, inputs.input_ids.shape[1] + 8)
    want = smollm.generate(tokenizer.encode("The capital of France is"), max_new_tokens=8)
    np.testing.assert_array_equal(outputs.numpy(), want)
    assert tokenizer.batch_decode(outputs, skip_special_tokens=True) == \
        hf_tok.batch_decode(outputs, skip_special_tokens=True)
    # plain lists, as tokenizer(text) returns them
    np.testing.assert_array_equal(smollm.generate(**tokenizer("The capital of France is"), max_new_tokens=8), want)
    assert model.to("cpu") is model
    with pytest.raises(ValueError, match="device"):
        model.to("cuda")
    with pytest.raises(ValueError, match="device"):
        inputs.to("cuda:0")


@pytest.mark.parametrize("side", ["right", "left"])
def test_generate_on_a_padded_batch_equals_each_prompt_alone(smollm, tokenizer, side):
    prompts = ["The capital of France is", "Hi"]
    inputs = tokenizer(prompts, padding=True, padding_side=side, return_tensors="np")
    out = smollm.generate(**inputs, max_new_tokens=6)
    width = inputs["input_ids"].shape[1]
    assert out.shape[1] > width
    for row, prompt in zip(out, prompts):
        ids = tokenizer.encode(prompt)
        new = smollm.generate(ids, max_new_tokens=6)[0, len(ids):].tolist()
        assert row[width: width + len(new)].tolist() == new
        assert (row[width + len(new):] == tokenizer.pad_token_id).all()  # padding after an early stop
        assert row[:width].tolist() == [tokenizer.pad_token_id] * (width - len(ids)) + ids  # prompts end at width


def test_max_length_counts_the_prompt_and_max_new_tokens_wins(smollm, tokenizer):
    ids = tokenizer.encode("1, 2, 3, 4, 5,")
    out = smollm.generate(ids, max_length=len(ids) + 5)
    assert out.shape == (1, len(ids) + 5)
    with pytest.warns(UserWarning, match="max_new_tokens will take precedence"):
        both = smollm.generate(ids, max_length=len(ids) + 5, max_new_tokens=3)
    assert both.shape == (1, len(ids) + 3)
    np.testing.assert_array_equal(both, out[:, : len(ids) + 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert smollm.generate(ids).shape == (1, len(ids) + 20)  # transformers' default: 20 new tokens
    with pytest.raises(ValueError, match="max_length"):
        smollm.generate(ids, max_length=len(ids))
    cfg = GenerationConfig(max_length=len(ids) + 2)
    assert smollm.generate(ids, generation_config=cfg).shape == (1, len(ids) + 2)


def test_temperature_zero_with_sampling_raises_as_transformers(smollm, hf_model, tokenizer):
    ids = tokenizer.encode("Hello")
    with pytest.raises(ValueError, match="temperature"):
        hf_model.generate(torch.tensor([ids]), do_sample=True, temperature=0.0, max_new_tokens=2, pad_token_id=2)
    with pytest.raises(ValueError, match="temperature"):
        smollm.generate(ids, do_sample=True, temperature=0.0, max_new_tokens=2)
    with pytest.raises(ValueError, match="temperature"):
        smollm.stream("Hello", do_sample=True, temperature=0.0)
    # without sampling the temperature is unused, as in transformers: greedy
    np.testing.assert_array_equal(smollm.generate(ids, temperature=0.0, max_new_tokens=4),
                                  smollm.generate(ids, max_new_tokens=4))


def test_numpy_integers_are_integers(smollm, tokenizer):
    ids = np.array(tokenizer.encode("Hello"), dtype=np.int32)
    a = smollm.generate(ids, max_new_tokens=np.int64(5), do_sample=True, seed=np.int64(3), top_k=np.int32(20))
    b = smollm.generate(ids.tolist(), max_new_tokens=5, do_sample=True, seed=3, top_k=20)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1, len(ids) + 5)
    pieces = "".join(smollm.stream(ids, max_new_tokens=np.int64(3)))
    assert pieces == tokenizer.decode(smollm.generate(ids, max_new_tokens=3)[0, len(ids):], skip_special_tokens=True)


BEAM_CASES = [
    ("The capital of France is", dict(num_beams=4, max_new_tokens=12)),
    ("Once upon a time", dict(num_beams=3, max_new_tokens=10, length_penalty=0.5, early_stopping=True,
                              num_return_sequences=2)),
    ("def fibonacci(n):", dict(num_beams=3, max_new_tokens=10, length_penalty=0.5, early_stopping=True,
                               num_return_sequences=2)),
]


class _TransformersLogits:
    """Beam caches whose logits are transformers' (a forward over every running beam)."""

    def __init__(self, model, num_beams):
        self.model, self.K, self.seqs = model, num_beams, []

    def _logits(self, seqs):
        with torch.no_grad():
            return self.model(torch.tensor(seqs)).logits[:, -1].float().numpy()

    def start(self, prompt):
        self.seqs = [list(prompt)] * self.K
        return self._logits([prompt])[0]

    def advance(self, parents, tokens):
        self.seqs = [self.seqs[p] + [t] for p, t in zip(parents, tokens)]
        return self._logits(self.seqs)


def _hf_beams(hf_model, ids, kw):
    with torch.no_grad():
        return hf_model.generate(torch.tensor([ids]), do_sample=False, pad_token_id=2, **kw).numpy()


@pytest.mark.parametrize("prompt,kw", BEAM_CASES, ids=["france", "once", "fib"])
def test_beam_search_is_transformers_beam_search_on_its_logits(hf_model, tokenizer, prompt, kw):
    # pyllm's beam search over transformers' own logits returns transformers' beams exactly
    from pyllm.generation.beam_search import beam_search
    from pyllm.generation.logits_process import LogitsProcessorList

    ids = tokenizer.encode(prompt)
    cfg = GenerationConfig(eos_token_id=2, pad_token_id=2, **kw)
    hyps = beam_search(ids, cfg, LogitsProcessorList(), _TransformersLogits(hf_model, cfg.num_beams))
    outs = [tokens for _, tokens in hyps[: cfg.num_return_sequences]]
    got = np.full((len(outs), len(ids) + max(map(len, outs))), 2)
    got[:, : len(ids)] = ids
    for r, o in enumerate(outs):
        got[r, len(ids): len(ids) + len(o)] = o
    np.testing.assert_array_equal(got, _hf_beams(hf_model, ids, kw))


@pytest.mark.parametrize("prompt,kw", BEAM_CASES, ids=["france", "once", "fib"])
def test_generate_num_beams_equals_transformers(smollm, hf_model, tokenizer, prompt, kw):
    # end to end: needs pyllm's logits to equal transformers' to float32 error (a near tie between
    # two beams flips on a smaller difference)
    inputs = tokenizer(prompt, return_tensors="pt")
    ours = smollm.generate(**inputs, **kw)
    ref = _hf_beams(hf_model, inputs.input_ids[0].tolist(), kw)
    assert tokenizer.batch_decode(ours) == tokenizer.batch_decode(ref)
    np.testing.assert_array_equal(ours.numpy(), ref)


@pytest.mark.parametrize("prompt,kw", BEAM_CASES, ids=["france", "once", "fib"])
def test_generate_num_beams_equals_reference_on_full_forward_logits(smollm, tokenizer, prompt, kw):
    # beams over the KV caches (one-token decode steps) against transformers' algorithm driven by
    # model(ids).logits: equal once decode logits equal full-forward logits
    from test_beam_search import hf_beam_search_ref

    ids = tokenizer.encode(prompt)
    ours = smollm.generate(ids, **kw)
    rest = {k: v for k, v in kw.items() if k not in ("num_beams", "max_new_tokens")}
    seen = {}

    def next_logits(seq):  # beams that are equal (all of them at the first step) run once
        key = tuple(int(t) for t in seq)
        if key not in seen:
            seen[key] = smollm(np.asarray(key)).logits[0, -1]
        return seen[key]

    want, _ = hf_beam_search_ref(next_logits, ids, kw["num_beams"], kw["max_new_tokens"], eos=(2,), pad=2, **rest)
    np.testing.assert_array_equal(ours, want)


def test_loss_with_labels_is_transformers_loss(smollm, hf_model, tokenizer):
    enc = tokenizer("The quick brown fox jumps over the lazy dog. " * 3, return_tensors="pt")
    labels = enc.input_ids.clone()
    labels[0, :5] = -100  # ignored, as in transformers
    out = smollm(enc.input_ids, labels=labels)
    assert isinstance(out.loss, torch.Tensor) and out.loss.ndim == 0 and isinstance(out.logits, torch.Tensor)
    # the same formula as transformers' on the same logits (shift, mean over labels != -100)
    want = torch.nn.functional.cross_entropy(out.logits[0, :-1].double(), labels[0, 1:], ignore_index=-100)
    assert abs(out.loss.item() - want.item()) < 1e-5
    with torch.no_grad():
        ref = hf_model(**enc, labels=labels).loss.item()
    assert abs(out.loss.item() - ref) / ref < 0.01  # logits agree with transformers to ~1%
    # numpy in, numpy out; out["loss"], out[0] and out.to_tuple() as transformers' ModelOutput
    np_out = smollm(enc.input_ids.numpy(), labels=labels.numpy())
    assert isinstance(np_out.logits, np.ndarray) and np_out.loss.item() == pytest.approx(out.loss.item(), abs=1e-6)
    assert np_out[0] is np_out.loss and np_out["logits"] is np_out.logits and len(np_out.to_tuple()) == 2
    assert smollm(enc.input_ids).loss is None
    np.testing.assert_array_equal(smollm(enc.input_ids).logits.numpy(), np_out.logits)


# ---- 3. pipeline and from_pretrained arguments

def test_pipeline_as_transformers(smollm_path):
    with pytest.warns(UserWarning, match="float32"):
        pipe = pipeline("text-generation", model=str(smollm_path), device=-1, torch_dtype=torch.float16)
    out = pipe(["Once upon a time", "The sky is"], max_new_tokens=5, num_return_sequences=2, do_sample=True)
    assert len(out) == 2 and all(len(r) == 2 for r in out)
    assert all(r["generated_text"].startswith(p) for p, rs in zip(["Once upon a time", "The sky is"], out)
               for r in rs)
    new_only = pipe("Once upon a time", max_new_tokens=5, return_full_text=False)
    full = pipe("Once upon a time", max_new_tokens=5)
    assert full[0]["generated_text"] == "Once upon a time" + new_only[0]["generated_text"]
    ids = pipe.tokenizer.encode("Once upon a time")
    short = pipe("Once upon a time", max_length=len(ids) + 3, return_full_text=False)[0]["generated_text"]
    assert short == pipe.tokenizer.decode(pipe.model.generate(ids, max_new_tokens=3)[0, len(ids):],
                                          skip_special_tokens=True)
    assert pipeline("text-generation", model=pipe.model, device="cpu", dtype="float32").model is pipe.model
    with pytest.raises(ValueError, match="device"):
        pipeline("text-generation", model=pipe.model, device="cuda")
    with pytest.raises(ValueError, match="device"):
        pipeline("text-generation", model=pipe.model, device=0)
    with pytest.raises(TypeError, match="text_inputs"):
        pipe(12345)
    with pytest.raises(TypeError, match="text_inputs"):
        pipe(["ok", 5])


def test_from_pretrained_arguments(smollm_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = AutoModelForCausalLM.from_pretrained(smollm_path, torch_dtype=torch.float32, device_map="cpu",
                                                     n_ctx=64)
        AutoModelForCausalLM.from_pretrained(smollm_path, dtype="auto", device_map="auto", n_ctx=64)
    assert model.n_ctx == 64
    with pytest.warns(UserWarning, match="dtype"):
        pyllm.LlamaForCausalLM.from_pretrained(smollm_path, dtype=torch.bfloat16, n_ctx=64)
    with pytest.raises(ValueError, match="device_map"):
        AutoModelForCausalLM.from_pretrained(smollm_path, device_map="cuda:0")
    with pytest.raises(TypeError, match="pretrained_model_name_or_path"):
        AutoModelForCausalLM.from_pretrained(None)
    with pytest.raises(TypeError, match="pretrained_model_name_or_path"):
        AutoTokenizer.from_pretrained(None)
    with pytest.raises(TypeError, match="revision"):
        AutoModelForCausalLM.from_pretrained(smollm_path, revision="main")


# ---- 5. bad input names the argument

@pytest.mark.parametrize("prompt", [12345, 3.5, None, {"role": "user"}])
def test_stream_refuses_prompts_that_are_not_text_or_ids(smollm, prompt):
    with pytest.raises(TypeError, match="prompt"):
        smollm.stream(prompt, max_new_tokens=2)


@pytest.mark.parametrize("ids,match", [
    (np.array([1.5, 2.0]), "float64"),
    ([1.0, 2.0], "float"),
    ([True, 5], "bool"),
    (np.array([True, False]), "bool"),
    (["a", "b"], "str"),
    ([1 + 2j], "complex"),
])
def test_token_ids_of_the_wrong_type_are_refused_everywhere(smollm, tokenizer, ids, match):
    calls = {
        "decode": lambda: tokenizer.decode(ids),
        "generate": lambda: smollm.generate(ids, max_new_tokens=2),
        "stream": lambda: smollm.stream(ids, max_new_tokens=2),
        "score": lambda: smollm.score(ids),
        "__call__": lambda: smollm(ids),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=match) as e:
            call()
        assert "must hold integer token ids" in str(e.value) or "must be" in str(e.value), name


def test_the_tokenizer_and_pipeline_refuse_non_text(tokenizer):
    with pytest.raises(TypeError, match="text must be a string"):
        tokenizer(12345)
    with pytest.raises(TypeError, match="text must be a string"):
        tokenizer(["fine", 3])
    with pytest.raises(TypeError, match="text must be a string"):
        tokenizer.encode(None)
    with pytest.raises(ValueError, match="out of range"):
        tokenizer.decode([1, 10**6])
