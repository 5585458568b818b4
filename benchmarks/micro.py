"""Micro-benchmarks behind the suggestions in benchmarks/PROFILE.md.

    python -m benchmarks.micro [--redis-url URL] [--out benchmarks/results/micro.json]

Client side (no Redis needed): ways to decode the `_ts:<view>` field into a protobuf
Timestamp, to build ValueProtos, to pack pipelined HMGETs and to read their replies, to
build Feast's FeatureVector, and Feast's own entity-value -> ValueProto conversion that a
store owning get_online_features could skip.

Server side (a private Redis, or --redis-url): Redis CPU per written row for the current
Lua write script vs plain HSET + HPEXPIREAT / PEXPIRE vs HSETEX (Redis >= 8.0), measured
from INFO commandstats deltas. Numbers are per operation; nothing is asserted.
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")

import argparse
import json
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from .run import ROOT, log, machine_info, redis_client, redis_server, write_json


def per_op_us(fn: Callable[[], Any], ops: int, repeat: int = 5) -> float:
    """Best of `repeat` runs, microseconds per operation (fn performs `ops` operations)."""
    best = min(timeit.repeat(fn, number=1, repeat=repeat))
    return round(best / ops * 1e6, 3)


# ---------------------------------------------------------------- client side


def client_side(n: int = 1000) -> dict[str, Any]:
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus, GetOnlineFeaturesResponse
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType
    from google.protobuf.timestamp_pb2 import Timestamp

    rng = np.random.default_rng(0)
    now = datetime(2026, 11, 25, 17, 34, 0)
    stamps = [now - timedelta(microseconds=int(x)) for x in rng.integers(0, 3_600_000_000, n)]
    iso = [(ts.isoformat(timespec="microseconds") + "Z").encode() for ts in stamps]
    epoch = datetime(1970, 1, 1)
    micros = [b"%016d" % ((ts - epoch) // timedelta(microseconds=1)) for ts in stamps]
    out: dict[str, Any] = {"n": n}

    # -- event timestamp text -> Timestamp proto
    def ts_current():  # what planning._timestamp_proto does today
        for raw in iso:
            delta = datetime.fromisoformat(raw[:-1].decode()) - epoch
            Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)

    def ts_slices():  # fixed-width text parsed with int() on slices + days-from-civil
        for raw in iso:
            y, m, d = int(raw[0:4]), int(raw[5:7]), int(raw[8:10])
            y2 = y - (m <= 2)
            era = y2 // 400
            yoe = y2 - era * 400
            doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
            days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
            secs = days * 86400 + int(raw[11:13]) * 3600 + int(raw[14:16]) * 60 + int(raw[17:19])
            Timestamp(seconds=secs, nanos=int(raw[20:26]) * 1000)

    def ts_fromjson():
        for raw in iso:
            t = Timestamp()
            t.FromJsonString(raw.decode())

    def ts_epoch_micros():  # if `_ts:` were stored as fixed-width epoch microseconds (still text-comparable)
        for raw in micros:
            v = int(raw)
            Timestamp(seconds=v // 1_000_000, nanos=v % 1_000_000 * 1000)

    def ts_epoch_micros_cached_date():  # same, reusing the date part: rows of one batch share a day
        cache: dict[bytes, int] = {}
        for raw in iso:
            day = raw[:10]
            base = cache.get(day)
            if base is None:
                base = cache[day] = int((datetime.fromisoformat(day.decode()) - epoch).total_seconds())
            Timestamp(
                seconds=base + int(raw[11:13]) * 3600 + int(raw[14:16]) * 60 + int(raw[17:19]),
                nanos=int(raw[20:26]) * 1000,
            )

    out["timestamp_decode_us"] = {
        "current_fromisoformat_minus_epoch": per_op_us(ts_current, n),
        "int_slices_days_from_civil": per_op_us(ts_slices, n),
        "Timestamp.FromJsonString": per_op_us(ts_fromjson, n),
        "date_part_cached_plus_int_slices": per_op_us(ts_epoch_micros_cached_date, n),
        "stored_as_epoch_micros_text": per_op_us(ts_epoch_micros, n),
    }

    # -- bytes -> ValueProto
    ints = [b"%d" % x for x in rng.integers(0, 10**6, n)]
    floats = [repr(float(x)).encode() for x in rng.uniform(0, 1000, n)]
    strs = [b"dev-%06x" % x for x in rng.integers(0, 16**6, n)]
    field_name = "int64_val"

    def v_kwargs_dict():  # codec._scalar today: ValueProto(**{field: parse(raw)})
        for raw in ints:
            ValueProto(**{field_name: int(raw)})

    def v_kwargs():
        for raw in ints:
            ValueProto(int64_val=int(raw))

    def v_setattr():
        for raw in ints:
            v = ValueProto()
            v.int64_val = int(raw)

    def v_double_kwargs():
        for raw in floats:
            ValueProto(double_val=float(raw))

    def v_str_kwargs():
        for raw in strs:
            ValueProto(string_val=raw.decode())

    def v_parse_from_string():  # if values were stored as serialized ValueProto (the built-in's way)
        blobs = [ValueProto(int64_val=int(raw)).SerializeToString() for raw in ints]

        def run():
            for blob in blobs:
                ValueProto.FromString(blob)

        return run

    out["value_decode_us"] = {
        "int ValueProto(**{field: v}) (today)": per_op_us(v_kwargs_dict, n),
        "int ValueProto(int64_val=v)": per_op_us(v_kwargs, n),
        "int v=ValueProto(); v.int64_val=x": per_op_us(v_setattr, n),
        "double ValueProto(double_val=float(raw))": per_op_us(v_double_kwargs, n),
        "string ValueProto(string_val=raw.decode())": per_op_us(v_str_kwargs, n),
        "ValueProto.FromString (built-in's storage)": per_op_us(v_parse_from_string(), n),
    }

    # -- FeatureVector construction for one feature over n rows
    values = [ValueProto(int64_val=i) for i in range(n)]
    statuses = [FieldStatus.PRESENT] * n
    stamps_pb = [Timestamp(seconds=1764000000 + i) for i in range(n)]

    def fv_kwargs():
        GetOnlineFeaturesResponse.FeatureVector(values=values, statuses=statuses, event_timestamps=stamps_pb)

    def fv_extend():
        vec = GetOnlineFeaturesResponse.FeatureVector()
        vec.values.extend(values)
        vec.statuses.extend(statuses)
        vec.event_timestamps.extend(stamps_pb)

    def fv_values_only():
        GetOnlineFeaturesResponse.FeatureVector(values=values, statuses=statuses)

    int_raws = [b"%d" % (i * 7) for i in range(n)]

    def int_vector_today():  # ValueProto objects, then FeatureVector(values=...) copies them
        response = GetOnlineFeaturesResponse()
        vals = [ValueProto(int64_val=int(raw)) for raw in int_raws]
        response.results.append(GetOnlineFeaturesResponse.FeatureVector(values=vals, statuses=statuses))

    def int_vector_in_place():
        response = GetOnlineFeaturesResponse()
        vec = response.results.add()
        add = vec.values.add
        for raw in int_raws:
            add(int64_val=int(raw))
        vec.statuses.extend(statuses)

    out["feature_vector_us_per_row"] = {
        "FeatureVector(values=, statuses=, event_timestamps=)": per_op_us(fv_kwargs, n, repeat=20),
        "FeatureVector() then .extend x3": per_op_us(fv_extend, n, repeat=20),
        "without event_timestamps (the copy of n Timestamps)": per_op_us(fv_values_only, n, repeat=20),
        "int column: ValueProto objects then FeatureVector(values=...) appended (today)": per_op_us(
            int_vector_today, n, repeat=20
        ),
        "int column: results.add(); values.add(int64_val=...) in place": per_op_us(int_vector_in_place, n, repeat=20),
    }

    out["response_build_ms_1000_entities_5_features_3_views"] = response_build()

    # -- Feast's entity conversion vs building keys straight from python values
    users = [f"u{i:07d}" for i in rng.integers(0, 10**6, n)]

    def feast_entity_protos():
        python_values_to_proto_values(users, ValueType.STRING)

    def keys_from_python():
        head = "benchhx:proj:user_id="
        [(head + u).encode() for u in users]

    out["entity_us_per_row"] = {
        "feast python_values_to_proto_values (STRING)": per_op_us(feast_entity_protos, n, repeat=20),
        "key bytes straight from the python value": per_op_us(keys_from_python, n, repeat=20),
    }
    return out


def response_build(n: int = 1000) -> dict[str, float]:
    """A simplified replica of the grouped read's response building (planning.fill_response):
    HMGET replies -> Feast's FeatureVectors, 5 features over 3 views, one `_ts` per view."""
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
    from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse as Response
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from google.protobuf.timestamp_pb2 import Timestamp

    epoch = datetime(1970, 1, 1)
    present = FieldStatus.PRESENT

    def iso(i: int) -> bytes:
        return (datetime(2026, 11, 25, 17, 0, 0) + timedelta(microseconds=i * 7919)).isoformat(
            timespec="microseconds"
        ).encode() + b"Z"

    countries = [b"US", b"GB", b"DE", b"FR"]
    replies = [
        [
            countries[i % 4],
            b"%d" % (i * 7),
            iso(i * 13),
            repr(i * 0.37).encode(),
            b"%d" % (i % 50),
            iso(i * 17),
            repr(i * 1.1).encode(),
            iso(i * 19),
        ]
        for i in range(n)
    ]
    views = [(["string", "int"], [0, 1], 2), (["double", "int"], [3, 4], 5), (["double"], [6], 7)]
    kwarg = {"string": "string_val", "int": "int64_val", "double": "double_val"}
    conv = {"string": bytes.decode, "int": int, "double": float}

    def ts_parts(raw: bytes):
        d = datetime.fromisoformat(raw[:-1].decode()) - epoch
        return d.days * 86400 + d.seconds, d.microseconds * 1000

    def today():  # ValueProto / Timestamp objects, then FeatureVector(values=..., event_timestamps=...)
        resp = Response()
        for kinds, cols, tsi in views:
            stamps = []
            for r in replies:
                s, ns = ts_parts(r[tsi])
                stamps.append(Timestamp(seconds=s, nanos=ns))
            for kind, c in zip(kinds, cols):
                field, f = kwarg[kind], conv[kind]
                cache: dict[bytes, Any] = {}
                values = []
                for r in replies:
                    raw = r[c]
                    v = cache.get(raw)
                    if v is None:
                        v = cache[raw] = ValueProto(**{field: f(raw)})
                    values.append(v)
                resp.results.append(
                    Response.FeatureVector(values=values, statuses=[present] * n, event_timestamps=stamps)
                )
        return resp

    def in_place():  # results.add(); values.add(field=...) per row; timestamps built in the first
        resp = Response()  # vector of a view, serialized once and parsed into its other vectors
        for kinds, cols, tsi in views:
            blob = None
            for kind, c in zip(kinds, cols):
                vec = resp.results.add()
                add, f = vec.values.add, conv[kind]
                if kind == "string":
                    for r in replies:
                        add(string_val=f(r[c]))
                elif kind == "int":
                    for r in replies:
                        add(int64_val=f(r[c]))
                else:
                    for r in replies:
                        add(double_val=f(r[c]))
                vec.statuses.extend([present] * n)
                if blob is None:
                    ts_add = vec.event_timestamps.add
                    for r in replies:
                        s, ns = ts_parts(r[tsi])
                        ts_add(seconds=s, nanos=ns)
                    holder = Response.FeatureVector()
                    holder.event_timestamps.MergeFrom(vec.event_timestamps)
                    blob = holder.SerializeToString()
                else:
                    vec.MergeFromString(blob)
        return resp

    assert today() == in_place()

    def ms(fn):
        return round(min(timeit.repeat(fn, number=1, repeat=30, timer=time.process_time)) * 1e3, 3)

    return {
        "today: objects then FeatureVector(...) copies": ms(today),
        "in place: results.add()/values.add(), one ts blob per view": ms(in_place),
    }


