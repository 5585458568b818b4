"""Redaction follows the parser: every value the connection-string parser takes as a secret
is hidden in every message, whatever its spelling (issue 19, item 1).

Secret values are generated from an alphabet with marker characters that nothing else in
a connection string uses, so a leak of any fragment of a secret shows as a marker."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig
from feast_redis_hexpire.connection_string import parse
from feast_redis_hexpire.errors import InvalidConnectionString
from feast_redis_hexpire.redaction import SECRET_PARAMS, redact, redact_connection_string

MARKERS = "ΩЖ"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

spaces = st.text(" \t", max_size=2)


@st.composite
def any_case(draw: st.DrawFn, name: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if flip else c for c, flip in zip(name, flips))


@st.composite
def secret_text(draw: st.DrawFn, forbidden: str) -> str:
    """A secret: at least one marker, among characters that make parsing interesting."""
    alphabet = "".join(c for c in "ab9:=@&?#/%'\" +;!$*" if c not in forbidden) + MARKERS
    body = draw(st.text(alphabet, max_size=12))
    position = draw(st.integers(0, len(body)))
    return body[:position] + draw(st.sampled_from(MARKERS)) + body[position:]


def parsed_secrets(connection_string: str) -> list[str]:
    parsed = parse(connection_string)
    found = {**parsed.params, **parsed.store_params}
    return [str(found[name]) for name in SECRET_PARAMS if found.get(name)]


def assert_hidden(text: str, secrets: list[str], shown: str) -> None:
    assert not any(marker in shown for marker in MARKERS), (text, shown)
    for secret in secrets:
        assert secret.strip() not in shown, (text, secret, shown)


# ---------------------------------------------------------------- Feast's host:port,k=v form


@st.composite
def feast_form(draw: st.DrawFn) -> tuple[str, list[str]]:
    parts: list[str] = [f"{draw(spaces)}h{i}:{6379 + i}{draw(spaces)}" for i in range(draw(st.integers(1, 3)))]
    secrets: list[str] = []
    for number in range(draw(st.integers(1, 4))):  # names repeat: duplicated params
        if number == 0 or draw(st.booleans()):
            name = draw(any_case(draw(st.sampled_from(sorted(SECRET_PARAMS)))))
            value = draw(secret_text(forbidden=","))
            quote_mark = draw(st.sampled_from(["", "'", '"']))
            value = quote_mark + value + quote_mark
            secrets.append(value)
        else:
            name, value = draw(st.sampled_from([("db", "2"), ("username", "feast"), ("ssl", "true")]))
        parts.append(f"{draw(spaces)}{name}{draw(spaces)}={draw(spaces)}{value}{draw(spaces)}")
    order = draw(st.permutations(range(len(parts))))
    return ",".join(parts[i] for i in order), secrets


@SETTINGS
@given(feast_form())
def test_feast_form_secrets_are_hidden_in_every_message(case: tuple[str, list[str]]) -> None:
    text, secrets = case
    secrets = secrets + parsed_secrets(text)
    assert secrets, "every generated string holds a secret the parser reads"
    assert_hidden(text, secrets, redact_connection_string(text))
    assert_hidden(text, secrets, RedisHexpireOnlineStoreConfig(connection_string=text).where)
    long_ones = [secret for secret in secrets if len(secret.strip()) >= 4]
    shown = redact(f"Error connecting to {text}: refused")  # free text, after the parse
    for secret in long_ones:
        assert secret.strip() not in shown, (text, secret, shown)
    with pytest.raises(InvalidConnectionString) as err:
        parse(text + ",h:notaport")
    assert_hidden(text, secrets, str(err.value))


# ---------------------------------------------------------------- URLs


@st.composite
def url_form(draw: st.DrawFn) -> tuple[str, list[str]]:
    secrets: list[str] = []
    userinfo = ""
    if draw(st.booleans()):
        password = draw(secret_text(forbidden="/?#"))
        written = quote(password, safe="") if draw(st.booleans()) else password.replace("%", "%25")
        userinfo = draw(st.sampled_from(["", "feast"])) + ":" + written + "@"
        secrets += [password, written]
    query = []
    for _ in range(draw(st.integers(0 if userinfo else 1, 3))):
        if draw(st.booleans()):
            name = draw(any_case(draw(st.sampled_from(sorted(SECRET_PARAMS)))))
            value = draw(secret_text(forbidden="&#"))
            written = quote(value, safe="") if draw(st.booleans()) else value.replace("%", "%25").replace("+", "%2B")
            secrets += [value, written]
            query.append(f"{name}={written}")
        else:
            query.append(draw(st.sampled_from(["db=1", "socket_timeout=2", "client_name=app"])))
    order = draw(st.permutations(range(len(query))))
    scheme = draw(st.sampled_from(["redis", "rediss"]))
    text = f"{scheme}://{userinfo}h:6380/0" + ("?" + "&".join(query[i] for i in order) if query else "")
    return text, secrets


@SETTINGS
@given(url_form())
def test_url_secrets_are_hidden_in_every_message(case: tuple[str, list[str]]) -> None:
    text, secrets = case
    secrets = secrets + parsed_secrets(text)
    assert_hidden(text, secrets, redact_connection_string(text))
    assert_hidden(text, secrets, RedisHexpireOnlineStoreConfig(connection_string=text).where)
    with pytest.raises(InvalidConnectionString) as err:
        parse(text.replace("://", "://", 1).replace("h:6380", "h:notaport", 1))
    assert_hidden(text, secrets, str(err.value))


def test_the_parser_reads_param_names_in_any_case_as_the_redactor_does() -> None:
    parsed = parse("h:1, PassWord = s3cretΩ ,Sentinel_Password=x")
    assert parsed.params["password"] == "s3cretΩ"
    assert parsed.store_params["sentinel_password"] == "x"
    assert redact_connection_string("h:1, PassWord = s3cretΩ ,Sentinel_Password=x") == (
        "h:1, PassWord = *** ,Sentinel_Password=***"
    )
    assert redact_connection_string("redis://:p%40ss@h:1?PASSWORD=a+b&db=1") == "redis://:***@h:1?PASSWORD=***&db=1"
