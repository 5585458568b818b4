"""The demo page in a real browser: Debian's Chromium driven by Playwright (from PyPI,
without `playwright install`), against the demo server on a free port in a background
thread, backed by a working copy of feature_repo/ and the test Redis.

Three scenarios on one demo, in file order: the worker keeps every user fresh and the
tile shows it (coverage from Redis, events/s, event-to-visible lag, last tick, the Pause/Resume label right after a
click); the page's forms, tables, number checks and latency chart; 10,000 users keep the
id format and the default user. Saves test-artifacts/demo.png (and demo-10k.png).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# On a developer's machine without the browser this test is skipped; under CI (where
# scripts/bootstrap.sh installs both) a missing piece is a failure, never a silent skip.
_MISSING = pytest.fail if os.environ.get("CI") else pytest.skip
try:
    from playwright import sync_api
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

from demo.runtime import MAX_USERS, DemoRuntime  # noqa: E402
from demo.server import BackgroundServer  # noqa: E402
from feast_redis_hexpire import clients  # noqa: E402
from feature_repo.stream_producer import StreamingWorker, user_ids_for  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
USERS = 300
STREAM_TTL = 20
TIMEOUT_MS = 15_000
LOAD_TIMEOUT_MS = 150_000  # 10,000 users by materialization on 2 busy cores


@contextlib.contextmanager
def served_demo(server: Any, tmp_path_factory: Any, name: str, users: int, stream_ttl: int) -> Iterator[Any]:
    """A demo runtime on `server`, served in the background (worker every 0.5 s)."""
    runtime = DemoRuntime(
        server.connection_string,
        tmp_path_factory.mktemp(f"demo_{name}"),
        project=f"t_{uuid.uuid4().hex[:8]}_{name}",
        users=users,
        stream_ttl_seconds=stream_ttl,
        worker_interval=0.5,
        worker_batch_size=5,
        log=lambda message: None,
    ).setup()
    background = BackgroundServer(runtime).start()
    background.runtime = runtime
    background.started_at = time.monotonic()
    try:
        yield background
    finally:
        background.stop()
        runtime.close()
        clients.reset_clients()  # the demo's threads grew the shared client's pool


@pytest.fixture(scope="module")
def demo(redis_server, tmp_path_factory):
    if not CHROMIUM.exists():
        _MISSING(f"{CHROMIUM} not installed (Debian: apt-get install chromium)")
    with served_demo(redis_server, tmp_path_factory, "browser", USERS, STREAM_TTL) as server:
        yield server


@pytest.fixture
def page(demo):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            problems: list = []

            def on_console(msg) -> None:
                # 4xx answers are expected (the test asks for unknown users); Chromium logs them.
                if msg.type == "error" and "status of 4" not in msg.text:
                    problems.append(msg.text)

            page.on("console", on_console)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("response", lambda r: r.status >= 500 and problems.append(f"{r.status} {r.url}"))
            page.on("dialog", lambda dialog: dialog.accept())  # the Reset confirmation
            yield page, problems
            assert problems == [], problems
        finally:
            browser.close()


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_text(page, selector: str, expected: str) -> None:
    sync_api.expect(page.locator(selector)).to_contain_text(expected, timeout=TIMEOUT_MS)


def posts_to(page, path: str) -> list[str]:
    """URLs of the POSTs to `path` the page sends from now on."""
    sent: list[str] = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith(path) and sent.append(r.url))
    return sent


def fresh_in_redis(raw, runtime) -> int:
    """Loaded users whose `_ts:user_activity` is present, straight from Redis."""
    pipe = raw.pipeline(transaction=False)
    for uid in runtime.user_ids:
        pipe.hpttl(runtime.key_of(uid), "_ts:user_activity")
    return sum(1 for (ttl,) in pipe.execute() if ttl > 0)


def click_with_polls_held(page, button: str) -> None:
    """Click while every /state poll hangs: what the page shows next comes from the click's
    own answer, not from a later poll."""
    page.route("**/state", lambda route: None)  # never answered until unrouted
    try:
        page.click(button)
        sync_api.expect(page.locator(button)).not_to_have_attribute("aria-busy", "true", timeout=TIMEOUT_MS)
    finally:
        page.unroute("**/state")  # the held polls go through (and are dropped as stale)


def test_worker_keeps_every_user_fresh_and_the_tile_says_so(demo, page, raw):
    """300 users, a 20 s stream TTL: coverage (measured in Redis) reaches ~100% within a
    TTL of the worker's start and stays there; rate and last tick are on the tile; the
    Pause/Resume label changes right after the click, before any poll."""
    page, _ = page
    page.goto(demo.url + "/")
    wait_text(page, "#stat-entities", str(USERS))
    wait_text(page, "#worker-state", "running")
    # A fresh page: the demo's own start-up read is not one of the page's reads.
    assert text(page, "#stat-reads") == "0" and "0 entities read" in text(page, "#stat-reads-sub")
    assert "no reads yet" in page.locator("#latency-chart text.empty").text_content()
    # The write mode in use, as the store chose it from HELLO (doctor's "write mode").
    commands = demo.runtime.write_mode["commands"]
    assert page.locator(".write-mode").all_inner_texts() == [commands, commands]
    assert "HPEXPIREAT" not in text(page, "#freshness-note") or "HPEXPIREAT" in commands
    # By a TTL (and a little) after the worker started, or at once if the browser took
    # longer than that to come up: everyone fresh.
    remaining_ms = (STREAM_TTL + 4 - (time.monotonic() - demo.started_at)) * 1000
    page.wait_for_function(
        "Number(document.getElementById('worker-coverage').dataset.percent) >= 99",
        timeout=max(remaining_ms, 2000),
    )
    assert fresh_in_redis(raw, demo.runtime) >= 0.99 * USERS  # the page shows what Redis holds
    assert "users have fresh stream fields in Redis" in text(page, "#coverage-sub")
    rate = text(page, "#worker-rate")
    assert rate.endswith("events/s") and float(rate.split()[0]) > 0
    # Event-to-visible lag, measured by the worker reading its events back: shown, bounded.
    lag = page.locator("#worker-lag")
    sync_api.expect(lag).to_contain_text("ms p50")
    assert 0 < float(lag.get_attribute("data-p50")) < 2000
    assert "p99" in lag.get_attribute("title") and "samples" in lag.get_attribute("title")
    assert "events written, one per EventWriter.write" in text(page, "#worker-sub")
    assert "embedding)" in text(page, "#worker-sub")  # each activity event and its embedding
    assert text(page, "#worker-last-tick").endswith("s ago")
    assert "round-robin" in text(page, "#worker-sub")
    # Served age: the stream view, refreshed twice per TTL, is served younger than its TTL.
    age = page.locator('#age-legend [data-view="user_activity"]')
    sync_api.expect(age).to_contain_text("p50")
    p50 = page.locator("#age-chart polyline.p50[data-view='user_activity']")
    assert p50.count() >= 1
    assert "TTL 20 s" in age.inner_text()
    time.sleep(STREAM_TTL / 2)  # a while later, still everyone
    assert fresh_in_redis(raw, demo.runtime) == USERS
    assert page.locator("#worker-coverage").get_attribute("data-percent") == "100"

    button = page.locator("#worker-btn")
    sync_api.expect(button).to_have_text("Pause")
    click_with_polls_held(page, "#worker-btn")
    sync_api.expect(button).to_have_text("Resume", timeout=1000)
    wait_text(page, "#worker-state", "paused")
    page.wait_for_timeout(2500)  # a poll or two later, still right
    sync_api.expect(button).to_have_text("Resume", timeout=1000)
    assert page.locator("#worker-rate").get_attribute("data-value") == "0"  # paused: no events
    assert text(page, "#worker-rate") == "–"
    click_with_polls_held(page, "#worker-btn")
    sync_api.expect(button).to_have_text("Pause", timeout=1000)
    wait_text(page, "#worker-state", "running")


def test_demo_page_end_to_end(demo, page, raw):
    page, problems = page
    page.goto(demo.url + "/")
    wait_text(page, "#stat-entities", str(USERS))
    wait_text(page, "#worker-state", "running")
    assert "Redis" in text(page, "#conn") and "_browser" in text(page, "#conn")
    assert page.locator("#feature-picker input[type=checkbox]").count() == 12  # with user_embedding:embedding
    # The TTL tiles are settings for writes; a key's own TTL is in Inspect.
    assert "Inspect shows a key's own" in text(page, "#stat-batch-ttl-sub")
    assert "Inspect shows a field's own" in text(page, "#stat-stream-ttl-sub")
    # Time left that rounds to 0 is "< 0.1 s", never "none" (which means no expiry).
    assert page.evaluate("[fmtLeft(0), fmtLeft(0.04), fmtLeft(null), fmtDuration(0)]") == [
        "< 0.1 s",
        "< 0.1 s",
        "–",
        "none",
    ]

    # Number fields are checked on the page: letters get an inline error and nothing is sent.
    loads = posts_to(page, "/bulk-load")
    page.fill("#bulk-stream-ttl", "abc")
    page.fill("#bulk-users", "12x")
    page.click("#bulk-btn")
    wait_text(page, "#bulk-errors", 'Stream TTL (s): "abc" is not a whole number')
    assert 'Users: "12x" is not a whole number' in text(page, "#bulk-errors")
    assert page.locator("#bulk-stream-ttl").get_attribute("aria-invalid") == "true"
    page.fill("#bulk-users", "99999")
    page.fill("#bulk-stream-ttl", str(STREAM_TTL))
    page.click("#bulk-btn")
    wait_text(page, "#bulk-errors", "99,999 is out of range")
    page.fill("#bulk-users", "100000000000000000000000001")  # echoed as typed, not rounded
    page.click("#bulk-btn")
    wait_text(page, "#bulk-errors", "Users: 100,000,000,000,000,000,000,000,001 is out of range")
    page.fill("#batch-count", "ten")
    page.click("#batch-btn")
    wait_text(page, "#batch-errors", '"ten" is not a whole number')
    assert loads == [] and not posts_to(page, "/batch-read")
    assert text(page, "#bulk-result") == ""

    # Bulk load 320 users with a 1 h key TTL: the page reports the time it took.
    page.fill("#bulk-users", "320")
    page.fill("#bulk-batch-ttl", "3600")
    page.click("#bulk-btn")
    wait_text(page, "#bulk-result", "Loaded 320 users in")
    assert text(page, "#bulk-errors") == ""
    result = text(page, "#bulk-result")
    assert "user_profile" in result and "user_activity" in result and " s" in result
    # Stream rows are generated within the TTL: none skipped as expired. Those the running
    # worker had already pushed newer are skipped as stale, and the load says why.
    assert text(page, '#bulk-table tr[data-view="user_activity"] td.skipped-expired') == "0"
    notes = page.locator("#bulk-result .load-note").all_inner_texts()
    assert all("expected while the worker runs" in n for n in notes) and not any("past the" in n for n in notes)
    wait_text(page, "#stat-entities", "320")
    wait_text(page, "#stat-batch-ttl", "1h")

    # Read every feature of u0007: batch fields carry the key TTL, stream fields their own.
    # The first read after the load plans its request shape again (the load refreshed
    # Feast's registry): the page says so, and the chart keeps it out of p50/p99.
    page.fill("#read-user", "u0007")
    page.click("#read-btn")
    rows = page.locator("#read-table tbody tr")
    sync_api.expect(rows).to_have_count(12)  # with the embedding
    assert "ms read latency" in text(page, "#read-result")
    assert "planned a new request shape" in text(page, "#read-result .planned-note")
    page.wait_for_function("document.querySelectorAll('#latency-chart circle.planned').length >= 1")
    # Every cell shows its whole text ("not found", "account_age_days" were cut off).
    clipped = page.locator("#read-table td").evaluate_all(
        "cells => cells.filter(c => c.scrollWidth > c.clientWidth).map(c => c.innerText)"
    )
    assert clipped == []
    batch_row = page.locator('#read-table tr[data-ref="user_profile:risk_segment"]')
    assert "batch" in batch_row.inner_text() and "present" in batch_row.inner_text()
    assert "59m" in batch_row.inner_text() or "1h" in batch_row.inner_text()
    stream_row = page.locator('#read-table tr[data-ref="user_activity:tx_count_5m"]')
    assert "stream" in stream_row.inner_text() and "present" in stream_row.inner_text()
    assert "store" in text(page, "#read-store-ms")  # the store's own time beside Feast's
    read_amount = page.locator('#read-table tr[data-ref="user_tx_stats:avg_amount_30d"] td.mono').inner_text()

    # The fraud_model_v1 button selects the feature service's six features.
    page.click('#sel-services button[data-service="fraud_model_v1"]')
    page.click("#read-btn")
    sync_api.expect(rows).to_have_count(6)
    page.click("#sel-all")

    # Unknown user: an error message on the page, not a crash.
    page.fill("#read-user", "nobody")
    page.click("#read-btn")
    wait_text(page, "#read-result .error", "unknown user")

    # Batch read with no feature selected refuses, as Read does; nothing is sent.
    batch_posts = posts_to(page, "/batch-read")
    page.fill("#batch-count", "20")
    page.click("#sel-none")
    page.click("#batch-btn")
    wait_text(page, "#batch-result .error", "select at least one feature")
    page.click("#read-btn")
    wait_text(page, "#read-result .error", "select at least one feature")
    assert batch_posts == []
    page.click("#sel-all")

    # Batch read the first 20 users in one call, then 5.
    page.fill("#batch-count", "20")
    page.click("#batch-btn")
    wait_text(page, "#batch-result", "20 users in")
    assert "1 store read call" in text(page, "#batch-result")
    page.fill("#batch-count", "5")
    page.click("#batch-btn")
    wait_text(page, "#batch-result", "5 users in")

    # The latency chart plots those reads, with p50/p99 per kind.
    for uid in ("u0001", "u0100", "u0320"):
        page.fill("#read-user", uid)
        page.click("#read-btn")
        wait_text(page, "#read-result", "read latency")
    assert page.locator("#read-result .planned-note").count() == 0  # a known shape by now
    page.wait_for_function("document.querySelectorAll('#latency-chart circle.read').length >= 5")
    assert page.locator("#latency-chart circle.batch").count() >= 1
    # One series per batch size: one user, 20 users, 5 users.
    assert page.locator("#latency-chart line.p50").count() == 3 and page.locator("#latency-chart line.p99").count() == 3
    legend = text(page, "#latency-legend")
    assert "one user: p50" in legend and "batch of 20: p50" in legend and "batch of 5: p50" in legend
    assert "p99" in legend and " ms" in legend and "store p50" in legend

    # Inspect the raw hash of u0007: every field, its kind and TTL, and the key TTL.
    page.fill("#inspect-user", "u0007")
    page.click("#inspect-btn")
    table = page.locator("#inspect-table")
    sync_api.expect(table).to_be_visible()
    assert "fs:" in text(page, "#inspect-result") and "user_id=u0007" in text(page, "#inspect-result")
    assert "key TTL" in text(page, "#inspect-result")
    for field in ("risk_segment", "_ts:user_profile", "tx_count_7d", "_ts:user_tx_stats"):
        assert "batch" in page.locator(f'#inspect-table tr[data-field="{field}"]').inner_text()
    assert "stream" in page.locator('#inspect-table tr[data-field="_ts:user_activity"]').inner_text()
    # Read and Inspect show a value the same way (27.0, not 27).
    assert page.locator('#inspect-table tr[data-field="avg_amount_30d"] td.mono').nth(1).inner_text() == read_amount
    assert page.locator("#inspect-result .stream-only").count() == 0

    # The batch key expires; the worker's push re-creates the user with stream fields only.
    uid = "u0009"
    raw.delete(demo.runtime.key_of(uid))
    StreamingWorker(demo.runtime.store, [uid], batch_size=1).tick()
    page.fill("#batch-count", "20")
    page.click("#batch-btn")
    wait_text(page, "#batch-result", "20 users in")
    missing = text(page, "#missing-batch")
    assert "missing batch fields" in missing and "key expired" in missing and f"{uid} (6)" in missing
    assert page.locator("#missing-stream").count() == 0
    page.fill("#read-user", uid)
    page.click("#read-btn")
    wait_text(page, "#read-result .stream-only", "by design")
    assert "key TTL none (no expiry)" in text(page, "#read-result")
    page.fill("#inspect-user", uid)
    page.click("#inspect-btn")
    wait_text(page, "#inspect-result .stream-only", "stream fields only")
    assert "key TTL none" in text(page, "#inspect-result")

    # This demo's Redis has no Query Engine: the similar-users panel says so, plainly.
    page.fill("#similar-user", "u0001")
    page.click("#similar-btn")
    wait_text(page, "#similar-unavailable", "No vector search on this Redis")
    assert "the rest of the demo works" in text(page, "#similar-unavailable")

    page.wait_for_timeout(2500)  # one more poll: the tiles show the reads above
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
    assert os.path.getsize(ARTIFACTS / "demo.png") > 10_000
    assert problems == [], problems


SEARCH_USERS = 60
SEARCH_STREAM_TTL = 8


@pytest.fixture(scope="module")
def search_demo(search_server, tmp_path_factory):
    """A second demo, on a Redis with the Query Engine: the similar-users panel's results."""
    with served_demo(search_server, tmp_path_factory, "search", SEARCH_USERS, SEARCH_STREAM_TTL) as server:
        yield server


