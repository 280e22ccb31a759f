"""Scrubbing: personal data and secrets removed by key name *and* by value, before anything is kept.

Sentry filters by key name only; a secret inside an exception message goes straight through. Here
every string is also matched against value patterns (emails, bearer/basic credentials, JWTs, card
numbers that pass the Luhn check, ``password=...`` pairs inside text, credentials in URLs, common API
key formats and, by default, IP addresses).

Extend it per deployment::

    scrubber.add_key("national_id")                       # any key containing it is filtered
    scrubber.add_pattern("order-ref", r"ORD-\\d{8}", "[order]")  # any value matching is replaced
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind

from sizewise_otel.fastpath import BoundedCache
from sizewise_otel.fastpath.attribute_items import attribute_items

FILTERED = "[Filtered]"

DEFAULT_DENY_KEYS: tuple[str, ...] = (
    "password", "passwd", "pwd", "secret", "token", "apikey", "api_key", "accesskey", "access_key",
    "privatekey", "private_key", "authorization", "auth", "cookie", "session", "csrf", "xsrf",
    "credential", "signature", "jwt", "bearer", "ssn", "creditcard", "credit_card", "cardnumber",
    "card_number", "cvv", "cvc", "iban",
)
# Keys that contain a deny word but carry nothing secret.
DEFAULT_ALLOW_KEYS: tuple[str, ...] = ("author", "authority", "pin_code_length", "spinner", "shipping",
                                       "mapping", "pinned", "opinion", "tokens_used")


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


_SECRET_WORDS = (r"password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
                 r"client[_-]?secret|auth|session(?:id)?|csrf|cookie|credentials?|signature")


# ``sig`` also covers "signature"; as a key of its own it is the signature of a signed URL (``sig=``).
_SECRET_HINTS = ("pass", "pwd", "secret", "token", "key", "auth", "session", "csrf", "cookie", "credential",
                 "sig")


@dataclass
class Pattern:
    name: str
    regex: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]
    # A cheap test on (text, lowercased text): False means the regex cannot match, skip it.
    hint: Callable[[str, str], bool] | None = None
    # IP address patterns are skipped for infrastructure span attributes (see ``Scrubber.attributes``).
    ip: bool = False


def _builtin_patterns(ip_addresses: bool) -> list[Pattern]:
    p = [
        # Credentials in URLs: scheme://user:pass@host, and scheme://:pass@host (Redis)
        # (``REDACTED:REDACTED@`` is the semconv's own redaction of a URL attribute: kept.)
        Pattern("url-credentials", re.compile(
            r"(?i)\b([a-z][a-z0-9+.-]*://)(?!REDACTED:REDACTED@)[^\s/@:]*:[^\s/@]+@"),
                r"\1[Filtered]@", lambda t, lt: "://" in t and "@" in t),
        Pattern("bearer", re.compile(r"(?i)\b(bearer|basic|token|digest)\s+[A-Za-z0-9._~+/=-]{6,}"),
                r"\1 [Filtered]", lambda t, lt: "bearer" in lt or "basic" in lt or "token" in lt
                or "digest" in lt),
        Pattern("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[jwt]",
                lambda t, lt: "eyJ" in t),
        # key=value / key: value / "key": "value" inside free text (messages, logs, URLs). A value
        # in square brackets is taken whole: it may be a marker an earlier pattern left
        # (``token=[jwt]``), and a partial match would leave its ``]`` behind. A bare value leaves a
        # closing quote that ends it (``f("token=abc")``) in place. A scheme and its credential
        # (``Authorization: Bearer abc``) are one value: one marker. The semconv's ``REDACTED``
        # (a signed URL's query, see :func:`redact_url`) stays.
        Pattern("secret-pair", re.compile(
            r"(?i)([\"']?(?:\b[\w.-]*(?:" + _SECRET_WORDS + r")[\w.-]*|\bsig)[\"']?\s*[=:]\s*)"
            r"(?!REDACTED(?:[\s,;&#)}\]\"']|$))"
            r"((?:bearer|basic|token|digest)\s+(?:\[[^\]\s]*\]|[^\s,;&)}\]\"']+)"
            r"|\"[^\"]*\"|'[^']*'|\[[^\]\s]*\]|[^\s,;&)}\]]+?(?=[\"']?(?:[\s,;&)}\]]|$)))"), r"\1[Filtered]",
            lambda t, lt: ("=" in t or ":" in t) and any(h in lt for h in _SECRET_HINTS)),
        Pattern("api-key", re.compile(
            r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}|\bgh[pousr]_[A-Za-z0-9]{20,}|\bAKIA[0-9A-Z]{16}\b"
            r"|\bxox[abpr]-[A-Za-z0-9-]{10,}|\bAIza[0-9A-Za-z_-]{30,}"), "[secret]",
            lambda t, lt: "_live_" in t or "_test_" in t or "gh" in t or "AKIA" in t or "xox" in t
            or "AIza" in t),
        # Not the semconv's ``REDACTED:REDACTED@host`` (a URL attribute's redacted userinfo).
        Pattern("email", re.compile(r"(?<![A-Za-z0-9._%+-])(?!REDACTED@)[A-Za-z0-9._%+-]+@"
                                    r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]",
                lambda t, lt: "@" in t),
        Pattern("card", re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])"), _card),
    ]
    if ip_addresses:
        p += [
            Pattern("ipv4", re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}"
                                       r"(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])"), "[ip]",
                    lambda t, lt: "." in t, ip=True),
            Pattern("ipv6", re.compile(r"(?i)(?<![\w:])(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}(?![\w:])"
                                       r"|(?<![\w:])(?:[0-9a-f]{1,4}:){1,7}:(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?"
                                       r"(?![\w:])"), "[ip]",
                    lambda t, lt: "::" in t or t.count(":") >= 7, ip=True),
        ]
    return p


_CACHED_LEN = 64  # strings up to this length have their scrubbed form cached
# Longer values cached too, for the keys whose values are statement templates (the SQL layer puts the
# sanitized statement there: literals are placeholders, so a service has a few hundred at most).
# Bounded: _TEMPLATES entries of at most _TEMPLATE_LEN characters per key (about 2 MB).
_TEMPLATE_KEYS = frozenset({"db.query.text", "db.statement"})
_TEMPLATE_LEN = 4096
_TEMPLATES = 512
_CLIENT_SETS = 1024  # whole CLIENT-span attribute sets remembered with their changes

# A cheap pre-check: strings with none of these characters cannot match any built-in pattern.
_MAYBE = re.compile(r"[@=:\d]|bearer|basic|token|digest|eyJ|_live_|_test_|gh|AKIA|xox|AIza", re.I)


class Scrubber:
    """Scrubs strings, mappings, sequences and span attributes. Thread-safe once configured."""

    def __init__(self, *, ip_addresses: bool = True, deny_keys: tuple[str, ...] = DEFAULT_DENY_KEYS,
                 allow_keys: tuple[str, ...] = DEFAULT_ALLOW_KEYS, max_depth: int = 6,
                 max_string: int = 4096) -> None:
        self.ip_addresses = ip_addresses
        self._deny = [self._norm(k) for k in deny_keys]
        self._allow = {self._norm(k) for k in allow_keys}
        self._patterns = _builtin_patterns(ip_addresses)
        self._patterns_no_ip = [p for p in self._patterns if not p.ip]
        self._custom = False
        self.max_depth = max_depth
        self.max_string = max_string
        self._key_cache: BoundedCache[str, bool] = BoundedCache(4096)
        self.version = 0  # bumped by add_key / add_pattern (caches of scrubbed text key on it)
        self._text_cache: BoundedCache[str, str] = BoundedCache(4096, "clear")
        self._text_cache_no_ip: BoundedCache[str, str] = BoundedCache(4096, "clear")
        # Span attributes, the hot path: span kind -> attribute key -> plan, and plan -> short value
        # -> its scrubbed form (bounded; a value that scrubs to itself maps to itself).
        self._plans: BoundedCache[Any, BoundedCache[str, str]] = BoundedCache(64, "clear")  # span kinds: a handful
        self._memo: dict[Any, BoundedCache[str, str]] = {}  # one per plan (and template key): a few dozen
        # Whole CLIENT attribute sets -> their changes (see attribute_changes). Bounded by count: an entry
        # refers to values the spans carry anyway (SizeWise's own statements are capped at 2,048
        # characters; another instrumentation's may be longer).
        self._client_sets: BoundedCache[tuple[Any, ...], dict[str, Any] | None] = BoundedCache(_CLIENT_SETS, "clear")

    @staticmethod
    def _norm(key: str) -> str:
        return key.lower().replace("-", "_").replace(".", "_")

    # --- configuration ----------------------------------------------------------------------
    def add_key(self, *keys: str) -> None:
        """Filter the value of every key whose name contains one of ``keys`` (case-insensitive)."""
        self._deny += [self._norm(k) for k in keys]
        self._key_cache = BoundedCache(4096)
        self._plans = BoundedCache(64, "clear")
        self._memo = {}
        self._client_sets = BoundedCache(_CLIENT_SETS, "clear")
        self.version += 1

    def add_pattern(self, name: str, regex: str | re.Pattern[str],
                    replacement: str | Callable[[re.Match[str]], str] = FILTERED) -> None:
        """Replace every match of ``regex`` in every string value."""
        compiled = re.compile(regex) if isinstance(regex, str) else regex
        self._patterns.append(Pattern(name, compiled, replacement))
        self._patterns_no_ip.append(self._patterns[-1])
        self._custom = True
        self.version += 1
        self._text_cache = BoundedCache(4096, "clear")
        self._text_cache_no_ip = BoundedCache(4096, "clear")
        self._plans = BoundedCache(64, "clear")
        self._memo = {}
        self._client_sets = BoundedCache(_CLIENT_SETS, "clear")

    # --- keys -------------------------------------------------------------------------------
    def sensitive_key(self, key: str) -> bool:
        found = self._key_cache.get(key)
        if found is None:
            k = self._norm(key)
            found = k not in self._allow and any(d in k for d in self._deny)
            self._key_cache.put(key, found)
        return found

    # --- values -----------------------------------------------------------------------------
    def text(self, value: str, *, ips: bool = True) -> str:
        """A scrubbed copy of ``value``. ``ips=False`` keeps IP addresses (infrastructure attributes).

        Short strings (keys, methods, routes, header values) repeat from event to event: their
        results are cached (bounded, per rule version), in memory only.
        """
        if len(value) > _CACHED_LEN:
            return self._text(value, ips)
        cache = self._text_cache if ips else self._text_cache_no_ip
        out = cache.get(value)
        if out is None:
            out = cache.put(value, self._text(value, ips))
        return out

    def _text(self, value: str, ips: bool) -> str:
        if not value.isascii():  # lone surrogates and NULs break storage encodings
            value = value.encode("utf-8", "replace").decode("utf-8")
        if "\x00" in value:
            value = value.replace("\x00", "\\x00")
        if len(value) > self.max_string:
            value = value[: self.max_string] + "...[truncated]"
        if not self._custom and not _MAYBE.search(value):
            return value
        lowered = value.lower()
        for pattern in (self._patterns if ips else self._patterns_no_ip):
            if pattern.hint is None or pattern.hint(value, lowered):
                new = pattern.regex.sub(pattern.replacement, value)
                if new is not value:
                    value = new
                    lowered = value.lower()
        return value

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if value is None or isinstance(value, bool | int | float):
            if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) >= 13:
                return self.text(str(value))  # a card number passed as an int
            return value
        if depth >= self.max_depth:
            return "[depth limit]"
        if isinstance(value, Mapping):
            return self.mapping(value, depth + 1)
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, depth + 1) for v in list(value)[:100]]
        return self.text(_safe_repr(value))

    def mapping(self, data: Mapping[Any, Any], depth: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(data.items()):
            if i >= 200:
                out["[more]"] = f"{len(data) - 200} keys dropped"
                break
            key = self.text(str(k))
            out[key] = FILTERED if self.sensitive_key(str(k)) else self.value(v, depth)
        return out

    def attributes(self, attrs: Mapping[str, Any], *, kind: Any = None) -> dict[str, Any] | None:
        """Span attributes: a scrubbed copy, or None when nothing needed changing.

        ``kind`` is the span's kind (``SpanKind`` or its name). Secrets, emails, tokens and cards are
        scrubbed in every value; IP addresses only where they can be a *client's* (see
        :func:`ip_policy`): the addresses of the servers and databases a service talks to stay, or the
        service map has no edges.
        """
        changes = self.attribute_changes(attrs, kind=kind)
        return {**attrs, **changes} if changes else None

    def attribute_changes(self, attrs: Mapping[str, Any], *, kind: Any = None) -> dict[str, Any] | None:
        """Only the span attributes that scrubbing changes (key -> scrubbed value), or None. The
        mapping returned may be shared (a CLIENT span's set is remembered): read it, never change it.

        The hot path of the span processor (it runs on the request thread for every sampled span):
        each (key, span kind) gets a cached plan, structural keys with bounded values
        (``http.request.method``, ``http.route``, status codes, ports, ...) and non-string values
        of non-sensitive keys are skipped, and short strings hit the scrubbed-text cache.
        """
        items = attribute_items(attrs)
        if kind is SpanKind.CLIENT:
            # A client's spans repeat one attribute set (system, namespace, peer, operation, statement
            # template) request after request: the whole set is remembered with its changes.
            try:
                signature = tuple(items)
                found = self._client_sets.get(signature, _UNSEEN)
            except TypeError:  # an unhashable value (not from an SDK span): scrubbed key by key
                return self._attribute_changes(items, kind)
            if found is _UNSEEN:
                found = self._client_sets.put(signature, self._attribute_changes(signature, kind))
            return found
        return self._attribute_changes(items, kind)

    def _attribute_changes(self, items: Iterable[tuple[str, Any]], kind: Any) -> dict[str, Any] | None:
        changes: dict[str, Any] | None = None
        plans = self._plans.get(kind)  # keyed by the kind itself: SpanKind.name is a slow property
        if plans is None:
            plans = self._plans_of(kind)
        memos = self._memo
        for key, value in items:
            plan = plans.get(key)
            if plan is None:
                plan = self._plan(plans, key, getattr(kind, "name", kind))
            if plan is _SKIP:
                continue
            if plan is _FILTER:
                if isinstance(value, str):
                    new: Any = FILTERED
                elif isinstance(value, list | tuple):
                    new = (FILTERED,) * len(value)
                else:
                    continue
            elif value.__class__ is str:
                # Memoized: short strings (the common case: one dict lookup per attribute), and statement
                # templates, whose literals are already placeholders (few distinct ones).
                if len(value) <= _CACHED_LEN:
                    memo_key: Any = plan
                    size = 4096
                elif key in _TEMPLATE_KEYS and len(value) <= _TEMPLATE_LEN:
                    memo_key, size = (plan, key), _TEMPLATES
                else:
                    memo_key = None
                if memo_key is None:
                    new = self._attr_text(plan, value)
                else:
                    memo = memos.get(memo_key)
                    if memo is None:
                        memo = memos[memo_key] = BoundedCache(size, "clear")
                    new = memo.get(value)
                    if new is None:
                        new = memo.put(value, self._attr_text(plan, value))
            elif isinstance(value, tuple | list) and value and isinstance(value[0], str):
                new = tuple(self._attr_text(plan, v) for v in value)
                if new == tuple(value):
                    continue
            elif isinstance(value, str):
                new = self._attr_text(plan, value)
            else:
                continue
            if new is not value and new != value:
                if changes is None:
                    changes = {}
                changes[key] = new
        return changes

    def _plans_of(self, kind: Any) -> BoundedCache[str, str]:
        # bounded: attribute keys are few, unless a caller invents them
        return self._plans.put(kind, BoundedCache(4096, "clear"))

    def _plan(self, plans: BoundedCache[str, str], key: str, kind_name: str | None) -> str:
        if self.sensitive_key(key.rsplit(".", 1)[-1]) and _is_sensitive_attr(key):
            plan = _FILTER
        elif key in _STRUCTURAL_KEYS:
            plan = _SKIP
        elif not self.ip_addresses:
            plan = IP_SCRUB
        else:
            plan = ip_policy(key, kind_name)
        if plan is not _FILTER and key in _URL_ATTRS:
            plan = (_QUERY_ONLY if _URL_ATTRS[key] else "") + plan + _URL_SUFFIX
        return plans.put(key, plan)

    def _attr_text(self, policy: str, value: str) -> str:
        if policy.endswith(_URL_SUFFIX):  # a URL attribute: the semconv's own redaction first
            policy = policy[: -len(_URL_SUFFIX)]
            value = redact_url(value, query_only=policy.startswith(_QUERY_ONLY))
            policy = policy.removeprefix(_QUERY_ONLY)
        if policy == IP_SCRUB:
            return self.text(value)
        if policy == IP_KEEP:
            return self.text(value, ips=False)
        # IP_URL_HOST: an outbound URL keeps its host; its path and query are scrubbed in full.
        m = _URL_HEAD.match(value)
        if m is None:
            return self.text(value)
        return self.text(value[: m.end()], ips=False) + self.text(value[m.end():])


# --- the semconv's redaction of URL attributes ------------------------------------------------
# Query parameters whose values the semconv (url.query / url.full, 1.44) redacts to ``REDACTED``,
# matched case-sensitively, plus the two of the earlier list (SigV2 signed URLs) that
# opentelemetry-util-http still redacts: a signed URL is a credential while it is valid.
SENSITIVE_QUERY_PARAMS = frozenset({"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "sig",
                                    "X-Goog-Signature", "AWSAccessKeyId", "Signature"})
REDACTED = "REDACTED"
# Attribute -> whether its value is a query alone (else a URL or target that may hold one).
_URL_ATTRS = {"url.query": True, "url.full": False, "http.url": False, "http.target": False}
_URL_SUFFIX, _QUERY_ONLY = "+url", "query:"
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@]*@")


def redact_url(value: str, *, query_only: bool = False) -> str:
    """The semconv's redaction: userinfo becomes ``REDACTED:REDACTED``, the values of
    :data:`SENSITIVE_QUERY_PARAMS` become ``REDACTED``; everything else is left as it is."""
    if not query_only and "@" in value:
        value = _USERINFO.sub(r"\1REDACTED:REDACTED@", value, count=1)
    if query_only:
        head, query, tail = "", value, ""
    else:
        q = value.find("?")
        if q < 0:
            return value
        head, rest = value[: q + 1], value[q + 1:]
        query, hash_, frag = rest.partition("#")
        tail = hash_ + frag
    if "=" not in query:
        return head + query + tail
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, val = part.partition("=")
        if eq and name in SENSITIVE_QUERY_PARAMS and val != REDACTED:
            parts[i] = name + "=" + REDACTED
            changed = True
    return head + ("&".join(parts) if changed else query) + tail


# --- which span attributes may keep IP addresses -----------------------------------------------
IP_SCRUB, IP_KEEP, IP_URL_HOST = "scrub", "keep", "url-host"
_URL_HEAD = re.compile(r"(?i)^[a-z][a-z0-9+.-]*://[^/?#\s]*")
# A client's address is personal data on every span.
_CLIENT_KEYS = frozenset({"client.address", "client.socket.address", "http.client_ip", "net.sock.peer.addr",
                          "http.request.header.x-forwarded-for", "http.request.header.x-real-ip",
                          "http.request.header.forwarded", "http.request.header.true-client-ip",
                          "http.request.header.cf-connecting-ip"})
_CLIENT_HINTS = ("client", "forwarded", "real_ip", "real-ip", "connecting-ip", "remote_addr")
# The peer of a SERVER span is its client; the peer of a CLIENT/PRODUCER/INTERNAL/CONSUMER span is a
# server, a database, a broker: infrastructure.
_PEER_KEYS = frozenset({"network.peer.address", "network.peer.port", "net.peer.ip", "net.peer.name",
                        "net.peer.port", "net.sock.peer.name", "net.sock.peer.port", "peer.service"})
_URL_KEYS = frozenset({"url.full", "http.url"})
_NOT_SERVER_SIDE = frozenset({"CLIENT", "PRODUCER", "INTERNAL", "CONSUMER"})
# Always infrastructure: where this service or the called service runs, and database connections.
_INFRA_KEYS = frozenset({"server.address", "server.port", "server.socket.address", "server.socket.domain",
                         "network.local.address", "network.local.port", "net.host.name", "net.host.ip",
                         "net.host.port", "net.sock.host.addr", "url.domain", "http.host", "http.server_name",
                         "db.connection_string", "db.name", "db.namespace", "db.system", "db.system.name",
                         "db.user", "db.instance.id", "db.redis.database_index", "db.mssql.instance_name",
                         "messaging.system", "messaging.destination.name", "rpc.system", "rpc.service"})
_INFRA_PREFIXES = ("host.", "k8s.", "container.", "cloud.", "service.", "deployment.", "os.", "process.",
                   "telemetry.", "otel.", "server.")
_policy_cache: BoundedCache[tuple[str, str | None], str] = BoundedCache(4096)
# Span attribute plans besides the IP policies: filter the whole value, or leave it alone.
_FILTER, _SKIP = "filter", "skip"
_UNSEEN = object()  # a CLIENT attribute set not remembered yet (None is a remembered "no changes")
# Structural attributes whose values are bounded by the semantic conventions or by code (methods,
# route templates, status codes, schemes, protocol versions, ports, exception class names): no
# personal data can be in them, so the span processor does not look at them.
_STRUCTURAL_KEYS = frozenset({
    "http.request.method", "http.request.method_original", "http.method", "http.route",
    "http.response.status_code", "http.status_code", "url.scheme", "http.scheme",
    "network.protocol.name", "network.protocol.version", "http.flavor", "network.transport",
    "network.type", "server.port", "client.port", "network.peer.port", "network.local.port",
    "net.host.port", "net.peer.port", "error.type", "exception.type", "otel.status_code",
    "rpc.grpc.status_code", "db.system", "db.system.name", "messaging.system", "rpc.system",
})


def ip_policy(key: str, kind_name: str | None) -> str:
    """How IP addresses in span attribute ``key`` are treated on a span of kind ``kind_name``.

    ``IP_SCRUB`` (the default, and always for client addresses such as ``client.address`` or
    ``X-Forwarded-For``), ``IP_KEEP`` for infrastructure (``server.address``, database connection
    attributes, the peer of an outbound call), ``IP_URL_HOST`` for the URL of an outbound call (its
    host is kept, its path and query are scrubbed). Unknown span kind counts as server side.
    """
    cache_key = (key, kind_name)
    found = _policy_cache.get(cache_key)
    if found is not None:
        return found
    k = key.lower()
    outbound = kind_name in _NOT_SERVER_SIDE
    if k in _CLIENT_KEYS or (any(h in k for h in _CLIENT_HINTS) and k not in _INFRA_KEYS):
        found = IP_SCRUB
    elif k in _PEER_KEYS:
        found = IP_KEEP if outbound else IP_SCRUB
    elif k in _URL_KEYS:
        found = IP_URL_HOST if kind_name in ("CLIENT", "PRODUCER") else IP_SCRUB
    elif k in _INFRA_KEYS or k.startswith(_INFRA_PREFIXES):
        found = IP_KEEP
    else:
        found = IP_SCRUB
    return _policy_cache.put(cache_key, found)


def _is_sensitive_attr(key: str) -> bool:
    # Semconv keys such as "http.request.header.authorization" or "app.user.password"; the stable
    # "session.id" / "exception.*" names are structural, not secrets.
    return not key.startswith(("exception.", "session.", "sizewise.", "otel.", "telemetry."))


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= 512 else text[:512] + "..."


_default: Scrubber | None = None


def default_scrubber() -> Scrubber:
    global _default
    if _default is None:
        _default = Scrubber()
    return _default
