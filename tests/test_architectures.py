"""Every registered architecture from a Hugging Face directory against
transformers fp32 on the same weights: seeded tiny random models of each
config class (GQA, biases, q/k norms, sandwich norms, soft-capping,
sliding windows shorter than the prompt, Llama 3 RoPE scaling, fused
projections), saved by transformers and loaded by pyllm. Logits within
float32 error, greedy generation identical, the decode step's logits the
prefill's bit for bit; bfloat16/float16 and sharded checkpoints; the
registry's errors."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import pyllm  # noqa: E402
from pyllm.models import registry  # noqa: E402

V = 256
BASE = dict(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.2)
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 32}
GEMMA = dict(head_dim=16, sliding_window=8, query_pre_attn_scalar=16, attn_implementation="eager")
# name -> (config class, model class, settings beyond BASE)
CASES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "llama3_scaled": ("LlamaConfig", "LlamaForCausalLM", dict(rope_scaling=LLAMA3, tie_word_embeddings=True)),
    "mistral_window": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=8)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=32)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", GEMMA),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(GEMMA, sliding_window_pattern=2,
                                                               rope_local_base_freq=100.0)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(pad_token_id=0, eos_token_id=1, bos_token_id=2)),
    "phi3_partial": ("Phi3Config", "Phi3ForCausalLM", dict(pad_token_id=0, eos_token_id=1, bos_token_id=2,
                                                             partial_rotary_factor=0.5)),
}
IDS = np.random.default_rng(0).integers(3, V, size=40)  # longer than every sliding window here


def make(name, directory, dtype=torch.float32, **save):
    cfg_cls, model_cls, extra = CASES[name]
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    cfg = getattr(transformers, cfg_cls)(**{**BASE, **extra})
    model = getattr(transformers, model_cls)(cfg).float().eval()
    model.to(dtype).save_pretrained(directory, **save)
    # the reference runs in fp32 on exactly the weights the directory stores
    return getattr(transformers, model_cls).from_pretrained(directory, dtype=torch.float32).eval()


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    ref = make(request.param, d)
    return request.param, ref, pyllm.AutoModelForCausalLM.from_pretrained(d)


def reference_logits(ref, ids):
    with torch.no_grad():
        return ref(torch.tensor(np.asarray(ids)[None])).logits[0].numpy()


def test_logits_match_transformers(pair):
    name, ref, model = pair
    want = reference_logits(ref, IDS)
    got = model(IDS[None]).logits[0]
    err = np.abs(got - want).max()
    assert err <= 1e-4 * max(1.0, np.abs(want).max()), f"{name}: max |diff| {err:.2e}"


def test_greedy_generation_matches_transformers(pair):
    name, ref, model = pair
    prompt = IDS[:7]
    with torch.no_grad():
        want = ref.generate(torch.tensor(prompt[None]), max_new_tokens=32, min_new_tokens=32, do_sample=False,
                            pad_token_id=0)[0, len(prompt):].tolist()
    model.reset()
    got = model.generate(prompt.tolist(), max_new_tokens=32, min_new_tokens=32, do_sample=False)
    assert np.asarray(got).reshape(-1)[len(prompt):].tolist() == want, name


def test_hidden_states_and_embeddings_match_transformers(pair):
    """output_hidden_states: the residual stream entering each layer, then the final norm's output
    (padded rows too); embed() mean-pools the last of them, as the reference's last_hidden_state."""
    name, ref, model = pair
    ids = np.stack([IDS[:24], IDS[16:]])
    mask = np.ones_like(ids)
    mask[1, :5] = 0  # left padding
    with torch.no_grad():
        want = [ref(torch.tensor(ids[:1]), output_hidden_states=True).hidden_states,
                ref(torch.tensor(ids[1:, 5:]), output_hidden_states=True).hidden_states]
    out = model(ids, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == len(want[0]) == BASE["num_hidden_layers"] + 1
    for layer, got in enumerate(out.hidden_states):
        for b, cols in ((0, slice(None)), (1, slice(5, None))):
            w = want[b][layer][0].numpy()
            err = np.abs(got[b, cols] - w).max()
            assert err <= 1e-5 * max(1.0, np.abs(w).max()), f"{name} layer {layer} row {b}: {err:.2e}"
    assert not out.hidden_states[-1][1, :5].any()
    # the logits are the plain call's
    np.testing.assert_array_equal(out.logits, model(ids, attention_mask=mask).logits)
    emb = model.embed(ids, attention_mask=mask)
    for b in (0, 1):
        w = want[b][-1][0].numpy().mean(0)
        np.testing.assert_allclose(emb[b], w, atol=1e-5 * max(1.0, np.abs(w).max()), rtol=0)
    last = model.embed(ids, attention_mask=mask, pooling="last", normalize=True)
    w = want[1][-1][0, -1].numpy()
    np.testing.assert_allclose(last[1], w / np.linalg.norm(w), atol=1e-6, rtol=0)


def test_decode_steps_give_the_prefill_bits(pair):
    name, _, model = pair
    full = model(IDS[None]).logits[0]
    model.reset()
    model.step(IDS[:20])
    steps = np.stack([model.step([int(t)]) for t in IDS[20:]])
    assert np.array_equal(steps, full[20:]), name


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_checkpoints(tmp_path, dtype):
    ref = make("qwen2", tmp_path, getattr(torch, dtype))
    model = pyllm.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert set(model.tensor_types()) == {"F32", "BF16" if dtype == "bfloat16" else "F16"} or \
        set(model.tensor_types()) == {"BF16" if dtype == "bfloat16" else "F16"}
    want = reference_logits(ref, IDS)
    np.testing.assert_allclose(model(IDS[None]).logits[0], want, atol=1e-4 * np.abs(want).max())


def test_sharded_checkpoint(tmp_path):
    ref = make("llama", tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    want = reference_logits(ref, IDS)
    got = pyllm.AutoModelForCausalLM.from_pretrained(tmp_path)(IDS[None]).logits[0]
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_registry_lists_every_architecture():
    assert {"llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2"} <= set(registry.names())
    assert {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3"} <= set(registry.model_types())


def test_unknown_model_type_names_the_supported_ones(tmp_path):
    make("llama", tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "mamba"}))
    with pytest.raises(ValueError, match=r"unsupported model_type 'mamba'.*supported: .*gemma2.*qwen3"):
        pyllm.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_a_tensor_no_slot_takes_raises(tmp_path):
    from safetensors.numpy import load_file, save_file

    make("llama", tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["model.layers.0.mlp.extra_proj.weight"] = np.zeros((4, 4), np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="model.layers.0.mlp.extra_proj.weight.*not understood"):
        pyllm.AutoModelForCausalLM.from_pretrained(tmp_path)


@pytest.mark.parametrize("key", ["rope_scaling", "rope_parameters"])
def test_unsupported_settings_raise(tmp_path, key):
    make("qwen2", tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, key: {"rope_type": "yarn", "factor": 4.0,
                                                                    "rope_theta": 10000.0}}))
    with pytest.raises(ValueError, match="rope_type 'yarn'"):
        pyllm.AutoModelForCausalLM.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_corrupt_safetensors_raise(tmp_path, damage):
    make("llama", tmp_path)
    f = tmp_path / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else raw[:8] + b"{not json" + raw[17:])
    with pytest.raises(ValueError, match="truncated|not valid JSON|outside the file"):
        pyllm.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_info_reads_a_directory_through_the_registry(tmp_path, capsys):
    from pyllm import cli

    make("gemma2", tmp_path)
    assert cli.main(["info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "gemma2" and info["config"]["final_logit_softcapping"] == 30.0
    assert info["config"]["num_hidden_layers"] == 3


def stored_as(w, wtype):
    """An fp32 matrix's bytes in a GGUF weight type: (array, type id)."""
    from pyllm import quant

    if wtype == "F32":
        return w, 0
    if wtype == "F16":
        return w.astype(np.float16), 1
    if wtype == "BF16":  # round to nearest even, as torch does
        return torch.from_numpy(w).to(torch.bfloat16).view(torch.int16).numpy(), 30
    return quant.quantize(w, wtype), quant.GGML_TYPES[wtype]


# every architecture with Q8_0 matrices; the float types on those with biases, soft-caps and partial RoPE
PACKED = [(name, "Q8_0") for name in sorted(CASES)] + [
    (name, wtype) for name in ("gemma2", "phi3_partial", "qwen2") for wtype in ("F32", "F16", "BF16")]


@pytest.mark.parametrize("name,wtype", PACKED)
def test_packed_weights_take_the_batched_decode_path_with_the_prefill_bits(tmp_path, name, wtype, isa):
    # every matrix stored as wtype (packed at load): the decode step runs in the runtime's own
    # threads over the packed rows, with each architecture's norms, biases, activations, windows
    # and soft-caps; its logits must be the prefill's bit for bit, alone or beside other sequences
    from pyllm.models.decoder import DecoderForCausalLM
    from pyllm.models.hfdir import HFCheckpoint

    make(name, tmp_path)
    arch = registry.for_model_type(json.loads((tmp_path / "config.json").read_text())["model_type"], name)
    loaded = arch.from_hf(HFCheckpoint(tmp_path))
    for slot, t in list(loaded.tensors.items()):
        if isinstance(t, tuple):
            raw, type_id = stored_as(np.ascontiguousarray(t[0], dtype=np.float32), wtype)
            loaded.tensors[slot] = (raw, type_id, t[2], t[3])
    model = DecoderForCausalLM(loaded, n_ctx=64)
    live = model._live()
    assert live.decode_batch_supported
    full = model(IDS[None]).logits[0]
    model.reset()
    model.step(IDS[:20])
    steps = np.stack([model.step([int(t)]) for t in IDS[20:]])
    assert np.array_equal(steps, full[20:])
    live.set_n_seq(3)
    for s, n in ((1, 9), (2, 14)):
        live.truncate(0, s)
        live.forward(np.ascontiguousarray(IDS[:n], dtype=np.int32), False, s)
    model.reset()
    model.step(IDS[:20])
    batch = live.decode_batch(np.array([IDS[20], IDS[9], IDS[14]], np.int32), np.array([0, 1, 2], np.int64))
    assert np.array_equal(batch[0], full[20])
    assert np.array_equal(batch[1], full[9]) and np.array_equal(batch[2], full[14])
    live.set_n_seq(1)


def test_a_list_of_eos_ids_is_kept(tmp_path):
    # Llama 3 ends a turn on any of several ids: all of them stop generation
    make("llama", tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "eos_token_id": [7, 9]}))
    model = pyllm.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.config.eos_token_id == [7, 9]
    assert model.generation_config.eos_token_id == [7, 9]
