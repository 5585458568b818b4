"""Unit tests for the Redis key layout (`feast_redis_hexpire.keys`). No Redis needed.

Layout under test: ``<prefix>:<project>:<join_key>=<value>[:<join_key>=<value>...]``,
join keys sorted by name, `%`, `:`, `=`, `{`, `}`, controls/space and DEL percent-escaped;
with ``hash_tag: project`` the project component is ``{<project>}`` (a Redis Cluster hash tag).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import BoolList, Null, StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feast_redis_hexpire.config import HashTag
from feast_redis_hexpire.errors import InvalidEntityKey
from feast_redis_hexpire.keys import (
    PROJECT_HASH_TAG,
    entity_key_texts,
    entity_redis_key,
    entity_suffix,
    entity_value_text,
    escape_component,
    join_key_names,
    key_texts,
    parse_entity_suffix,
    project_prefix,
    project_prefixes,
    project_scan_pattern,
)
from feast_redis_hexpire.serving import native_key_texts, native_value_protos

PROPERTY = settings(max_examples=75, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
LAYOUTS = ("none", PROJECT_HASH_TAG)

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


# --------------------------------------------------------------------------- helpers


def entity_key(pairs: Sequence[tuple[str, ValueProto]]) -> EntityKeyProto:
    """An EntityKey with join keys in exactly the given (possibly unsorted) order."""
    return EntityKeyProto(join_keys=[name for name, _ in pairs], entity_values=[value for _, value in pairs])


def s(text: str) -> ValueProto:
    return ValueProto(string_val=text)


def key_of(
    pairs: Sequence[tuple[str, ValueProto]], key_prefix: str = "fs", project: str = "proj", hash_tag: str = "none"
) -> bytes:
    return entity_redis_key(project_prefix(key_prefix, project, hash_tag), entity_key(pairs))


def cluster_hash_tag(key: bytes) -> bytes:
    """What Redis Cluster hashes (cluster spec): the text between the first `{` and the next
    `}` when that is non-empty, else the whole key."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def redis_glob(pattern: str) -> re.Pattern[str]:
    """Reference for Redis' SCAN MATCH glob (stringmatchlen) restricted to what the store
    emits: `*`, `?` and backslash escapes. An unescaped `[` would be a character class,
    which the store must never produce, so it is rejected here."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c in "[]":
            raise AssertionError(f"unescaped {c!r} in SCAN pattern {pattern!r}")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_matches(pattern: str, key: bytes) -> bool:
    return redis_glob(pattern).fullmatch(key.decode()) is not None


# --------------------------------------------------------------------------- strategies

# Characters that are special for the layout, for Redis Cluster hash tags, for SCAN globs,
# plus controls / DEL / C1 controls / non-ASCII. Mixed with arbitrary unicode below.
TRICKY = ":=%{}*?[]\\ \t\n\r\x00\x01\x1f\x7f\x80\x85\xa0é日\U0001f600%3A%25%7B"

tricky_text = st.text(alphabet=TRICKY, max_size=8)
any_text = st.one_of(tricky_text, st.text(max_size=12), st.just(""))

# Join-key names: realistic ones plus names containing layout/glob specials.
join_key_name = st.one_of(
    st.sampled_from(["user_id", "merchant_id", "zone", "a", "aa", "b", "user_idx", "driver"]),
    st.text(alphabet="ab:=%{}*?[]\\ _", min_size=1, max_size=5),
    st.text(min_size=1, max_size=6),
)

VALUE_KINDS = ("string", "int32", "int64", "bytes")


def value_of(kind: str) -> st.SearchStrategy[ValueProto]:
    if kind == "string":
        return any_text.map(lambda v: ValueProto(string_val=v))
    if kind == "int32":
        return st.integers(*INT32).map(lambda v: ValueProto(int32_val=v))
    if kind == "int64":
        return st.integers(*INT64).map(lambda v: ValueProto(int64_val=v))
    if kind == "bytes":
        return st.binary(max_size=8).map(lambda v: ValueProto(bytes_val=v))
    raise AssertionError(kind)


@st.composite
def schemas(draw, kinds: Sequence[str] = VALUE_KINDS) -> tuple[tuple[str, str], ...]:
    """1-3 distinct join-key names, each with one declared value kind."""
    names = draw(st.lists(join_key_name, min_size=1, max_size=3, unique=True))
    return tuple((name, draw(st.sampled_from(kinds))) for name in names)


@st.composite
def entity_rows(draw, schema: tuple[tuple[str, str], ...]) -> list[tuple[str, ValueProto]]:
    return [(name, draw(value_of(kind))) for name, kind in schema]


def value_identity(value: ValueProto):
    return value.WhichOneof("val"), getattr(value, value.WhichOneof("val"))


def row_identity(row: Sequence[tuple[str, ValueProto]]):
    return tuple(sorted((name, value_identity(value)) for name, value in row))


# --------------------------------------------------------------------------- examples


def test_string_key_layout():
    assert key_of([("user_id", s("u0001"))]) == b"fs:proj:user_id=u0001"


def test_redis_key_is_bytes_and_prefix_plus_suffix():
    ek = entity_key([("user_id", s("u0001"))])
    prefix = project_prefix("fs", "proj")
    assert prefix == "fs:proj:"
    key = entity_redis_key(prefix, ek)
    assert isinstance(key, bytes)
    assert key == (prefix + entity_suffix(ek)).encode()


@pytest.mark.parametrize(
    "value, text",
    [
        (ValueProto(int64_val=42), "42"),
        (ValueProto(int64_val=-42), "-42"),
        (ValueProto(int64_val=0), "0"),
        (ValueProto(int64_val=2**63 - 1), str(2**63 - 1)),
        (ValueProto(int64_val=-(2**63)), str(-(2**63))),
        (ValueProto(int32_val=7), "7"),
        (ValueProto(int32_val=-(2**31)), str(-(2**31))),
        (ValueProto(int32_val=2**31 - 1), str(2**31 - 1)),
    ],
)
def test_int_keys_are_plain_digits(value, text):
    assert key_of([("driver_id", value)]) == f"fs:proj:driver_id={text}".encode()


def test_int32_and_int64_of_same_number_share_a_key():
    # One join key has one declared type; documented: ints are written as digits.
    assert key_of([("id", ValueProto(int32_val=5))]) == key_of([("id", ValueProto(int64_val=5))])


def test_composite_key_sorted_by_join_key_name():
    expected = b"fs:proj:merchant_id=m9:user_id=u1"
    assert key_of([("user_id", s("u1")), ("merchant_id", s("m9"))]) == expected
    assert key_of([("merchant_id", s("m9")), ("user_id", s("u1"))]) == expected


def test_composite_key_three_join_keys_mixed_types_any_order():
    rows = [("zone", ValueProto(int32_val=3)), ("a", s("x")), ("m", ValueProto(int64_val=-1))]
    expected = b"fs:proj:a=x:m=-1:zone=3"
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0]):
        assert key_of([rows[i] for i in order]) == expected


def test_special_characters_are_escaped_in_values():
    assert key_of([("user_id", s("a:b"))]) == b"fs:proj:user_id=a%3Ab"
    assert key_of([("user_id", s("a=b%c"))]) == b"fs:proj:user_id=a%3Db%25c"
    assert key_of([("user_id", s("{tag}"))]) == b"fs:proj:user_id=%7Btag%7D"
    assert key_of([("user_id", s("a b\x00\x7f"))]) == b"fs:proj:user_id=a%20b%00%7F"
    assert key_of([("user_id", s(""))]) == b"fs:proj:user_id="
    assert key_of([("user_id", s("é日"))]) == "fs:proj:user_id=é日".encode()


def test_special_characters_are_escaped_in_names_and_project():
    assert key_of([("a:b", s("v"))], project="p:q") == b"fs:p%3Aq:a%3Ab=v"
    assert key_of([("k=", s("v"))], project="{p}") == b"fs:%7Bp%7D:k%3D=v"
    assert project_prefix("fs", "a%b") == "fs:a%25b:"


def test_escaped_text_cannot_collide_with_literal_escape_sequence():
    assert key_of([("k", s(":"))]) != key_of([("k", s("%3A"))])
    assert key_of([("k", s("%"))]) != key_of([("k", s("%25"))])


def test_bytes_key_is_percent_hex():
    assert key_of([("k", ValueProto(bytes_val=b"\x00\xffA"))]) == b"fs:proj:k=%00%FF%41"


def test_entityless_dummy_key():
    # Feast's entityless views use join key `__dummy_id` with an empty string value.
    assert key_of([("__dummy_id", s(""))]) == b"fs:proj:__dummy_id="


def test_distinct_projects_and_prefixes_give_distinct_keys():
    row = [("user_id", s("u1"))]
    keys = {key_of(row, "fs", "p"), key_of(row, "fs", "q"), key_of(row, "fs2", "p"), key_of(row, "fs", "p:q")}
    assert len(keys) == 4


# --------------------------------------------------------------------------- injectivity (properties)


@PROPERTY
@given(data=st.data())
def test_injective_within_one_schema(data):
    """Same join-key names and types: distinct entity keys <=> distinct Redis keys."""
    hash_tag = data.draw(st.sampled_from(LAYOUTS))
    schema = data.draw(schemas())
    rows = data.draw(st.lists(entity_rows(schema), min_size=2, max_size=6))
    # An equal entity key built from fresh protos, in shuffled join-key order.
    twin = data.draw(st.permutations(data.draw(st.sampled_from(rows))))
    rows.append([(name, ValueProto.FromString(value.SerializeToString())) for name, value in twin])
    keys = [key_of(row, hash_tag=hash_tag) for row in rows]
    for i in range(len(rows)):
        for j in range(len(rows)):
            same_entity = row_identity(rows[i]) == row_identity(rows[j])
            assert (keys[i] == keys[j]) == same_entity, (rows[i], rows[j], keys[i], keys[j])


@PROPERTY
@given(schema=schemas(kinds=("string",)), data=st.data())
def test_injective_for_near_miss_string_values(schema, data):
    """Pairs built to differ only by characters the escaping must keep apart."""
    row = data.draw(entity_rows(schema))
    name, value = data.draw(st.sampled_from(row))
    original = value.string_val
    pos = data.draw(st.integers(0, len(original)))
    insert = data.draw(st.sampled_from([":", "=", "%", "%3A", "%25", "{", "}", " ", "\x00", "=x:y"]))
    changed = original[:pos] + insert + original[pos:]
    other = [(n, s(changed) if n == name else v) for n, v in row]
    assert key_of(row) != key_of(other)


@PROPERTY
@given(data=st.data())
def test_injective_across_string_schemas(data):
    """String-valued keys of different join-key sets never collide either."""
    rows = data.draw(st.lists(schemas(kinds=("string",)).flatmap(entity_rows), min_size=2, max_size=5))
    for a in rows:
        for b in rows:
            same = {n: v.string_val for n, v in a} == {n: v.string_val for n, v in b}
            assert (key_of(a) == key_of(b)) == same


@PROPERTY
@given(data=st.data())
def test_equal_entity_keys_give_equal_redis_keys_in_any_order(data):
    schema = data.draw(schemas())
    row = data.draw(entity_rows(schema))
    shuffled = data.draw(st.permutations(row))
    # Fresh, equal protos (not the same objects) in a different join-key order.
    copy = [(name, ValueProto.FromString(value.SerializeToString())) for name, value in shuffled]
    assert key_of(row) == key_of(copy)
    assert entity_suffix(entity_key(row)) == entity_suffix(entity_key(copy))


@PROPERTY
@given(data=st.data(), project=any_text)
def test_key_structure_no_hash_tags_no_raw_separators(data, project):
    schema = data.draw(schemas())
    row = data.draw(entity_rows(schema))
    key = key_of(row, "fs", project)
    # Redis Cluster hash tags: a `{...}` anywhere would pin the slot; braces must never appear.
    assert b"{" not in key and b"}" not in key
    # No spaces / control characters / DEL (readable in redis-cli, safe in logs).
    assert not any(b <= 0x20 or b == 0x7F for b in key)
    text = key.decode()
    parts = text.split(":")
    # prefix, project, then exactly one component per join key: no raw `:` in any part.
    assert len(parts) == 2 + len(row)
    assert parts[0] == "fs"
    assert parts[1] == escape_component(project)
    for part, (name, _value) in zip(parts[2:], sorted(row, key=lambda p: p[0])):
        # Exactly one `=`: no raw `=` in a name or value.
        assert part.count("=") == 1
        key_name, _, key_value = part.partition("=")
        assert key_name == escape_component(name)
        # `%` only as the start of an escape.
        assert re.fullmatch(r"(?:[^%]|%[0-9A-F]{2})*", key_value), key_value


@PROPERTY
@given(data=st.data(), project=any_text.filter(bool))
def test_tagged_layout_has_exactly_the_project_hash_tag(data, project):
    schema = data.draw(schemas())
    rows = data.draw(st.lists(entity_rows(schema), min_size=1, max_size=3))
    tag = escape_component(project).encode()
    for row in rows:
        key = key_of(row, "fs", project, PROJECT_HASH_TAG)
        assert key == b"fs:{" + tag + b"}:" + key_of(row, "fs", project).split(b":", 2)[2]
        assert key.count(b"{") == 1 and key.count(b"}") == 1
        # Every entity of the project hashes to the same slot: Redis hashes only the tag.
        assert cluster_hash_tag(key) == tag
        untagged = key_of(row, "fs", project)
        assert cluster_hash_tag(untagged) == untagged  # no tag: spread over all slots
        assert key != untagged


def test_hash_tag_layout_examples():
    assert project_prefix("fs", "proj", "project") == "fs:{proj}:"
    assert project_prefix("fs", "proj", HashTag.project) == "fs:{proj}:"
    assert project_prefix("fs", "proj", HashTag.none) == "fs:proj:"
    assert project_prefix("fs", "proj", "none") == "fs:proj:"
    assert project_prefix("fs", "{p}", "project") == "fs:{%7Bp%7D}:"
    assert project_prefixes("fs", "proj") == ("fs:proj:", "fs:{proj}:")
    key = key_of([("user_id", s("u0001"))], hash_tag=PROJECT_HASH_TAG)
    assert key == b"fs:{proj}:user_id=u0001"
    assert project_scan_pattern("fs", "proj", ("user_id",), PROJECT_HASH_TAG) == "fs:{proj}:user_id=*"
    assert project_scan_pattern("fs", "proj", hash_tag=HashTag.project) == "fs:{proj}:*"
    assert glob_matches("fs:{proj}:user_id=*", key)
    assert not glob_matches("fs:proj:*", key)
    assert join_key_names(key, "fs", "proj") == ("user_id",)
    assert join_key_names(b"fs:{proj}:a=1:b=2", "fs", "proj") == ("a", "b")


# --------------------------------------------------------------------------- parse_entity_suffix


def test_parse_entity_suffix_examples():
    assert parse_entity_suffix("user_id=u0001") == {"user_id": "u0001"}
    assert parse_entity_suffix("merchant_id=m%3A1:user_id=a%3Db") == {"merchant_id": "m:1", "user_id": "a=b"}
    assert parse_entity_suffix("user_id=") == {"user_id": ""}


@PROPERTY
@given(schema=schemas(kinds=("string",)), data=st.data())
def test_parse_entity_suffix_round_trips_strings(schema, data):
    row = data.draw(entity_rows(schema))
    suffix = entity_suffix(entity_key(row))
    assert parse_entity_suffix(suffix) == {name: value.string_val for name, value in row}
    # and from the full key, after stripping the project prefix
    prefix = project_prefix("fs", "proj")
    key = entity_redis_key(prefix, entity_key(row)).decode()
    assert key.startswith(prefix)
    assert parse_entity_suffix(key[len(prefix) :]) == {name: value.string_val for name, value in row}


@PROPERTY
@given(schema=schemas(kinds=("int32", "int64")), data=st.data())
def test_parse_entity_suffix_gives_ints_as_text(schema, data):
    row = data.draw(entity_rows(schema))
    parsed = parse_entity_suffix(entity_suffix(entity_key(row)))
    assert parsed == {name: str(value_identity(value)[1]) for name, value in row}


# --------------------------------------------------------------------------- SCAN pattern / join_key_names


def test_scan_pattern_structure():
    assert project_scan_pattern("fs", "proj") == "fs:proj:*"
    assert project_scan_pattern("fs", "proj", ()) == "fs:proj:*"
    assert project_scan_pattern("fs", "proj", ("user_id",)) == "fs:proj:user_id=*"
    assert project_scan_pattern("fs", "proj", ("user_id", "merchant_id")) == "fs:proj:merchant_id=*:user_id=*"
    assert project_scan_pattern("fs", "proj", ["merchant_id", "user_id"]) == "fs:proj:merchant_id=*:user_id=*"


def test_scan_pattern_escapes_glob_specials():
    assert project_scan_pattern("fs", "a*b?[c]\\") == "fs:a\\*b\\?\\[c\\]\\\\:*"
    assert project_scan_pattern("f*", "p", ("k?",)) == "f\\*:p:k\\?=*"
    # layout escaping first, then glob escaping
    assert project_scan_pattern("fs", "p:q", ("a:b",)) == "fs:p%3Aq:a%3Ab=*"


def test_scan_pattern_matches_examples():
    pattern = project_scan_pattern("fs", "proj", ("user_id",))
    assert glob_matches(pattern, b"fs:proj:user_id=u0001")
    assert glob_matches(pattern, b"fs:proj:user_id=")
    assert not glob_matches(pattern, b"fs:proj:user_idx=1")
    assert not glob_matches(pattern, b"fs:proj2:user_id=1")
    assert not glob_matches(pattern, b"fs:proj:merchant_id=1:user_id=2")
    # The `*` does swallow extra components; join_key_names lets the caller drop them.
    composite = key_of([("user_id", s("u1")), ("zone", s("z"))])
    assert glob_matches(pattern, composite)
    assert join_key_names(composite, "fs", "proj") == ("user_id", "zone")
    assert not same_join_keys(join_key_names(composite, "fs", "proj"), ("user_id",))
    assert join_key_names(b"fs:proj:user_id=u1", "fs", "proj") == ("user_id",)


def test_join_key_names_accepts_str_and_unescapes():
    key = key_of([("a:b", s("x")), ("c=d", s("y"))], project="p:q")
    assert join_key_names(key, "fs", "p:q") == ("a:b", "c=d")
    assert join_key_names(key.decode(), "fs", "p:q") == ("a:b", "c=d")


def same_join_keys(a: Sequence[str], b: Sequence[str]) -> bool:
    return sorted(a) == sorted(b)


@PROPERTY
@given(
    data=st.data(),
    project=any_text,
    other_projects=st.lists(any_text, max_size=2),
    schema_list=st.lists(schemas(), min_size=1, max_size=4),
)
def test_scan_pattern_plus_join_key_filter_selects_exactly_one_entity_set(data, project, other_projects, schema_list):
    wanted_schema = schema_list[0]
    wanted = tuple(name for name, _ in wanted_schema)
    population = []  # (key, project, layout, join-key names)
    for proj in [project, *other_projects]:
        for schema in schema_list:
            for row in data.draw(st.lists(entity_rows(schema), min_size=1, max_size=2)):
                layout = data.draw(st.sampled_from(LAYOUTS))
                population.append((key_of(row, "fs", proj, layout), proj, layout, tuple(n for n, _ in row)))

    hash_tag = data.draw(st.sampled_from(LAYOUTS))
    pattern = project_scan_pattern("fs", project, wanted, hash_tag)
    project_pattern = project_scan_pattern("fs", project, hash_tag=hash_tag)
    for key, proj, layout, names in population:
        in_project = proj == project and layout == hash_tag
        assert glob_matches(project_pattern, key) == in_project, (project_pattern, key)
        if in_project and same_join_keys(names, wanted):
            assert glob_matches(pattern, key), (pattern, key)
        if glob_matches(pattern, key):
            assert in_project, (pattern, key)
            found = join_key_names(key, "fs", project)
            assert sorted(found) == sorted(names)
            assert same_join_keys(found, wanted) == same_join_keys(names, wanted)


# --------------------------------------------------------------------------- unsupported entity values


@pytest.mark.parametrize(
    "value, kind",
    [
        (ValueProto(), "null"),
        (ValueProto(null_val=Null.NULL), "null"),
        (ValueProto(double_val=1.5), "double_val"),
        (ValueProto(float_val=1.5), "float_val"),
        (ValueProto(bool_val=True), "bool_val"),
        (ValueProto(string_list_val=StringList(val=["a"])), "string_list_val"),
        (ValueProto(bool_list_val=BoolList(val=[True])), "bool_list_val"),
    ],
)
def test_unsupported_entity_value_raises_naming_join_key(value, kind):
    with pytest.raises(InvalidEntityKey) as err:
        key_of([("customer_ref", value)])
    message = str(err.value)
    assert "customer_ref" in message
    assert kind in message


def test_unsupported_value_in_composite_key_names_the_offending_join_key():
    with pytest.raises(InvalidEntityKey) as err:
        key_of([("user_id", s("u1")), ("bad_key", ValueProto(double_val=2.0)), ("zone", s("z"))])
    assert "bad_key" in str(err.value)
    assert "user_id" not in str(err.value)


def test_join_keys_and_values_of_different_lengths_are_rejected_by_name():
    prefix = project_prefix("fs", "proj")
    short = EntityKeyProto(join_keys=["user_id"], entity_values=[])
    with pytest.raises(InvalidEntityKey, match=r"1 join keys \['user_id'\] but 0 values"):
        entity_redis_key(prefix, short)
    extra = EntityKeyProto(join_keys=["a", "b"], entity_values=[ValueProto(string_val="x")])
    with pytest.raises(InvalidEntityKey, match=r"2 join keys \['a', 'b'\] but 1 values"):
        entity_redis_key(prefix, extra)


# ---------------------------------------------------------------- the serving path spells Python values


JOIN_KEY_VALUES = {
    ValueType.INT64: st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ValueType.INT32: st.integers(min_value=-(2**31), max_value=2**31 - 1),
    ValueType.STRING: st.text(),
    ValueType.BYTES: st.binary(),
}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), value_type=st.sampled_from(sorted(JOIN_KEY_VALUES, key=lambda vt: vt.name)))
def test_python_join_key_values_give_the_keys_of_their_protos(data, value_type):
    """Keys spelled straight from Python values equal the keys keys.py builds from the
    ValueProtos Feast makes of the same values, for every join-key type the fast path takes."""
    values = data.draw(st.lists(JOIN_KEY_VALUES[value_type], min_size=1, max_size=5))
    protos = python_values_to_proto_values(values, value_type)
    if value_type is ValueType.BYTES and b"" in values:
        # Feast makes nulls of a column of empty bytes (and bytes_val of one beside others):
        # the fast path leaves such columns to Feast's conversion.
        assert native_key_texts(value_type, values) is None
        return
    assert native_key_texts(value_type, values) == [entity_value_text("k", proto) for proto in protos]
    assert native_value_protos(value_type, values) == protos
    prefix = project_prefix("fs", "p")
    assert key_texts(prefix, [("k", native_key_texts(value_type, values))]) == entity_key_texts(prefix, [("k", protos)])


@pytest.mark.parametrize(
    ("value_type", "values"),
    [
        (ValueType.INT64, [1, True]),  # a bool is an int to Python, not to Feast
        (ValueType.INT64, [1, None]),
        (ValueType.INT64, [np.int64(3)]),
        (ValueType.INT64, [2**63]),
        (ValueType.INT32, [2**31]),
        (ValueType.INT64, ["1"]),
        (ValueType.STRING, [1]),
        (ValueType.STRING, [ValueProto(string_val="a")]),
        (ValueType.BYTES, ["a"]),
        (ValueType.UNIX_TIMESTAMP, [1]),
        (ValueType.FLOAT, [1.0]),
        (ValueType.BOOL, [True]),
    ],
)
def test_values_the_fast_path_does_not_spell_go_to_feasts_conversion(value_type, values):
    assert native_key_texts(value_type, values) is None
