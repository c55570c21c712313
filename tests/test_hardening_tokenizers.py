# Tokenizer failure modes: an allocation failure inside encode raises, an
# empty special token matches nothing, the word caches stay bounded and free.
# Not tokenization fidelity (test_bpe.py, test_tokenizers_*.py).

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from pyllm.tokenizers import BPETokenizer
from pyllm.tokenizers.bytelevel import bytes_to_unicode

ALPHABET = [bytes_to_unicode()[b] for b in range(256)]  # ids 0..255 are the bytes


def _run_child(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=tempfile.gettempdir())  # the installed pyllm
    except subprocess.TimeoutExpired:
        pytest.fail(f"child did not finish within {timeout} s:\n{code}")


# The child caps its own address space once the text is built, so the
# merge of the 64 MB word (five int32 vectors of its length) cannot fit.
_OOM_CHILD = """
    import resource
    from pyllm.tokenizers import BPETokenizer, SentencePieceBPETokenizer
    from pyllm.tokenizers.bytelevel import bytes_to_unicode

    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    {build}
    text = "start " + "a" * (64 << 20) + " end"
    tok.encode("warm up")
    cap = vm_bytes() + (320 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        ids = tok.encode(text)
    except MemoryError:
        print("MemoryError")
    else:
        print("returned", len(ids), ids[:8])
"""

_BUILD_BPE = """
    alphabet = [bytes_to_unicode()[b] for b in range(256)]
    tok = BPETokenizer(alphabet + ["st", "ar"], ["s t", "a r"])
"""

_BUILD_SPM = """
    chars = ["<unk>", "<s>", "</s>", "\\u2581"] + [chr(c) for c in range(97, 123)]
    tok = SentencePieceBPETokenizer(chars + ["st"], [("s", "t")], unk_token_id=0, model_unk_token_id=0,
                                    bos_token_id=1, eos_token_id=2, metaspace=False)
"""


@pytest.mark.parametrize("build", [_BUILD_BPE, _BUILD_SPM], ids=["bpe", "spm"])
def test_encode_out_of_memory_raises(build):
    # before: the failed allocation was reported as "ignored" and the word
    # dropped, so 64 MB of text came back as the ids of "start end"
    r = _run_child(_OOM_CHILD.format(build=textwrap.indent(textwrap.dedent(build), "    ").strip()))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "MemoryError", r.stdout + r.stderr[-2000:]


def _gguf_md(tokens, types):
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": ["a b"],
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.pre": "gpt2"}


def test_empty_special_token_is_ignored_bpe():
    tokens = ALPHABET + ["ab", "", "<s>"]
    tok = BPETokenizer.from_gguf_metadata(_gguf_md(tokens, [1] * 257 + [3, 3]))
    ab, s = 256, 258
    assert tok.encode("abc") == [ab, ord("c")]
    assert tok.encode("x<s>ab") == [ord("x"), s, ab]
    assert tok.encode("") == []
    assert tok.decode(tok.encode("hello there")) == "hello there"


def test_empty_special_token_is_ignored_spm():
    from pyllm.tokenizers import SentencePieceBPETokenizer
    from pyllm.tokenizers.base import AddedToken

    chars = ["<unk>", "<s>", "</s>", "", "\u2581"] + [chr(c) for c in range(97, 123)]
    added = [AddedToken(0, "<unk>"), AddedToken(1, "<s>"), AddedToken(2, "</s>"), AddedToken(3, "")]
    tok = SentencePieceBPETokenizer(chars, [], unk_token_id=0, bos_token_id=1, eos_token_id=2, added_tokens=added)
    ids = tok.encode("ab c")
    assert 3 not in ids
    assert tok.decode(ids) == "ab c"


def test_empty_named_special_token_is_ignored():
    # an empty pad token (named, not only typed control) matches nothing either
    tok = BPETokenizer(ALPHABET + [""], [], pad_token_id=256)
    assert tok.encode("hi") == [ord("h"), ord("i")]


# Several threads each fill their own word cache with distinct words: the
# caches must stay within a fixed budget (RSS measured in the child).
_CACHE_CHILD = """
    import gc
    import numpy as np
    from pyllm.tokenizers import BPETokenizer
    from pyllm.tokenizers.bytelevel import bytes_to_unicode

    def rss_mb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    tok = BPETokenizer([bytes_to_unicode()[b] for b in range(256)], [])
    rng = np.random.default_rng(0)
    def text():  # 600,000 random 20-letter words (12.6 MB)
        words = rng.integers(97, 123, (600_000, 21), dtype=np.uint8)
        words[:, 20] = 32
        return words.tobytes().decode("ascii")
    texts = [text() for _ in range({n})]
    tok.encode_batch([t[:100_000] for t in texts], num_threads={n})  # threads and their heaps exist
    tok.clear_cache()
    base = rss_mb()
    rows = tok.encode_batch(texts, num_threads={n}) if {n} > 1 else [tok.encode(texts[0])]
    del rows
    gc.collect()
    grown = rss_mb() - base
    entries, held = tok._core.cache_size()
    tok.clear_cache()
    print(f"{{grown:.0f}} {{rss_mb() - base:.0f}} {{entries}} {{held}} {{tok._core.cache_size()}}")
"""


def test_word_caches_are_bounded():
    r = _run_child(_CACHE_CHILD.format(n=4), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    grown, _, entries, held, after_clear = r.stdout.split(maxsplit=4)
    # before: 434 MB for these 4 threads' caches
    assert float(grown) < 100, f"word caches hold {grown} MB after encoding"
    assert int(entries) > 0 and int(held) <= 4 * (16 << 20), (entries, held)
    assert after_clear.strip() == "(0, 0)"


def test_clear_cache_gives_the_memory_back():
    # before: clear() kept the hash buckets and the ids' vector capacity (~55 MB here)
    r = _run_child(_CACHE_CHILD.format(n=1), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    grown, cleared, entries, held, after_clear = r.stdout.split(maxsplit=4)
    assert int(held) > (4 << 20), "the cache should have held a few MB before clearing"
    assert float(cleared) < 3, f"{cleared} MB still held after clear_cache() (from {grown} MB)"
    assert after_clear.strip() == "(0, 0)"
