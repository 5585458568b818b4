"""The network round trips, sync and async side by side: the only place they differ.
Everything sent is planned in `writes` / `reads`; these functions pipeline it, retry
dropped connections and collect replies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import redis
import redis.asyncio as redis_async

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    _hiredis_pack = None  # type: ignore[assignment]
from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio.connection import async_timeout as _async_timeout  # type: ignore[attr-defined]  # asyncio.timeout (its backport on 3.10)
from redis.cluster import RedisCluster

from . import metrics
from .clients import AsyncClient, SyncClient, field_expiry_of, field_expiry_of_async
from .reads import HmgetCommand
from .redis_version import FieldExpiry
from .write_script import SCRIPT_SHA, SCRIPT_SOURCE, is_noscript
from .writes import ProgressCallback, ScriptCall, WritePlan, WriteReport, chunks, script_calls, tally

SCRIPT_LOADS = 3
"""Loads of the write script per batch before a NOSCRIPT reply counts as a failure: a
restart or failover between the load and the rerun empties the cache again."""


def _evalsha(call: ScriptCall) -> tuple[Any, ...]:
    return ("EVALSHA", SCRIPT_SHA, len(call.rows), *(row.key for row in call.rows), *call.args)


def _is_cluster(client: Any) -> bool:
    return isinstance(client, (RedisCluster, redis_async.RedisCluster))


def _noscript_positions(replies: Sequence[Any]) -> list[int]:
    return [i for i, reply in enumerate(replies) if is_noscript(reply)]


def _raise_first_error(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


# ---------------------------------------------------------------- sync


def write(client: SyncClient, plan: WritePlan, chunk_size: int, progress: ProgressCallback, where: str) -> WriteReport:
    report = WriteReport()
    cluster = _is_cluster(client)
    expiry = field_expiry_of(client)
    for chunk in chunks(plan.rows, chunk_size):
        calls = script_calls(plan, chunk, by_slot=cluster, expiry=expiry)
        report.add(tally(plan, calls, run_calls(client, calls), where))
        if progress:
            progress(len(chunk))
    return report


def plan_calls(plans: Sequence[WritePlan], *, cluster: bool, expiry: FieldExpiry) -> list[list[ScriptCall]]:
    """Every row of every plan as script calls, per plan: sent together, in one round
    trip (one per node on a cluster)."""
    return [script_calls(plan, plan.rows, by_slot=cluster, expiry=expiry) for plan in plans]


def write_plans(client: SyncClient, plans: Sequence[WritePlan]) -> tuple[list[list[ScriptCall]], list[Any]]:
    """Several views' rows in one round trip (per node): the per-event writer's send. The
    calls per plan and every call's reply, in order, for `writes.row_outcomes`."""
    per_plan = plan_calls(plans, cluster=_is_cluster(client), expiry=field_expiry_of(client))
    return per_plan, run_calls(client, [call for calls in per_plan for call in calls])


def run_calls(client: SyncClient, calls: list[ScriptCall]) -> list[Any]:
    """Send script calls in one round trip and return their replies; when the server lost
    the script (restart, failover, SCRIPT FLUSH), load it and rerun the calls that did not run."""
    replies = _send_calls(client, calls)
    for _ in range(SCRIPT_LOADS):
        rerun = _noscript_positions(replies)
        if not rerun:
            break
        _load_script(client)
        for position, reply in zip(rerun, _send_calls(client, [calls[i] for i in rerun])):
            replies[position] = reply
    return replies


@metrics.timed("write")
def _send_calls(client: SyncClient, calls: Sequence[ScriptCall]) -> list[Any]:
    if isinstance(client, redis.Redis):
        return _round_trip(client, [_evalsha(call) for call in calls])
    pipe = client.pipeline(transaction=False)  # cluster: redis-py groups commands by node
    for call in calls:
        pipe.execute_command(*_evalsha(call))  # cluster pipelines block .evalsha()
    return list(pipe.execute(raise_on_error=False))


@metrics.timed("script_load")
def _load_script(client: SyncClient) -> None:
    client.script_load(SCRIPT_SOURCE)  # a cluster client sends SCRIPT LOAD to every primary


@metrics.timed("read")
def hmget(client: SyncClient, commands: Sequence[HmgetCommand]) -> list[list[bytes | None]]:
    if not commands:
        return []
    if isinstance(client, redis.Redis):
        return _raise_first_error(_round_trip(client, [(b"HMGET", key, *fields) for key, fields in commands]))
    pipe = client.pipeline(transaction=False)
    for key, fields in commands:
        pipe.execute_command("HMGET", key, *fields)
    return list(pipe.execute())


