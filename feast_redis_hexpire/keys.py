"""Key layout: one readable, injective Redis key per entity per project.

    <prefix>:<project>:<join_key>=<value>[:<join_key>=<value>...]

Join keys are sorted by name. Characters that would make two entities share a key
(`:`, `=`, `%`), Redis Cluster hash-tag braces and non-printables are percent-escaped,
so `user_id=a:b` becomes `user_id=a%3Ab`. Int values are written as digits; a join
key has one declared type, so `42` and `"42"` never meet in one repo.

With `hash_tag: project` the project component is wrapped in braces,
`<prefix>:{<project>}:<join_key>=<value>`, so Redis Cluster hashes only the project name
and the whole project lands in one slot. Escaping keeps every other brace out of keys,
so that tag is the only one and the layout stays injective.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from .errors import InvalidEntityKey

_ESCAPED = {ord(c): f"%{ord(c):02X}" for c in "%:={}"}
_ESCAPED.update({c: f"%{c:02X}" for c in range(0x21)})
_ESCAPED[0x7F] = "%7F"
NEEDS_ESCAPE = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_ESCAPED)) + "]")
_GLOB_SPECIAL = {ord(c): "\\" + c for c in "*?[]\\"}


def escape_component(text: str) -> str:
    return text.translate(_ESCAPED)


def string_texts(values: Sequence[str]) -> list[str]:
    """A column of string join-key values as keys spell them (escape_component): one regex
    search over the joined values decides whether any needs escaping (almost none does)."""
    texts = list(values)
    if NEEDS_ESCAPE.search("".join(texts)):
        return [escape_component(text) for text in texts]
    return texts


def int_texts(values: Iterable[int]) -> list[str]:
    """A column of int join-key values as keys spell them: decimal digits."""
    return list(map(str, values))


def _unescape_component(text: str) -> str:
    if "%" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "%":
            out.append(chr(int(text[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def bytes_value_text(value: bytes) -> str:
    return "".join(f"%{b:02X}" for b in value)


VALUE_TEXT: dict[str, Callable[[Any], str]] = {
    "string_val": escape_component,
    "int64_val": str,
    "int32_val": str,
    "unix_timestamp_val": str,
    "bytes_val": bytes_value_text,
}
"""How a join-key value of each ValueProto kind is spelled in a key. Shared by the proto
path (`entity_value_text`) and the read fast path, which spells Python values directly."""

COLUMN_TEXTS: dict[str, Callable[[Sequence[Any]], list[str]]] = {
    "string_val": string_texts,
    "int64_val": int_texts,
    "int32_val": int_texts,
    "unix_timestamp_val": int_texts,
    "bytes_val": lambda values: [bytes_value_text(value) for value in values],
}
"""The same spelling for a whole column of values at once (VALUE_TEXT per value)."""


def entity_value_text(join_key: str, value: ValueProto) -> str:
    kind = value.WhichOneof("val")
    text_of = VALUE_TEXT.get(kind) if kind is not None else None
    if text_of is not None:
        return text_of(getattr(value, kind))  # type: ignore[arg-type]
    if kind is None or kind == "null_val":
        raise InvalidEntityKey(
            f"join key {join_key!r}: the entity value is null; every join key needs a value", feature=join_key
        )
    raise InvalidEntityKey(
        f"join key {join_key!r}: unsupported entity value type {kind}; use a string, int32, int64 or bytes join key",
        feature=join_key,
        value=getattr(value, kind),
    )


PROJECT_HASH_TAG = "project"


def project_prefix(key_prefix: str, project: str, hash_tag: str = "none") -> str:
    """`fs:proj:`, or `fs:{proj}:` with `hash_tag` "project" (a HashTag or its value)."""
    if hash_tag == PROJECT_HASH_TAG:
        return f"{key_prefix}:{{{escape_component(project)}}}:"
    return f"{key_prefix}:{escape_component(project)}:"


def project_prefixes(key_prefix: str, project: str) -> tuple[str, str]:
    """The project's prefix in both layouts (untagged, tagged): maintenance covers both, so
    keys written before a change of `hash_tag` are still found."""
    return project_prefix(key_prefix, project), project_prefix(key_prefix, project, PROJECT_HASH_TAG)


def join_key_head(join_key: str) -> str:
    """`user_id=`: the part of a key component before the value."""
    return escape_component(join_key) + "="


def entity_key_texts(prefix: str, columns: Sequence[tuple[str, Sequence[ValueProto]]]) -> list[str]:
    """The key of each row of column-oriented join-key values (Feast's read-path shape)."""
    return key_texts(prefix, [(name, [entity_value_text(name, value) for value in values]) for name, values in columns])


def key_texts(prefix: str, columns: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """The key of each row, from each join key's value texts (as entity_value_text spells
    them). Join keys are sorted by name, so column order never matters. This is the one
    place the entity part of the layout is spelled out."""
    columns = sorted(columns, key=lambda column: column[0])
    if len(columns) == 1:
        name, texts = columns[0]
        head = prefix + join_key_head(name)
        return [head + text for text in texts]
    heads = [join_key_head(name) for name, _ in columns]
    return [
        prefix + ":".join(head + text for head, text in zip(heads, row))
        for row in zip(*(texts for _, texts in columns))
    ]


def entity_suffix(entity_key: EntityKeyProto) -> str:
    """`user_id=u0001` part of the key."""
    names, values = entity_key.join_keys, entity_key.entity_values
    if len(names) != len(values):
        raise InvalidEntityKey(f"entity key has {len(names)} join keys {list(names)} but {len(values)} values")
    if not names:
        raise InvalidEntityKey("entity key has no join keys")
    return entity_key_texts("", [(name, (value,)) for name, value in zip(names, values)])[0]


def entity_redis_key(prefix: str, entity_key: EntityKeyProto) -> bytes:
    """`prefix` is `project_prefix(...)`, computed once per batch."""
    return (prefix + entity_suffix(entity_key)).encode()


def key_builder(prefix: str, join_keys: Sequence[str]) -> Callable[[EntityKeyProto], bytes]:
    """The key of each EntityKey of a view keyed on `join_keys`, checking that the entity
    key names exactly those. With one join key (the common case) the key is built without
    the general path's sorting and per-component lists: it is on the write path per row."""
    expected = tuple(sorted(join_keys))
    if len(expected) == 1:
        name = expected[0]
        head = prefix + join_key_head(name)

        def single(entity_key: EntityKeyProto) -> bytes:
            names = entity_key.join_keys
            if len(names) == 1 and names[0] == name and len(entity_key.entity_values) == 1:
                return (head + entity_value_text(name, entity_key.entity_values[0])).encode()
            _check_join_keys(entity_key, expected)
            return entity_redis_key(prefix, entity_key)

        return single

    def general(entity_key: EntityKeyProto) -> bytes:
        _check_join_keys(entity_key, expected)
        return entity_redis_key(prefix, entity_key)

    return general


def _check_join_keys(entity_key: EntityKeyProto, expected: tuple[str, ...]) -> None:
    names = list(entity_key.join_keys)
    if len(names) != len(entity_key.entity_values):
        raise InvalidEntityKey(
            f"entity key has {len(names)} join keys {names} but {len(entity_key.entity_values)} values"
        )
    if tuple(sorted(names)) != expected:
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        raise InvalidEntityKey(
            f"entity key has join keys {names}, expected {list(expected)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )


def project_scan_pattern(
    key_prefix: str, project: str, join_keys: Sequence[str] | None = None, hash_tag: str = "none"
) -> str:
    """SCAN MATCH pattern for a project's keys, optionally narrowed to one join-key set."""
    base = project_prefix(key_prefix, project, hash_tag).translate(_GLOB_SPECIAL)
    if not join_keys:
        return base + "*"
    return base + ":".join(f"{escape_component(k).translate(_GLOB_SPECIAL)}=*" for k in sorted(join_keys))


def join_key_names(key: bytes | str, key_prefix: str, project: str) -> tuple[str, ...]:
    """Join-key names in a stored key; filters SCAN hits whose `*` swallowed extra components."""
    text = key.decode() if isinstance(key, bytes) else key
    untagged, tagged = project_prefixes(key_prefix, project)
    rest = text[len(tagged if text.startswith(tagged) else untagged) :]
    return tuple(_unescape_component(part.split("=", 1)[0]) for part in rest.split(":"))


def parse_entity_suffix(suffix: str) -> dict[str, str]:
    """Inverse of entity_suffix for display (values come back as text)."""
    out: dict[str, str] = {}
    for part in suffix.split(":"):
        name, _, value = part.partition("=")
        out[_unescape_component(name)] = _unescape_component(value)
    return out


def same_join_keys(a: Iterable[str], b: Iterable[str]) -> bool:
    return sorted(a) == sorted(b)
