"""Comparing what two projects hold in Redis: every key, every field, every TTL.

The provider's parity tests write the same data through Feast's default write path into
one project and through `HexpireProvider` into another, then compare the two projects
key by key (the project component of the key aside).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from feast_redis_hexpire.keys import project_prefix


@dataclass
class KeyState:
    fields: dict[bytes, bytes]
    ttl_ms: int  # PTTL: -1 no expiry
    field_ttls_ms: dict[bytes, int]  # HPTTL per field: -1 no expiry


def project_state(client: redis.Redis, key_prefix: str, project: str) -> dict[bytes, KeyState]:
    """{key without its `<prefix>:<project>:` part: state} for every key of the project."""
    prefix = project_prefix(key_prefix, project).encode()
    return {key[len(prefix) :]: key_state(client, key) for key in client.scan_iter(match=prefix + b"*", count=1000)}


def builtin_state(client: redis.Redis, project: str) -> dict[bytes, KeyState]:
    """The same for Feast's built-in Redis store, whose keys end with the project name."""
    suffix = project.encode()
    return {key[: -len(suffix)]: key_state(client, key) for key in client.scan_iter(match=b"*" + suffix, count=1000)}


def key_state(client: redis.Redis, key: bytes) -> KeyState:
    fields = client.hgetall(key)
    names = sorted(fields)
    ttls = client.execute_command("HPTTL", key, "FIELDS", len(names), *names) if names else []
    return KeyState(
        fields=fields,
        ttl_ms=int(client.pttl(key)),
        field_ttls_ms={name: int(ttl) for name, ttl in zip(names, ttls)},
    )


def _close(a: int, b: int, tolerance_ms: int) -> bool:
    if a < 0 or b < 0:  # -1 (no expiry) and -2 (gone) must agree exactly
        return a == b
    return abs(a - b) <= tolerance_ms


def differences(
    expected: dict[bytes, KeyState],
    actual: dict[bytes, KeyState],
    tolerance_ms: int = 5000,
    clock_fields: bytes | None = None,
) -> list[str]:
    """Everything that differs, one line each (empty when the projects agree). TTLs may
    differ by `tolerance_ms`: the two writes happen a moment apart. So may fields starting
    with `clock_fields` that hold write-time microseconds (Feast stamps on-demand rows
    with the time of the write)."""
    problems = []
    for key in sorted(set(expected) | set(actual)):
        if key not in actual:
            problems.append(f"{key!r}: only on the default path, {expected[key].fields}")
            continue
        if key not in expected:
            problems.append(f"{key!r}: only through the provider, {actual[key].fields}")
            continue
        want, got = expected[key], actual[key]
        if clock_fields is not None:
            want, got = _settle_clocks(want, got, clock_fields, tolerance_ms)
        if want.fields != got.fields:
            problems.append(f"{key!r}: fields differ\n  default:  {want.fields}\n  provider: {got.fields}")
        if not _close(want.ttl_ms, got.ttl_ms, tolerance_ms):
            problems.append(f"{key!r}: key TTL {want.ttl_ms} ms on the default path, {got.ttl_ms} ms via the provider")
        for field in sorted(set(want.field_ttls_ms) | set(got.field_ttls_ms)):
            a, b = want.field_ttls_ms.get(field, -2), got.field_ttls_ms.get(field, -2)
            if not _close(a, b, tolerance_ms):
                problems.append(f"{key!r} field {field!r}: TTL {a} ms on the default path, {b} ms via the provider")
    return problems


def _settle_clocks(want: KeyState, got: KeyState, prefix: bytes, tolerance_ms: int) -> tuple[KeyState, KeyState]:
    """Clock fields within the tolerance count as equal: `got` takes `want`'s value."""
    fields = dict(got.fields)
    for name, value in want.fields.items():
        other = fields.get(name)
        if name.startswith(prefix) and other is not None and abs(int(other) - int(value)) <= tolerance_ms * 1000:
            fields[name] = value
    return want, KeyState(fields, got.ttl_ms, got.field_ttls_ms)


def clear(client: redis.Redis, key_prefix: str, *projects: str) -> None:
    for project in projects:
        keys = list(client.scan_iter(match=project_prefix(key_prefix, project) + "*", count=1000))
        if keys:
            client.unlink(*keys)
