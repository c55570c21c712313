# Chat templates are untrusted code from model files: rendering is bounded in
# time and size, and compiled templates are not kept for ever. Not template
# fidelity (test_bpe.py, test_tokenizers_recorded.py).

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytest.importorskip("jinja2")


def _run_child(code: str, timeout: float = 60.0, mem_mb: int = 1500) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))

    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit, env=dict(os.environ, OMP_NUM_THREADS="1"),
                              cwd=tempfile.gettempdir())  # the installed pyllm, not the source tree
    except subprocess.TimeoutExpired:
        pytest.fail(f"child did not finish within {timeout} s:\n{code}")


_CHILD = """
    from pyllm.tokenizers import BPETokenizer
    from pyllm.tokenizers.bytelevel import bytes_to_unicode

    tok = BPETokenizer([bytes_to_unicode()[b] for b in range(256)], [])
    try:
        import pyllm.tokenizers.chat_template as ct
        ct.MAX_SECONDS = 1.0  # keep the test short (the default is a few seconds)
    except ImportError:
        pass
    try:
        out = tok.apply_chat_template([{{"role": "user", "content": "hi"}}], tokenize=False,
                                      chat_template={template!r})
    except ValueError as e:
        print(type(e).__name__, e)
    else:
        print("rendered", len(out))
"""

HOSTILE = {
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "repetition": "{{ 'x' * 10**9 }}",
    "list repetition": "{{ ([1] * 10**9) | length }}",
    "doubling": "{% set s = 'x' * 1000 %}" + "{% set s = s ~ s %}" * 40 + "{{ s | length }}",
    "namespace doubling": "{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
                          "{% endfor %}{{ ns.s | length }}",
    "padding": "{{ 'x' | center(10**9) }}",
    "format width": "{{ '{:>999999999}'.format(1) }}",
    "percent width": "{{ '%999999999d' % 1 }}",
    "replace": "{% set s = 'a' * 4000 %}{{ s.replace('a', s) | length }}",
    "power": "{{ (2 ** 10000000000) | string | length }}",
    "output": "{% for i in range(100000) %}{{ 'y' * 5000 }}{% endfor %}",
    "deep nesting": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",  # jinja2's parser recursed past the limit
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_raises_clearly(name):
    r = _run_child(_CHILD.format(template=HOSTILE[name]), timeout=60, mem_mb=1500)
    assert r.returncode == 0, f"{name}: child died ({r.returncode}): {r.stderr[-1500:]}"
    assert r.stdout.startswith("ChatTemplateError"), f"{name}: {r.stdout[:300]} {r.stderr[-800:]}"


def test_ordinary_templates_still_render():
    from pyllm.tokenizers import BPETokenizer
    from pyllm.tokenizers.bytelevel import bytes_to_unicode

    tok = BPETokenizer([bytes_to_unicode()[b] for b in range(256)], [], eos_token_id=ord("!"))
    t = ("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
         "{{ m.role | upper }}:{{ m.content | tojson }}{{ '-' * 3 }}{{ '%03d' % loop.index }}{% endfor %}"
         "{{ ns.n }}{{ eos_token }}{{ 'a,b'.replace(',', ' ') }}{{ range(3) | list | join('') }}")
    out = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}],
                                  tokenize=False, chat_template=t)
    assert out == 'USER:"hi"---001BOT:"yo"---0022!a b012'
    with pytest.raises(Exception, match="no way"):
        tok.apply_chat_template([], chat_template="{{ raise_exception('no way') }}")


def test_compiled_templates_are_capped():
    from pyllm.tokenizers import chat_template as ct

    for i in range(3 * ct.CACHE_SIZE):
        assert ct.render_chat_template("{{ x }}" + str(i), x="v") == "v" + str(i)
    assert len(ct._templates) <= ct.CACHE_SIZE
    # most recently used kept: the last one renders from the cache
    last = "{{ x }}" + str(3 * ct.CACHE_SIZE - 1)
    assert last in ct._templates


def test_compiled_templates_memory_is_bounded():
    # before: +183 MB for 20,000 distinct templates (every one compiled and kept)
    r = _run_child("""
        from pyllm.tokenizers import BPETokenizer
        from pyllm.tokenizers.bytelevel import bytes_to_unicode

        def rss_mb():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        tok = BPETokenizer([bytes_to_unicode()[b] for b in range(256)], [])
        msgs = [{"role": "user", "content": "hi"}]
        body = "{% for m in messages %}{{ m.role }}{% if m.content %}{{ m.content }}{% endif %}{% endfor %}"
        tok.apply_chat_template(msgs, tokenize=False, chat_template=body)
        base = rss_mb()
        for i in range(2000):
            tok.apply_chat_template(msgs, tokenize=False, chat_template=body + str(i))
        print(f"{rss_mb() - base:.1f}")
    """, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout) < 8, f"{r.stdout.strip()} MB kept after 2,000 templates"
