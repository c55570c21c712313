"""Writes the seed corpus for fuzz_gguf.py: small well-formed GGUF files (every
metadata type, every supported tensor type, a tokenizer taken from the default
model) and corrupt variants of them. Not the fuzzer itself.

    python fuzz/make_corpus.py fuzz/corpus/gguf   (not kept in git: it is made anew)
"""

import os
import sys
import tempfile

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType


def write_gguf(path: str, tokenizer_from: "dict[str, object] | None" = None) -> None:
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("t.u8", 7)
    w.add_int8("t.i8", -7)
    w.add_uint16("t.u16", 700)
    w.add_int16("t.i16", -700)
    w.add_uint32("t.u32", 70000)
    w.add_int32("t.i32", -70000)
    w.add_uint64("t.u64", 2**40)
    w.add_int64("t.i64", -(2**40))
    w.add_float32("t.f32", 0.5)
    w.add_float64("t.f64", -0.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo")
    w.add_array("t.arr_i", [1, 2, 3])
    w.add_array("t.arr_s", ["a", "bc", ""])
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(1)
    w.add_head_count(2)
    if tokenizer_from is not None:
        tokens = list(tokenizer_from["tokenizer.ggml.tokens"])[:300]  # type: ignore[call-overload]
        merges = [m for m in tokenizer_from["tokenizer.ggml.merges"][:400]  # type: ignore[index]
                  if all(p in tokens for p in m.split(" "))]
        w.add_tokenizer_model("gpt2")
        w.add_token_list(tokens)
        w.add_token_merges(merges)
        w.add_bos_token_id(0)
        w.add_eos_token_id(0)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    w.add_tensor("a.f32", x)
    w.add_tensor("a.f16", x.astype(np.float16))
    for t in (Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1):
        w.add_tensor(f"a.{t.name.lower()}", gguf.quants.quantize(x, t), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def seeds(workdir: str) -> "dict[str, bytes]":
    """name -> bytes of every seed; workdir holds the files written on the way."""
    from pyllm import GGUFFile, hub

    real = GGUFFile(hub.resolve_model_file("SmolLM2-135M-Instruct"))
    out = {}
    for name, tok in (("types", None), ("tokenizer", real.metadata)):
        path = os.path.join(workdir, f"{name}.gguf")
        write_gguf(path, tok)
        with open(path, "rb") as f:
            out[name] = f.read()
    with open(real.path, "rb") as f:
        out["real_head"] = f.read(64 * 1024)  # the real file's first 64 KiB: a truncated header
    for name, data in list(out.items()):
        for frac in (0.1, 0.5, 0.9):
            out[f"{name}_cut{int(frac * 100)}"] = data[: int(len(data) * frac)]
        flipped = bytearray(data)
        flipped[8] ^= 0xFF  # the tensor count's low byte
        out[f"{name}_count"] = bytes(flipped)
    return out


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "gguf")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        found = seeds(tmp)
    for name, data in found.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(found)} seeds in {out}")


if __name__ == "__main__":
    main()