# ---------------------------------------------------------------- wire: packing and reading


def wire(client, n: int = 1000) -> dict[str, Any]:
    import hiredis

    fields = [
        b"country",
        b"account_age_days",
        b"_ts:profile",
        b"avg_amount_30d",
        b"tx_count_7d",
        b"_ts:tx_stats",
        b"last_amount",
        b"_ts:activity",
    ]
    keys = [b"microhx:user_id=u%07d" % i for i in range(n)]
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.hset(k, mapping={f: b"x" * 12 for f in fields})
    pipe.execute()
    connection = client.connection_pool.get_connection()
    out: dict[str, Any] = {"n": n}
    try:
        commands = [(b"HMGET", k, *fields) for k in keys]

        def pack_redis_py():
            connection.pack_commands(commands)

        suffix = b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in fields)
        head = b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2)

        def pack_by_hand():  # constant field part precomputed once per call (or cached per view set)
            b"".join([head + b"$%d\r\n%s\r\n" % (len(k), k) + suffix for k in keys])

        def pack_hiredis_direct():
            b"".join(map(hiredis.pack_command, commands))

        assert b"".join(connection.pack_commands(commands)) == b"".join(
            [head + b"$%d\r\n%s\r\n" % (len(k), k) + suffix for k in keys]
        )
        out["pack_us_per_command"] = {
            "redis-py Connection.pack_commands (today)": per_op_us(pack_redis_py, n, repeat=20),
            "hand-built RESP, field block precomputed": per_op_us(pack_by_hand, n, repeat=20),
            "hiredis.pack_command per command, no redis-py wrapper": per_op_us(pack_hiredis_direct, n, repeat=20),
        }
        evalsha = [
            (
                b"EVALSHA",
                b"0" * 40,
                1,
                k,
                b"b",
                b"_ts:profile",
                b"2026-11-25T18:00:00.000000Z",
                172800000,
                1764093600000,
                3,
                b"country",
                b"US",
                b"account_age_days",
                1234,
                b"credit_score",
                b"700.5",
            )
            for k in keys
        ]

        def pack_evalsha_redis_py():
            connection.pack_commands(evalsha)

        def pack_evalsha_hiredis():
            b"".join(map(hiredis.pack_command, evalsha))

        out["pack_us_per_write_command"] = {
            "EVALSHA, redis-py Connection.pack_commands (today)": per_op_us(pack_evalsha_redis_py, n, repeat=20),
            "EVALSHA, hiredis.pack_command directly": per_op_us(pack_evalsha_hiredis, n, repeat=20),
        }

        packed = connection.pack_commands(commands)

        def read_redis_py():  # what redis_io._send_and_read does
            connection.send_packed_command(packed)
            [connection.read_response() for _ in range(n)]

        sock = connection._sock
        payload = b"".join(packed)

        def read_hiredis_direct():
            sock.sendall(payload)
            reader = hiredis.Reader()
            replies: list[Any] = []
            buf = bytearray(1 << 16)
            view = memoryview(buf)
            while len(replies) < n:
                got = sock.recv_into(buf)
                reader.feed(view[:got])
                reply = reader.gets()
                while reply is not False:
                    replies.append(reply)
                    reply = reader.gets()

        out["round_trip_us_per_command"] = {
            "send_packed_command + read_response() per reply (today)": per_op_us(read_redis_py, n, repeat=15),
            "sendall + hiredis.Reader fed from recv_into, gets() loop": per_op_us(read_hiredis_direct, n, repeat=15),
        }
    finally:
        client.connection_pool.release(connection)
        client.delete(*keys)
    return out


