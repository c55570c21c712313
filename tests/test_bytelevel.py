"""The Cython byte-level alphabet against its pure-Python reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyllm.tokenizers import bytelevel


def test_alphabet_is_a_bijection_onto_printable_symbols():
    table = bytelevel.bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"


def test_every_byte_matches_reference():
    data = bytes(range(256))
    assert bytelevel.encode_bytelevel(data) == bytelevel.encode_bytelevel_ref(data)
    assert bytelevel.decode_bytelevel(bytelevel.encode_bytelevel_ref(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_round_trip(data):
    sym = bytelevel.encode_bytelevel(data)
    assert sym == bytelevel.encode_bytelevel_ref(data)
    assert bytelevel.decode_bytelevel(sym) == data


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50))
def test_decode_agrees_with_reference_on_any_text(text):
    try:
        want = bytelevel.decode_bytelevel_ref(text)
    except ValueError:
        with pytest.raises(ValueError, match="not a byte-level symbol"):
            bytelevel.decode_bytelevel(text)
    else:
        assert bytelevel.decode_bytelevel(text) == want


def test_type_errors():
    with pytest.raises(TypeError):
        bytelevel.encode_bytelevel("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bytelevel.decode_bytelevel(b"bytes")  # type: ignore[arg-type]
