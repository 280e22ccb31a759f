"""Scrubbing: keys and values, before anything is kept."""

from __future__ import annotations

import pytest

from sizewise_otel.errors.scrub import FILTERED, Scrubber

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")


@pytest.fixture
def scrubber() -> Scrubber:
    return Scrubber()


@pytest.mark.parametrize(("text", "secret"), [
    ("user jane.doe+vip@example.com failed", "jane.doe"),
    (f"token was {JWT}", "eyJzdWIiOiIxMjM0NTY3ODkwIn0"),
    ("Authorization: Bearer s3cr3t-t0ken-value-123", "s3cr3t-t0ken"),
    ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
    ("card 5500-0000-0000-0004 declined", "5500-0000-0000-0004"),
    ("card 4012888888881881 declined", "4012888888881881"),
    ("login failed password=hunter2 for x", "hunter2"),
    ("{'password': 'hunter2-Secret!'}", "hunter2"),
    ('{"api_key": "abc123def456"}', "abc123def456"),
    ("GET /cb?session_id=QWERTY123&x=1", "QWERTY123"),
    ("connect postgresql://app:pa55w0rd@db:5432/x", "pa55w0rd"),
    ("stripe sk_live_51HxYzAbCdEfGh1234 refused", "sk_live_51HxYz"),
    ("aws AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE"),
    ("client 203.0.113.42 blocked", "203.0.113.42"),
    ("client 2001:db8:85a3:0:0:8a2e:370:7334 blocked", "2001:db8:85a3:0:0:8a2e:370:7334"),
])
def test_values_are_scrubbed_inside_text(scrubber: Scrubber, text: str, secret: str) -> None:
    out = scrubber.text(text)
    assert secret not in out
    assert out != text


# Exact outputs: the secret goes, its marker is whole (no stray bracket), and the text around it stays.
@pytest.mark.parametrize(("text", "expected"), [
    # A JWT after "token=" is first replaced by the JWT pattern ("[jwt]"); the key=value pattern
    # then took "[jwt" as the value and left "]" behind: "token=[Filtered]]".
    (f"invalid token={JWT}", "invalid token=[Filtered]"),
    (f"invalid token={JWT} for project 12, retry", "invalid token=[Filtered] for project 12, retry"),
    (f"token: {JWT}, expired", "token: [Filtered], expired"),
    (f"token={JWT}.", "token=[Filtered]."),
    (f"GET /reports?access_token={JWT}&page=2", "GET /reports?access_token=[Filtered]&page=2"),
    (f"GET /reports?page=2&token={JWT}", "GET /reports?page=2&token=[Filtered]"),
    (f"callback /cb?id_token={JWT}#state", "callback /cb?id_token=[Filtered]#state"),
    (f"GET /x?t={JWT}&y=1", "GET /x?t=[jwt]&y=1"),  # no secret key name: the value pattern alone
    ("GET /blob?sv=2021-08-06&se=2030-01-01&sig=Ab3%2Fcd%3D&sp=r",
     "GET /blob?sv=2021-08-06&se=2030-01-01&sig=[Filtered]&sp=r"),
    ("signed url /f?sig=0a1b2c3d4e5f expired", "signed url /f?sig=[Filtered] expired"),
    (f"download /f?X-Amz-Signature={'ab' * 32}&X-Amz-Expires=60",
     "download /f?X-Amz-Signature=[Filtered]&X-Amz-Expires=60"),
    ("password=[hunter2] rejected", "password=[Filtered] rejected"),
    # A quote that closes the text around the pair is not part of the value (a traceback's code line).
    ('raise ValueError("bad token=abc123secret")', 'raise ValueError("bad token=[Filtered]")'),
    ("log('password=hunter2', x)", "log('password=[Filtered]', x)"),
    ('password=ab"cd ok', "password=[Filtered] ok"),  # a quote inside the value goes with it
    # Words that merely contain "sig" are not keys to filter.
    ("design=3 signal=4 assigned=5", "design=3 signal=4 assigned=5"),
    # A scheme and its credential are one value: one marker, not "[Filtered] [Filtered]".
    ("Authorization: Bearer s3cr3t-t0ken-value-123", "Authorization: [Filtered]"),
    ('{"Authorization": "Basic dXNlcjpwYXNz"}', '{"Authorization": [Filtered]}'),
    ("authorization=Digest abcdef123456 next", "authorization=[Filtered] next"),
    ("retry with token abcdefghij", "retry with token [Filtered]"),
])
def test_secret_values_inside_text_exactly(scrubber: Scrubber, text: str, expected: str) -> None:
    assert scrubber.text(text) == expected