# ---------------------------------------------------------------- server side


def server_side(client, n: int = 5000) -> dict[str, Any]:
    from feast_redis_hexpire.write_script import SCRIPT_SHA, SCRIPT_SOURCE

    from .measure import commandstats, server_delta

    client.script_load(SCRIPT_SOURCE)
    version = tuple(int(x) for x in client.info("server")["redis_version"].split(".")[:2])
    batch_fields = [b"country", b"account_age_days", b"credit_score"]
    stream_fields = [b"tx_count_5m", b"last_amount", b"last_device", b"failed_logins_15m"]
    now_ms = int(time.time() * 1000)

    def seed(prefix: bytes) -> list[bytes]:
        """Keys shaped like this store's: batch fields + key TTL, stream fields with field TTLs."""
        keys = [prefix + b":user_id=u%07d" % i for i in range(n)]
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.hset(
                k,
                mapping={
                    **{f: b"12345" for f in batch_fields},
                    b"_ts:profile": b"2026-11-25T17:00:00.000000Z",
                    b"tx_count_7d": b"3",
                    b"avg_amount_30d": b"10.5",
                    b"chargebacks_180d": b"0",
                    b"_ts:tx_stats": b"2026-11-25T17:00:00.000000Z",
                    **{f: b"7" for f in stream_fields},
                    b"_ts:activity": b"2026-11-25T17:00:00.000000Z",
                },
            )
            pipe.pexpire(k, 172800000)
            pipe.hpexpireat(k, now_ms + 86_400_000, *stream_fields, b"_ts:activity")
        pipe.execute()
        return keys

    def run(name: str, keys: list[bytes], queue: Callable[[Any, bytes, int], None], chunk: int = 500) -> dict[str, Any]:
        before = commandstats(client)
        t0 = time.perf_counter()
        for start in range(0, len(keys), chunk):
            pipe = client.pipeline(transaction=False)
            for i, k in enumerate(keys[start : start + chunk], start):
                queue(pipe, k, i)
            pipe.execute(raise_on_error=True)
        wall = time.perf_counter() - t0
        delta = server_delta(before, commandstats(client), len(keys))
        client.delete(*keys)
        return {
            "server_usec_per_row": delta["usec_per_row"],
            "wall_usec_per_row": round(wall / len(keys) * 1e6, 2),
            "commands": delta["commands"],
        }

    ts = b"2026-11-25T18:00:00.000000Z"
    expire_at = now_ms + 86_400_000
    stream_values = [b"1", b"12.5", b"dev-00ab12", b"0"]
    batch_values = [b"US", b"1234", b"700.5"]
    results: dict[str, Any] = {"n": n, "redis_version": ".".join(map(str, version))}

    def stream_script(pipe, k, i):
        pipe.evalsha(
            SCRIPT_SHA,
            1,
            k,
            "s",
            b"_ts:activity",
            ts,
            86_400_000,
            now_ms,
            4,
            *[x for pair in zip(stream_fields, stream_values) for x in pair],
        )

    def stream_hset_hpexpireat(pipe, k, i):
        pipe.hset(k, mapping={**dict(zip(stream_fields, stream_values)), b"_ts:activity": ts})
        pipe.hpexpireat(k, expire_at, *stream_fields, b"_ts:activity")

    results["stream_row"] = {
        "EVALSHA write script, stream mode (today)": run("s1", seed(b"microA"), stream_script),
        "HSET + HPEXPIREAT, no Lua (no newest-wins check)": run("s2", seed(b"microB"), stream_hset_hpexpireat),
    }
    if version >= (8, 0):

        def stream_hsetex(pipe, k, i):
            pipe.execute_command(
                "HSETEX",
                k,
                "PXAT",
                expire_at,
                "FIELDS",
                5,
                *[x for pair in zip(stream_fields, stream_values) for x in pair],
                b"_ts:activity",
                ts,
            )

        lua_hsetex = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and ARGV[2] < stored then return 0 end