def similar_rows(page) -> list[dict]:
    return page.locator("#similar-table tbody tr").evaluate_all(
        "rows => rows.map(r => ({user: r.dataset.user, cells: [...r.cells].map(c => c.innerText)}))"
    )


def test_similar_users_panel_and_the_stream_expiry(search_demo, page):
    """KNN for the selected user with each result's distance and served age; pause the
    worker and the expired embeddings leave; resume and they are back."""
    page, _ = page
    page.goto(search_demo.url + "/")
    wait_text(page, "#worker-state", "running")
    sync_api.expect(page.locator("#similar-user")).to_have_value("u0001")  # the default user
    # Let the worker write every user's embedding once (2 refreshes per TTL).
    page.wait_for_function("Number(document.getElementById('worker-coverage').dataset.percent) >= 99", timeout=30_000)
    page.fill("#similar-k", "5")
    page.click("#similar-btn")
    sync_api.expect(page.locator("#similar-table")).to_be_visible()
    assert "nearest of u0001" in text(page, "#similar-result") and "COSINE" in text(page, "#similar-result")
    rows = similar_rows(page)
    assert len(rows) == 5 and "u0001" not in [r["user"] for r in rows]
    distances = [float(r["cells"][2]) for r in rows]
    assert distances == sorted(distances) and all(0 <= d <= 2 for d in distances)
    assert all(r["cells"][3] != "–" and "expired" not in r["cells"][3] for r in rows), rows
    page.screenshot(path=str(ARTIFACTS / "demo-similar.png"), full_page=True)

    # Pause: no embedding is rewritten, and one stream TTL later they have all expired,
    # the query user's too; the live panel says so.
    page.check("#similar-live")
    page.click("#worker-btn")
    wait_text(page, "#worker-state", "paused")
    sync_api.expect(page.locator("#similar-no-query")).to_contain_text(
        "not served", timeout=(SEARCH_STREAM_TTL + 6) * 1000
    )
    assert page.locator("#similar-table").count() == 0
    # Resume: the worker writes them again, and the results come back.
    page.click("#worker-btn")
    wait_text(page, "#worker-state", "running")
    sync_api.expect(page.locator("#similar-table")).to_be_visible(timeout=(SEARCH_STREAM_TTL + 6) * 1000)
    page.uncheck("#similar-live")