def exists(client: SyncClient, keys: Sequence[bytes]) -> list[bool] | None:
    """Whether each key exists, for the read metrics (entity absent, or only the view);
    None when the round trip failed: a read never fails for its metrics."""
    if not keys:
        return []
    try:
        return _exists(client, keys)
    except redis.RedisError:
        return None


@metrics.timed("exists")
def _exists(client: SyncClient, keys: Sequence[bytes]) -> list[bool]:
    if isinstance(client, redis.Redis):
        return [bool(found) for found in _raise_first_error(_round_trip(client, [(b"EXISTS", key) for key in keys]))]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("EXISTS", key)
    return [bool(found) for found in pipe.execute()]


def _pack(connection: Any, commands: Sequence[tuple[Any, ...]]) -> Any:
    """Every command in RESP, as one buffer: with hiredis's C packer when it is there.
    redis.asyncio packs in Python whatever the parser (a third of an async read of 1,000
    entities went there), and redis-py's own loop around the C packer costs more than it."""
    if _hiredis_pack is None:
        return connection.pack_commands(commands)
    return [b"".join([_hiredis_pack(command) for command in commands])]


SEND_PIECE_BYTES = 16_384
"""A synchronous round trip sends its commands in pieces of about this size, each packed
while the server runs the one before: a batch write's first script calls run while the
rest are packed, not after all of them are (the packing was a tenth of a 1,000-event write)."""


def _packed_pieces(connection: Any, commands: Sequence[tuple[Any, ...]]) -> Iterator[bytes]:
    """`_pack`'s bytes in pieces of about SEND_PIECE_BYTES, packed as they are sent."""
    if _hiredis_pack is None:
        yield from connection.pack_commands(commands)
        return
    pieces: list[bytes] = []
    size = 0
    for command in commands:
        packed = _hiredis_pack(command)
        pieces.append(packed)
        size += len(packed)
        if size >= SEND_PIECE_BYTES:
            yield b"".join(pieces)
            pieces, size = [], 0
    if pieces:
        yield b"".join(pieces)