@pytest.mark.parametrize("text", [
    f"invalid token={JWT} for project 12", f"GET /x?token={JWT}&page=2", f"Authorization: Bearer {JWT}",
    "sig=abcdef123456", "password=hunter2", "token=[Filtered] ok", "mail a@b.io from 10.0.0.1",
])
def test_scrubbing_twice_changes_nothing(scrubber: Scrubber, text: str) -> None:
    # Text is scrubbed again downstream (the log filter sees what the tracker already cleaned).
    once = scrubber.text(text)
    assert scrubber.text(once) == once


# The semconv's url.query / url.full redaction: named query parameters (case-sensitive) -> REDACTED,
# userinfo -> REDACTED:REDACTED; every other secret still goes through the scrubber's own rules.
@pytest.mark.parametrize(("key", "value", "expected"), [
    ("url.query", "sv=1&sig=Ab3%2Fcd&sp=r", "sv=1&sig=REDACTED&sp=r"),
    ("url.query", "X-Amz-Signature=abc&X-Amz-Credential=AKID%2F2024&X-Amz-Security-Token=t&X-Amz-Expires=60",
     "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED&X-Amz-Expires=60"),
    ("url.query", "X-Goog-Signature=ff00&AWSAccessKeyId=AK1&Signature=zz&Expires=9",
     "X-Goog-Signature=REDACTED&AWSAccessKeyId=REDACTED&Signature=REDACTED&Expires=9"),
    ("url.query", "page=2&q=duct", None),  # nothing to redact: the attribute is not rewritten
    ("url.query", "Sig=abc&password=hunter2", "Sig=[Filtered]&password=[Filtered]"),  # not a semconv key
    ("url.full", "https://u:pw@files.example/f?sig=ab&x=1#top",
     "https://REDACTED:REDACTED@files.example/f?sig=REDACTED&x=1#top"),
    ("url.full", "https://files.example/f?to=ann@example.org", "https://files.example/f?to=[email]"),
    ("http.target", "/f?Signature=abc&n=1", "/f?Signature=REDACTED&n=1"),
    ("url.path", "/f/sig=abc", "/f/sig=[Filtered]"),  # not a URL-with-query attribute: the scrubber's rule
])
def test_url_attributes_follow_the_semconv_redaction(scrubber: Scrubber, key: str, value: str,
                                                     expected: str | None) -> None:
    out = scrubber.attributes({key: value}, kind="SERVER")
    assert (out[key] if out is not None else None) == expected
    if out is not None:  # and scrubbing again (the exporter's second pass) changes nothing
        assert scrubber.attributes(out, kind="SERVER") is None


def test_numbers_failing_luhn_are_kept(scrubber: Scrubber) -> None:
    assert scrubber.text("order 4111111111111112 shipped") == "order 4111111111111112 shipped"
    assert scrubber.text("duct 12 x 8 in, 350 cfm") == "duct 12 x 8 in, 350 cfm"


def test_keys_are_filtered_at_any_depth(scrubber: Scrubber) -> None:
    data = {"user": "bob", "Password": "hunter2", "nested": {"X-Api-Key": "k", "list": [{"token": "t"}]},
            "headers": {"authorization": "Bearer abcdefgh", "Cookie": "sid=1", "accept": "json"},
            "csrf_token": "c", "sessionid": "s", "author": "Ann"}
    out = scrubber.mapping(data)
    assert out["Password"] == FILTERED
    assert out["nested"]["X-Api-Key"] == FILTERED
    assert out["nested"]["list"][0]["token"] == FILTERED
    assert out["headers"]["authorization"] == FILTERED
    assert out["headers"]["Cookie"] == FILTERED
    assert out["headers"]["accept"] == "json"
    assert out["csrf_token"] == FILTERED and out["sessionid"] == FILTERED
    assert out["user"] == "bob" and out["author"] == "Ann"


def test_values_in_mappings_and_odd_types(scrubber: Scrubber) -> None:
    out = scrubber.mapping({"note": "mail bob@example.com", "n": 4111111111111111, "b": b"x@y.io",
                            "t": ("a@b.co",), "obj": object()})
    assert "bob@" not in str(out) and "4111111111111111" not in str(out) and "x@y.io" not in str(out)


