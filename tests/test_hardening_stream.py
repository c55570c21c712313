# model.stream() iterators against each other and against threads: read
# interleaved, read from several threads, dropped unfinished. Not the text a
# stream yields for one reader (test_generation.py, test_transformers_idioms.py).

from __future__ import annotations

import os
import threading
from typing import Any, List

import pytest

from pyllm import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "data", "tiny", "llama3", "llama3-f32.gguf")
PROMPTS = ["Once upon a time", "The capital of France"]
N = 16


@pytest.fixture
def model() -> Any:
    # a model per test: a test failing on a held lock must not take the next one with it
    with AutoModelForCausalLM.from_pretrained(TINY) as m:
        yield m


def _alone(model: Any, prompt: str, **kw: Any) -> str:
    return "".join(model.stream(prompt, max_new_tokens=N, **kw))


@pytest.mark.parametrize("kw", [{}, {"do_sample": True, "seed": 7}])
def test_interleaved_streams_each_give_their_own_text(model, kw):
    want = [_alone(model, p, **kw) for p in PROMPTS]
    assert want[0] != want[1]
    streams = [model.stream(p, max_new_tokens=N, **kw) for p in PROMPTS]
    got: List[List[str]] = [[], []]
    live = [True, True]
    while any(live):  # one piece of each in turn, on this thread
        for i, s in enumerate(streams):
            if live[i]:
                piece = next(s, None)
                if piece is None:
                    live[i] = False
                else:
                    got[i].append(piece)
    assert ["".join(g) for g in got] == want


def test_a_stream_generate_and_step_between_pieces(model):
    # other users of the model's cache between two pieces do not change the stream's text
    want = _alone(model, PROMPTS[0])
    s = model.stream(PROMPTS[0], max_new_tokens=N)
    pieces = [next(s)]
    model.generate(model.tokenizer.encode(PROMPTS[1]), max_new_tokens=3)
    pieces.append(next(s))
    model.reset()
    model.step([1, 2, 3])
    pieces.extend(s)
    assert "".join(pieces) == want


def test_one_stream_read_from_several_threads(model):
    s = model.stream(PROMPTS[0], max_new_tokens=N)
    first = next(s)  # the main thread takes the first piece, the workers the rest
    got: List[str] = []
    lock = threading.Lock()

    def read() -> None:
        for piece in s:
            with lock:
                got.append(piece)

    workers = [threading.Thread(target=read, daemon=True) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers), "a thread reading the stream did not finish"
    # the stream hands out its pieces in order, one next() at a time, but a
    # worker may append its piece after another's: compare the pieces as a multiset
    assert sorted([first, *got]) == sorted(model.stream(PROMPTS[0], max_new_tokens=N))


def test_an_abandoned_stream_holds_nothing(model):
    want = model.generate(model.tokenizer.encode(PROMPTS[1]), max_new_tokens=4)
    s = model.stream(PROMPTS[0], max_new_tokens=N)
    next(s)  # read one piece, then never again (not closed, still referenced)
    out: List[Any] = []
    t = threading.Thread(target=lambda: out.append(model.generate(model.tokenizer.encode(PROMPTS[1]),
                                                                   max_new_tokens=4)), daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "generate() on another thread waited for a stream nobody reads"
    assert (out[0] == want).all()
    s.close()
    with pytest.raises(StopIteration):
        next(s)
