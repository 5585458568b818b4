"""The network round trips, sync and async side by side. Everything they send is
planned in planning.py; these functions only pipeline it and collect replies."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

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
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.evalsha(SCRIPT_SHA, 1, call.key, *call.args)
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
    pipe = client.pipeline(transaction=False)
    for key, fields in commands:
        pipe.hmget(key, fields)
    return pipe.execute()


# ---------------------------------------------------------------- async


async def _run_script_calls_async(client: AsyncClient, calls: Sequence[WriteCall]) -> List[Any]:
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.evalsha(SCRIPT_SHA, 1, call.key, *call.args)
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
    pipe = client.pipeline(transaction=False)
    for key, fields in commands:
        pipe.hmget(key, fields)
    return await pipe.execute()