def test_ip_scrubbing_is_a_setting() -> None:
    assert "10.1.2.3" in Scrubber(ip_addresses=False).text("from 10.1.2.3")
    assert "10.1.2.3" not in Scrubber().text("from 10.1.2.3")


def test_custom_keys_and_patterns() -> None:
    s = Scrubber()
    s.add_key("national_id")
    s.add_pattern("order-ref", r"ORD-\d{8}", "[order]")
    assert s.mapping({"customer_national_id": "123"})["customer_national_id"] == FILTERED
    assert s.text("refund ORD-12345678 failed") == "refund [order] failed"


def test_span_attributes(scrubber: Scrubber) -> None:
    attrs = {"http.route": "/x/{id}", "url.query": "email=a@b.io&token=zzz",
             "http.request.header.authorization": ("Bearer abcdefghij",), "http.response.status_code": 500}
    out = scrubber.attributes(attrs)
    assert out is not None
    assert "a@b.io" not in out["url.query"] and "zzz" not in out["url.query"]
    assert out["http.request.header.authorization"] == (FILTERED,)
    assert out["http.route"] == "/x/{id}" and out["http.response.status_code"] == 500
    assert scrubber.attributes({"http.route": "/x"}) is None


def test_nul_bytes_and_surrogates_are_made_storable(scrubber: Scrubber) -> None:
    out = scrubber.text("bad\x00value \udcff; DROP TABLE x;--")
    assert "\x00" not in out
    out.encode("utf-8")


def test_span_attributes_keep_infrastructure_ips_and_drop_client_ips(scrubber: Scrubber) -> None:
    attrs = {"server.address": "127.0.0.1", "network.peer.address": "10.0.0.5", "client.address": "203.0.113.9",
             "http.request.header.x-forwarded-for": ("203.0.113.9",), "db.name": "hvac",
             "url.full": "http://10.0.0.5:8001/x?for=203.0.113.9&token=abc123"}
    client = scrubber.attributes(attrs, kind="CLIENT")
    assert client is not None
    assert client["server.address"] == "127.0.0.1" and client["network.peer.address"] == "10.0.0.5"
    assert client["client.address"] == "[ip]" and client["http.request.header.x-forwarded-for"] == ("[ip]",)
    assert client["url.full"].startswith("http://10.0.0.5:8001/x?") and "203.0.113.9" not in client["url.full"]
    assert "abc123" not in client["url.full"]
    server = scrubber.attributes(attrs, kind="SERVER")
    assert server is not None
    assert server["server.address"] == "127.0.0.1"  # the service's own address
    assert server["network.peer.address"] == "[ip]"  # a server span's peer is its client
    assert "10.0.0.5" not in server["url.full"]
    # Secrets inside infrastructure attributes are still scrubbed.
    infra = scrubber.attributes({"server.address": "ops@example.com", "db.connection_string":
                                 "redis://:hunter2-Secret!@10.0.0.9:6379/0"}, kind="CLIENT")
    assert infra == {"server.address": "[email]", "db.connection_string": "redis://[Filtered]@10.0.0.9:6379/0"}
    # Free text keeps its IP scrubbing (the default for unknown keys), and so does a bare text() call.
    assert scrubber.attributes({"app.note": "from 198.51.100.4"}, kind="CLIENT") == {"app.note": "from [ip]"}
    assert scrubber.text("from 198.51.100.4") == "from [ip]"
    assert scrubber.text("from 198.51.100.4", ips=False) == "from 198.51.100.4"


def test_span_attribute_plans_and_memos_keep_the_output(scrubber: Scrubber) -> None:
    """The hot path's caches (plan per kind and key, scrubbed value per plan) change nothing: the
    SDK's BoundedAttributes and a plain dict give the same changes, the second call the same as the
    first, a rule added later applies at once, and the memos stay bounded."""
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.trace import SpanKind

    attrs = {"http.request.method": "GET", "url.path": "/reset/a@b.io", "client.address": "203.0.113.9",
             "server.address": "10.0.0.5", "server.port": 8000, "http.route": "/reset/{email}",
             "user_agent.original": "curl/8.5", "app.ticket": "T-1234", "url.query": "sig=x&n=1"}
    expected = {"url.path": "/reset/[email]", "client.address": "[ip]", "url.query": "sig=REDACTED&n=1"}
    bounded = BoundedAttributes(attributes=attrs, immutable=False)
    for _ in range(3):
        assert scrubber.attribute_changes(bounded, kind=SpanKind.SERVER) == expected
        assert scrubber.attribute_changes(attrs, kind="SERVER") == expected
    scrubber.add_key("ticket")  # "app.ticket" was planned as a plain value: re-planned now
    assert scrubber.attribute_changes(attrs, kind=SpanKind.SERVER) == {**expected, "app.ticket": FILTERED}
    for i in range(5000):
        scrubber.attribute_changes({"url.path": f"/items/{i}"}, kind=SpanKind.SERVER)
    assert max(len(m) for m in scrubber._memo.values()) <= 4096