redis.call('HSETEX', KEYS[1], 'PXAT', ARGV[3], 'FIELDS', (#ARGV - 1) / 2, ARGV[1], ARGV[2], unpack(ARGV, 4))
return 1"""
        sha = client.script_load(lua_hsetex)

        def stream_lua_hsetex(pipe, k, i):
            pipe.evalsha(
                sha,
                1,
                k,
                b"_ts:activity",
                ts,
                expire_at,
                *[x for pair in zip(stream_fields, stream_values) for x in pair],
            )

        results["stream_row"]["HSETEX PXAT, no Lua (Redis >= 8.0)"] = run("s3", seed(b"microC"), stream_hsetex)
        results["stream_row"]["minimal Lua: HGET check + one HSETEX PXAT (Redis >= 8.0)"] = run(
            "s4", seed(b"microD"), stream_lua_hsetex
        )

    def batch_script(pipe, k, i):
        pipe.evalsha(
            SCRIPT_SHA,
            1,
            k,
            "b",
            b"_ts:profile",
            ts,
            172_800_000,
            now_ms,
            3,
            *[x for pair in zip(batch_fields, batch_values) for x in pair],
        )

    def batch_plain(pipe, k, i):
        pipe.hset(k, mapping={**dict(zip(batch_fields, batch_values)), b"_ts:profile": ts})
        pipe.pexpire(k, 172_800_000)

    multi_row = """
-- KEYS: one per row. ARGV[1] ts_field, ARGV[2] ttl_ms, then per row: ts, n, f1, v1 ... fn, vn
local ts_field, ttl = ARGV[1], tonumber(ARGV[2])
local codes, a = {}, 3
for i, key in ipairs(KEYS) do
  local ts, n = ARGV[a], tonumber(ARGV[a + 1])
  local first, last = a + 2, a + 1 + 2 * n
  a = last + 1
  local stored = redis.call('HGET', key, ts_field)
  if stored and ts < stored then
    codes[i] = 0
  else
    redis.call('HSET', key, ts_field, ts, unpack(ARGV, first, last))
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    codes[i] = 1
  end
end
return codes"""
    multi_sha = client.script_load(multi_row)

    def run_multi(keys: list[bytes], rows_per_call: int) -> dict[str, Any]:
        before = commandstats(client)
        t0 = time.perf_counter()
        for start in range(0, len(keys), 500):
            pipe = client.pipeline(transaction=False)
            block = keys[start : start + 500]
            for j in range(0, len(block), rows_per_call):
                chunk = block[j : j + rows_per_call]
                args: list[Any] = [b"_ts:profile", 172_800_000]
                for _k in chunk:
                    args += [ts, 3, *[x for pair in zip(batch_fields, batch_values) for x in pair]]
                pipe.evalsha(multi_sha, len(chunk), *chunk, *args)
            pipe.execute(raise_on_error=True)
        wall = time.perf_counter() - t0
        delta = server_delta(before, commandstats(client), len(keys))
        client.delete(*keys)
        return {
            "server_usec_per_row": delta["usec_per_row"],
            "wall_usec_per_row": round(wall / len(keys) * 1e6, 2),
            "commands": delta["commands"],
        }

    results["batch_row"] = {
        "EVALSHA write script, batch mode (today)": run("b1", seed(b"microE"), batch_script),
        "HSET + PEXPIRE, no Lua": run("b2", seed(b"microF"), batch_plain),
        "one EVALSHA per 50 rows (multi-key script, same newest-wins rule)": run_multi(seed(b"microG"), 50),
    }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "micro.json")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    log("client-side micro-benchmarks")
    result["client"] = client_side()
    with redis_server(args.redis_url) as server:
        client = redis_client(server)
        result["machine"] = machine_info(client)
        log("wire micro-benchmarks")
        result["wire"] = wire(client)
        log("server-side write cost")
        result["server"] = server_side(client)
        client.close()
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2, default=str))
    write_json(args.out, result)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
