"""Coverage-guided fuzzing of the chat-template renderer (pyllm/tokenizers/chat_template.py)
with atheris. Not a unit test: CONTRIBUTING.md says how to run it.

Each input is a template (its bytes read as UTF-8, invalid sequences U+FFFD) rendered with a
short conversation, with rendering bounds lowered so a run stays fast: the result must be a
string within the size bound, or the render must raise ChatTemplateError (a ValueError) or
jinja2's TemplateError (syntax errors, undefined names, sandbox refusals, raise_exception: what
transformers raises too).
Anything else (another exception, a hang past the time bound, a crash) is a finding;
tests/test_fuzz_corpus.py replays the seeds and every saved finding.
"""

import sys
import time

from jinja2 import TemplateError

import pyllm.tokenizers.chat_template as ct

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <b>there</b> {{ x }}"},
            {"role": "assistant", "content": "Hello."}]


def check_template(data: bytes) -> None:
    source = data.decode("utf-8", errors="replace")
    ct.MAX_SECONDS, ct.MAX_CHARS = 0.5, 1 << 16
    t0 = time.perf_counter()
    try:
        out = ct.render_chat_template(source, messages=MESSAGES, add_generation_prompt=True, bos_token="<s>",
                                      eos_token="</s>", unk_token=None, pad_token=None)
    except ct.ChatTemplateError:
        return
    except TemplateError:
        return
    finally:
        assert time.perf_counter() - t0 < 30, "rendering ran far past its time bound"
    assert isinstance(out, str) and len(out) <= ct.MAX_CHARS, (type(out), len(out))


def main() -> None:
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, check_template)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