def test_long_statement_templates_are_scrubbed_once_and_follow_new_rules() -> None:
    """db.query.text is longer than the short-string cache; its templates get their own bounded memo."""
    from opentelemetry.trace import SpanKind

    scrubber = Scrubber()
    statement = "INSERT INTO calculations (payload, note) VALUES (%(payload)s, 'token=" + "a" * 40 + "') " + \
                "RETURNING calculations.id /* " + "x" * 80 + " */"
    first = scrubber.attribute_changes({"db.query.text": statement}, kind=SpanKind.CLIENT)
    assert first is not None and "a" * 40 not in first["db.query.text"]
    again = scrubber.attribute_changes({"db.query.text": statement}, kind=SpanKind.CLIENT)
    assert again is not None and again["db.query.text"] is first["db.query.text"]  # the memo's copy
    scrubber.add_pattern("calc-table", r"calculations")
    changed = scrubber.attribute_changes({"db.query.text": statement}, kind=SpanKind.CLIENT)
    assert changed is not None and "calculations" not in changed["db.query.text"]  # a new rule applies


def test_client_attribute_sets_are_remembered_whole_and_follow_new_rules() -> None:
    """A CLIENT span's whole attribute set is remembered with its changes: the answer equals the
    key-by-key one (SDK store or plain dict), a rule added later applies at once, an unhashable value
    is scrubbed key by key, and the memo stays bounded."""
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.trace import SpanKind

    from sizewise_otel.errors import scrub

    scrubber, fresh = Scrubber(), Scrubber()
    sets = [{"db.system.name": "redis", "server.address": "10.0.0.9", "server.port": 6379,
             "db.operation.name": "GET", "db.query.text": "GET ?"},
            {"db.system.name": "postgresql", "db.namespace": "ops@example.com", "server.port": 5432,
             "db.query.text": "SELECT 1 /* token=abcdefghij1234 */", "app.ticket": "T-1"},
            {"url.full": "http://10.0.0.5/x?for=203.0.113.9", "client.address": "203.0.113.9",
             "http.request.header.authorization": ("Bearer abcdefghij",)}]
    for _ in range(3):
        for attrs in sets:
            expected = fresh._attribute_changes(list(attrs.items()), SpanKind.CLIENT)
            assert scrubber.attribute_changes(attrs, kind=SpanKind.CLIENT) == expected
            assert scrubber.attribute_changes(BoundedAttributes(attributes=attrs, immutable=False),
                                              kind=SpanKind.CLIENT) == expected
    assert scrubber.attribute_changes(sets[0], kind=SpanKind.CLIENT) is None  # nothing to change, remembered
    assert scrubber.attribute_changes(sets[1], kind=SpanKind.CLIENT)["db.namespace"] == "[email]"
    assert "app.ticket" not in scrubber.attribute_changes(sets[1], kind=SpanKind.CLIENT)
    scrubber.add_key("ticket")
    assert scrubber.attribute_changes(sets[1], kind=SpanKind.CLIENT)["app.ticket"] == FILTERED
    scrubber.add_pattern("redis-op", r"\bGET\b", "[op]")
    assert scrubber.attribute_changes(sets[0], kind=SpanKind.CLIENT) == {"db.operation.name": "[op]",
                                                                          "db.query.text": "[op] ?"}
    unhashable = {"db.query.text": "SELECT 1", "app.emails": ["a@b.io"]}  # a list: not from an SDK span
    assert scrubber.attribute_changes(unhashable, kind=SpanKind.CLIENT) == {"app.emails": ("[email]",)}
    for i in range(scrub._CLIENT_SETS + 10):
        scrubber.attribute_changes({"db.namespace": f"db{i}"}, kind=SpanKind.CLIENT)
    assert 0 < len(scrubber._client_sets) <= scrub._CLIENT_SETS