def _round_trip(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send every command in one write and read every reply: what a redis-py pipeline
    does, minus its per-command bookkeeping, which dominated both hot paths. Error replies
    stay in place.

    A failed try is retried under the client's retry policy, and a try is the whole trip:
    checking a connection out of the pool (which connects it: a restarting server may
    refuse it, or accept it and close it during the handshake), sending and reading.
    Nothing under it retries on its own (StoreRetry: one budget per operation), so a
    server that is down costs one budget, not one per reconnect. Replaying is safe:
    reads are idempotent, and a write batch rewrites equal event times."""
    pool = client.connection_pool
    retry = client.get_retry()
    if retry is None:
        return _try_round_trip(pool, commands)
    result: list[Any] = retry.call_with_retry(lambda: _try_round_trip(pool, commands), _nothing_to_undo)
    return result


def _try_round_trip(pool: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    connection = pool.get_connection()
    try:
        return _send_and_read(connection, _packed_pieces(connection, commands), len(commands))
    except BaseException:
        connection.disconnect()  # never hand back a connection with unread replies
        raise
    finally:
        pool.release(connection)


def _nothing_to_undo(error: Exception) -> None:
    """A failed try already dropped its connection (see _try_round_trip)."""


async def _nothing_to_undo_async(error: Exception) -> None:
    """A failed try already dropped its connection (see _try_round_trip_async)."""


def _send_and_read(connection: Any, packed: Any, count: int) -> list[Any]:
    connection.send_packed_command(packed)
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except redis.ResponseError as exc:  # keep reading so the connection stays in sync
            replies.append(exc)
    return replies


# ---------------------------------------------------------------- async


async def write_async(
    client: AsyncClient, plan: WritePlan, chunk_size: int, progress: ProgressCallback, where: str
) -> WriteReport:
    report = WriteReport()
    cluster = _is_cluster(client)
    expiry = await field_expiry_of_async(client)
    for chunk in chunks(plan.rows, chunk_size):
        calls = script_calls(plan, chunk, by_slot=cluster, expiry=expiry)
        report.add(tally(plan, calls, await run_calls_async(client, calls), where))
        if progress:
            progress(len(chunk))
    return report


async def write_plans_async(
    client: AsyncClient, plans: Sequence[WritePlan]
) -> tuple[list[list[ScriptCall]], list[Any]]:
    per_plan = plan_calls(plans, cluster=_is_cluster(client), expiry=await field_expiry_of_async(client))
    return per_plan, await run_calls_async(client, [call for calls in per_plan for call in calls])


async def run_calls_async(client: AsyncClient, calls: list[ScriptCall]) -> list[Any]:
    replies = await _send_calls_async(client, calls)
    for _ in range(SCRIPT_LOADS):
        rerun = _noscript_positions(replies)
        if not rerun:
            break
        await _load_script_async(client)
        for position, reply in zip(rerun, await _send_calls_async(client, [calls[i] for i in rerun])):
            replies[position] = reply
    return replies


@metrics.timed_async("write")
async def _send_calls_async(client: AsyncClient, calls: Sequence[ScriptCall]) -> list[Any]:
    if isinstance(client, redis_async.Redis):
        return await _round_trip_async(client, [_evalsha(call) for call in calls])
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.execute_command(*_evalsha(call))
    return list(await pipe.execute(raise_on_error=False))


@metrics.timed_async("script_load")
async def _load_script_async(client: AsyncClient) -> None:
    await client.script_load(SCRIPT_SOURCE)


@metrics.timed_async("read")
async def hmget_async(client: AsyncClient, commands: Sequence[HmgetCommand]) -> list[list[bytes | None]]:
    if not commands:
        return []
    if isinstance(client, redis_async.Redis):
        return _raise_first_error(
            await _round_trip_async(client, [(b"HMGET", key, *fields) for key, fields in commands])
        )
    pipe = client.pipeline(transaction=False)
    for key, fields in commands:
        pipe.execute_command("HMGET", key, *fields)
    return list(await pipe.execute())


async def exists_async(client: AsyncClient, keys: Sequence[bytes]) -> list[bool] | None:
    if not keys:
        return []
    try:
        return await _exists_async(client, keys)
    except redis.RedisError:
        return None


@metrics.timed_async("exists")
async def _exists_async(client: AsyncClient, keys: Sequence[bytes]) -> list[bool]:
    if isinstance(client, redis_async.Redis):
        replies = _raise_first_error(await _round_trip_async(client, [(b"EXISTS", key) for key in keys]))
        return [bool(found) for found in replies]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("EXISTS", key)
    return [bool(found) for found in await pipe.execute()]


async def _round_trip_async(client: redis_async.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """_round_trip for redis.asyncio: one retry budget over checkout, send and read."""
    pool = client.connection_pool
    retry = client.get_retry()
    if retry is None:
        return await _try_round_trip_async(pool, commands)
    result: list[Any] = await retry.call_with_retry(
        lambda: _try_round_trip_async(pool, commands), _nothing_to_undo_async
    )
    return result


async def _try_round_trip_async(pool: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    connection = await pool.get_connection()
    try:
        return await _send_and_read_async(connection, _pack(connection, commands), len(commands))
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


async def _send_and_read_async(connection: Any, packed: Any, count: int) -> list[Any]:
    await connection.send_packed_command(packed)
    parser = getattr(connection, "_parser", None)
    if type(parser) is _AsyncHiredisParser and str(connection.protocol) != "3":
        return await _read_replies_hiredis(connection, parser, count)
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(await connection.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
    return replies


async def _read_replies_hiredis(connection: Any, parser: Any, count: int) -> list[Any]:
    """Every reply of a pipeline from hiredis's buffer, awaiting the socket only when the
    buffer runs dry. redis.asyncio's `read_response` opens a timeout context per reply,
    which cost more than the rest of an async read; here the socket timeout still bounds
    every wait for data, as it does there. Error replies stay in place (as ResponseError
    instances); a dropped or timed-out connection raises redis-py's own errors."""
    reader, timeout = parser._reader, connection.socket_timeout
    replies: list[Any] = []
    append, gets = replies.append, reader.gets
    try:
        while len(replies) < count:
            reply = gets()
            if reply is _NOT_ENOUGH_DATA:
                if timeout is None:
                    await parser.read_from_socket()
                else:
                    async with _async_timeout(timeout):
                        await parser.read_from_socket()
                continue
            if isinstance(reply, redis.ConnectionError):  # e.g. LOADING: the server is not ready
                raise reply
            append(reply)
    except asyncio.TimeoutError:
        await connection.disconnect(nowait=True)
        raise redis.TimeoutError(f"Timeout reading from {connection.host}:{connection.port}") from None
    except OSError as exc:
        await connection.disconnect(nowait=True)
        raise redis.ConnectionError(f"Error while reading from {connection.host}:{connection.port}: {exc}") from exc
    return replies
