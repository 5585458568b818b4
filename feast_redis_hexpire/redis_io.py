"""The network round trips, sync and async side by side. Everything they send is
planned in planning.py; these functions only pipeline it and collect replies."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import redis
import redis.asyncio as redis_async

from .connection import AsyncClient, SyncClient
from .planning import WriteCall, WriteReport, tally_writes
from .write_script import SCRIPT_SHA, SCRIPT_SOURCE, is_noscript

Progress = Optional[Callable[[int], Any]]
HmgetCommand = Tuple[bytes, List[bytes]]


def _chunks(calls: Sequence[WriteCall], size: int):
    for start in range(0, len(calls), size):
        yield calls[start : start + size]


def _retry_positions(replies: Sequence[Any]) -> List[int]:
    return [i for i, reply in enumerate(replies) if is_noscript(reply)]


# ---------------------------------------------------------------- sync


def _run_script_calls(client: SyncClient, calls: Sequence[WriteCall]) -> List[Any]:
    if isinstance(client, redis.Redis):
        return _round_trip(client, [(b"EVALSHA", SCRIPT_SHA, 1, call.key, *call.args) for call in calls])
    pipe = client.pipeline(transaction=False)  # cluster: redis-py groups commands by node
    for call in calls:
        pipe.execute_command("EVALSHA", SCRIPT_SHA, 1, call.key, *call.args)  # cluster pipelines block .evalsha()
    return pipe.execute(raise_on_error=False)


def write(client: SyncClient, calls: Sequence[WriteCall], chunk_size: int, progress: Progress) -> WriteReport:
    report = WriteReport()
    for chunk in _chunks(calls, chunk_size):
        replies = _run_script_calls(client, chunk)
        retry = _retry_positions(replies)
        if retry:  # the server lost the script: load it and rerun the calls that did not run
            client.script_load(SCRIPT_SOURCE)
            for position, reply in zip(retry, _run_script_calls(client, [chunk[i] for i in retry])):
                replies[position] = reply
        report.add(tally_writes(chunk, replies))
        if progress:
            progress(len(chunk))
    return report


def hmget(client: SyncClient, commands: Sequence[HmgetCommand]) -> List[List[Optional[bytes]]]:
    if not commands:
        return []
    if isinstance(client, redis.Redis):
        return _raise_first_error(_round_trip(client, [(b"HMGET", key, *fields) for key, fields in commands]))
    pipe = client.pipeline(transaction=False)  # cluster: redis-py groups commands by node
    for key, fields in commands:
        pipe.hmget(key, fields)
    return pipe.execute()


def _round_trip(client: redis.Redis, commands: Sequence[tuple]) -> List[Any]:
    """Send every command in one write and read every reply: what a redis-py pipeline
    does, minus its per-command bookkeeping, which dominated both hot paths. Error
    replies stay in place. A dropped connection is retried under the client's retry
    policy (retry_attempts, backoff): reads are idempotent, and replaying a write batch
    rewrites equal event times, leaving the same data."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        packed = connection.pack_commands(commands)
        return connection.retry.call_with_retry(
            lambda: _send_and_read(connection, packed, len(commands)),
            lambda error: connection.disconnect(),
        )
    except BaseException:
        connection.disconnect()  # never hand back a connection with unread replies
        raise
    finally:
        pool.release(connection)


def _send_and_read(connection: Any, packed: Any, count: int) -> List[Any]:
    connection.send_packed_command(packed)
    replies: List[Any] = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except redis.ResponseError as exc:  # keep reading so the connection stays in sync
            replies.append(exc)
    return replies


def _raise_first_error(replies: List[Any]) -> List[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


# ---------------------------------------------------------------- async


async def _run_script_calls_async(client: AsyncClient, calls: Sequence[WriteCall]) -> List[Any]:
    if isinstance(client, redis_async.Redis):
        commands = [(b"EVALSHA", SCRIPT_SHA, 1, call.key, *call.args) for call in calls]
        return await _round_trip_async(client, commands)
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.execute_command("EVALSHA", SCRIPT_SHA, 1, call.key, *call.args)  # cluster pipelines block .evalsha()
    return await pipe.execute(raise_on_error=False)


async def write_async(
    client: AsyncClient, calls: Sequence[WriteCall], chunk_size: int, progress: Progress
) -> WriteReport:
    report = WriteReport()
    for chunk in _chunks(calls, chunk_size):
        replies = await _run_script_calls_async(client, chunk)
        retry = _retry_positions(replies)
        if retry:
            await client.script_load(SCRIPT_SOURCE)
            rerun = await _run_script_calls_async(client, [chunk[i] for i in retry])
            for position, reply in zip(retry, rerun):
                replies[position] = reply
        report.add(tally_writes(chunk, replies))
        if progress:
            progress(len(chunk))
    return report


async def hmget_async(client: AsyncClient, commands: Sequence[HmgetCommand]) -> List[List[Optional[bytes]]]:
    if not commands:
        return []
    if isinstance(client, redis_async.Redis):
        commands_packed = [(b"HMGET", key, *fields) for key, fields in commands]
        return _raise_first_error(await _round_trip_async(client, commands_packed))
    pipe = client.pipeline(transaction=False)
    for key, fields in commands:
        pipe.hmget(key, fields)
    return await pipe.execute()


async def _round_trip_async(client: redis_async.Redis, commands: Sequence[tuple]) -> List[Any]:
    pool = client.connection_pool
    connection = await pool.get_connection()

    async def drop(error: Exception) -> None:
        await connection.disconnect()

    try:
        packed = connection.pack_commands(commands)
        return await connection.retry.call_with_retry(
            lambda: _send_and_read_async(connection, packed, len(commands)), drop
        )
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


async def _send_and_read_async(connection: Any, packed: Any, count: int) -> List[Any]:
    await connection.send_packed_command(packed)
    replies: List[Any] = []
    for _ in range(count):
        try:
            replies.append(await connection.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
    return replies
