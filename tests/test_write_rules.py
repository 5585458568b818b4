"""The write rules both write paths call (write_rules.py, keys.py's column forms): the
scalar and the vectorised form of each are one definition and agree (issue 19, item 3)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from feast_redis_hexpire.keys import escape_component, int_texts, string_texts
from feast_redis_hexpire.write_rules import expiry_ms, numeric
from feast_redis_hexpire.write_script import EVENT_TIME_DIGITS, EXPIRY_DIGITS

MICROS = st.integers(min_value=-(2**62), max_value=2**62)
TTL_MS = st.integers(min_value=1, max_value=10**12)


@given(st.lists(MICROS, min_size=1, max_size=30), TTL_MS)
def test_scalar_and_column_forms_agree(micros, ttl_ms):
    column = np.array(micros, dtype=np.int64)
    assert expiry_ms(column, ttl_ms).tolist() == [expiry_ms(m, ttl_ms) for m in micros]
    assert numeric(column).tolist() == [bool(numeric(m)) for m in micros]
    expire = expiry_ms(column, ttl_ms)
    assert numeric(column, expire).tolist() == [bool(numeric(m, expiry_ms(m, ttl_ms))) for m in micros]


@given(MICROS, TTL_MS)
def test_text_comparison_only_for_fixed_width_unsigned_digits(micros, ttl_ms):
    """Where the flag is off, the script compares text: that is only right for digits of
    the fixed widths, no sign (a 16-character negative time compares wrongly as text)."""
    text, expire = b"%d" % micros, b"%d" % expiry_ms(micros, ttl_ms)
    assert bool(numeric(micros)) == (not (text.isdigit() and len(text) == EVENT_TIME_DIGITS))
    fixed = text.isdigit() and len(text) == EVENT_TIME_DIGITS and expire.isdigit() and len(expire) == EXPIRY_DIGITS
    assert bool(numeric(micros, expiry_ms(micros, ttl_ms))) == (not fixed)


@given(st.lists(st.text(max_size=8), max_size=20))
def test_a_column_of_join_key_strings_is_spelled_as_each_value(values):
    assert string_texts(values) == [escape_component(value) for value in values]


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=20))
def test_a_column_of_join_key_ints_is_spelled_as_each_value(values):
    assert int_texts(values) == [str(value) for value in values]