def test_ten_thousand_users_keep_the_id_format_and_the_default_user(demo, page):
    """Load 10,000 users through the page; on a fresh page the default user (the first
    loaded) reads and inspects, the suggested ids are the loaded ones (never re-padded),
    and the last user is u10000. Then Reset clears the project."""
    page, _ = page
    page.goto(demo.url + "/")
    wait_text(page, "#worker-state", "running")
    page.click("#worker-btn")  # quiet during the big load (2 cores)
    sync_api.expect(page.locator("#worker-btn")).to_have_text("Resume")
    started = time.monotonic()
    page.fill("#bulk-users", str(MAX_USERS))
    page.click("#bulk-btn")
    sync_api.expect(page.locator("#bulk-result")).to_contain_text("Loaded 10,000 users in", timeout=LOAD_TIMEOUT_MS)
    print(f"10,000 users through the page in {time.monotonic() - started:.1f}s")
    # Every bulk-load cell shows its whole figure (the skipped column was cut off).
    cells = page.locator("#bulk-table td")
    assert cells.count() == 20  # 4 views
    clipped = cells.evaluate_all("cells => cells.filter(c => c.scrollWidth > c.clientWidth).map(c => c.innerText)")
    assert clipped == []
    overflow = page.locator("#bulk-card").evaluate(
        "card => card.querySelector('#bulk-table').getBoundingClientRect().right - card.getBoundingClientRect().right"
    )
    assert overflow <= 0, overflow  # the table fits in its card
    assert text(page, '#bulk-table tr[data-view="user_profile"] td:nth-child(2)') == "10,000"
    page.screenshot(path=str(ARTIFACTS / "demo-10k-load.png"), full_page=True)

    page.reload()
    wait_text(page, "#stat-entities", "10,000")
    wait_text(page, "#stat-users", "users u0001 … u10000")
    sync_api.expect(page.locator("#read-user")).to_have_value("u0001")
    sync_api.expect(page.locator("#inspect-user")).to_have_value("u0001")
    offered = page.locator("#user-list option").evaluate_all("options => options.map(o => o.value)")
    assert offered and offered == user_ids_for(MAX_USERS)[: len(offered)]

    page.click("#read-btn")  # the default user, as the page filled it in
    sync_api.expect(page.locator("#read-table tbody tr")).to_have_count(12)
    batch_rows = page.locator("#read-table tbody tr").filter(has_text="batch")
    sync_api.expect(batch_rows.filter(has_text="present")).to_have_count(6)
    page.click("#inspect-btn")
    wait_text(page, "#inspect-result", "user_id=u0001")
    page.fill("#read-user", "u10000")
    page.click("#read-btn")
    sync_api.expect(page.locator("#read-table tbody tr")).to_have_count(12)
    page.fill("#inspect-user", "u10000")
    page.click("#inspect-btn")
    wait_text(page, "#inspect-result", "user_id=u10000")
    page.screenshot(path=str(ARTIFACTS / "demo-10k.png"), full_page=True)

    # Reset: every entity of the project goes, the worker goes idle.
    page.click("#reset-btn")
    wait_text(page, "#stat-entities", "0")
    wait_text(page, "#worker-state", "idle")
    wait_text(page, "#inspect-result", "keys deleted")
    # The last load's tile clears, and served age says the views were deleted, not expired.
    wait_text(page, "#stat-load-sub", "none since the reset")
    assert text(page, "#stat-load") == "–"
    legend = page.locator('#age-legend [data-view="user_activity"]')
    sync_api.expect(legend).to_contain_text("deleted")
    assert "expired" not in legend.inner_text()
    page.click("#inspect-btn")
    wait_text(page, "#inspect-result .error", "no users are loaded")
    page.click("#read-btn")
    wait_text(page, "#read-result .error", "no users are loaded")
    page.click("#batch-btn")
    wait_text(page, "#batch-errors", "no users are loaded")
    assert "out of range" not in text(page, "#batch-errors")
    assert "round-robin" not in text(page, "#worker-sub") and "no users loaded" in text(page, "#worker-sub")
    page.screenshot(path=str(ARTIFACTS / "demo-reset.png"), full_page=True)
