# What a user's `mypy --strict` sees through pyllm's public entry points: scripts written the way the README
# uses the library are type-checked in a temporary directory. Not a check of pyllm's own sources (test_static).
"""mypy --strict over user-style snippets: the loaded model and tokenizer have
pyllm's base types (not Any), correct use passes, wrong use fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]

GOOD = '''
from typing import List

from pyllm import AutoModelForCausalLM, AutoTokenizer, pipeline

model = AutoModelForCausalLM.from_pretrained("model.gguf", device_map="cpu", torch_dtype="auto")
tok = AutoTokenizer.from_pretrained("model.gguf")
reveal_type(model)
reveal_type(tok)

ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
out = model.generate(ids, max_new_tokens=64, do_sample=True, temperature=0.7, seed=0)
text: str = tok.decode(out[0], skip_special_tokens=True)

enc = tok(["Hello", "Hi there"], padding=True, return_tensors="np")
batch = model.generate(**enc, max_new_tokens=8, num_beams=2)
texts: List[str] = tok.batch_decode(batch, skip_special_tokens=True)

res = model(enc["input_ids"], attention_mask=enc["attention_mask"], labels=enc["input_ids"])
logits = res.logits
loss = res.loss
same = model.forward(tok.encode("Once upon a time")).logits

sizes: int = model.config.vocab_size + model.vocab_size + model.n_ctx + model.n_past + len(tok)
eos = tok.eos_token_id
model = model.eval().to("cpu")
for piece in model.stream("Once upon", max_new_tokens=4):
    print(piece.upper())
last = model.step([1, 2, 3], all_logits=True)
model.reset()
ppl: float = model.score("The quick brown fox").perplexity

pipe = pipeline("text-generation", model="model.gguf", device=-1)
reveal_type(pipe)
first = pipe("Hi", max_new_tokens=4)[0]["generated_text"]
'''

# every line after the tokenizer's is one misuse mypy must report (each line's number is checked)
BAD = '''
from pyllm import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("model.gguf")
tok = AutoTokenizer.from_pretrained("model.gguf")
model.generate_text([1, 2, 3])
model.step([1, 2], all_logits="yes")
model.generate([1, 2], generation_config={"max_new_tokens": 4})
n: str = model.vocab_size
tok.encode(123)
width = model.config.n_embd
'''


def run_mypy(path: Path, cache: Path) -> Tuple[int, List[str]]:
    """mypy --strict on ``path`` as a user runs it: outside the repository (no project config), with
    pyllm found at the repository root, so the sources under test are what mypy reads."""
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir", str(cache),
                        "--hide-error-context", "--show-error-codes", path.name],
                       cwd=path.parent, env=env, capture_output=True, text=True, timeout=600)
    return r.returncode, [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("typing")


def write(workdir: Path, name: str, source: str) -> Path:
    path = workdir / name
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


def test_user_code_type_checks_and_sees_the_base_types(workdir: Path) -> None:
    rc, lines = run_mypy(write(workdir, "user_ok.py", GOOD), workdir / "cache")
    errors = [line for line in lines if ": error:" in line]
    assert rc == 0 and not errors, "\n".join(lines)
    revealed = [m.group(1) for line in lines if (m := re.search(r'Revealed type is "([^"]+)"', line))]
    assert revealed == ["pyllm.models.base.PreTrainedCausalLM", "pyllm.tokenizers.base.TokenizerMixin",
                        "pyllm.pipelines.TextGenerationPipeline"], "\n".join(lines)


def test_misuse_of_the_loaded_model_and_tokenizer_fails(workdir: Path) -> None:
    path = write(workdir, "user_bad.py", BAD)
    rc, lines = run_mypy(path, workdir / "cache")
    assert rc == 1, "\n".join(lines)
    source = path.read_text().splitlines()
    first = next(i for i, line in enumerate(source, 1) if line.startswith("tok = ")) + 1
    flagged = {int(m.group(1)) for line in lines if (m := re.match(rf"{path.name}:(\d+): error:", line))}
    assert flagged == set(range(first, len(source) + 1)), "\n".join(lines)
    text = "\n".join(lines)
    for what in ('"PreTrainedCausalLM" has no attribute "generate_text"', '"all_logits"', '"generation_config"',
                 '"encode" of "TokenizerMixin"', '"CausalLMConfig" has no attribute "n_embd"'):
        assert what in text, text
