"""Alert delivery for the embedded evaluator: Slack, a generic signed JSON webhook, and the log.

* Slack messages are formatted exactly like Alertmanager's with ``alertmanager/templates``
  (same title, text, colour), so an alert reads the same whichever path delivered it.
* The generic webhook carries an Alertmanager-like JSON body; with ``ALERT_WEBHOOK_SECRET`` set it
  is signed: ``X-SizeWise-Timestamp: <unix seconds>`` and
  ``X-SizeWise-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``
  (``verify_signature`` checks one).
* Webhook URLs must be https unless ``ALERT_ALLOW_HTTP_WEBHOOKS`` is set; they are secrets (a
  Slack URL embeds its token), so logs show only scheme and host.
* Each channel has its own bounded queue and worker task: a slow or dead endpoint delays only
  its own channel, never the app or the evaluator. Retries back off exponentially; every
  delivery ends as one ``sizewise.alerts.notifications`` count: success, failure or dropped.
* :func:`configured_notifiers` is the one reading of the channel settings; the evaluator and the
  error tracker both use it. :class:`ThreadedDispatcher` is the same dispatcher for producers that
  are plain threads (the error tracker's writer): its own daemon thread runs the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import structlog

from sizewise_otel.runtime.tasks import cancel_task

if TYPE_CHECKING:
    from sizewise_otel.settings import Settings

log = structlog.get_logger("sizewise.alerts")

SIGNATURE_HEADER = "X-SizeWise-Signature"
TIMESTAMP_HEADER = "X-SizeWise-Timestamp"
SLACK_USERNAME = "SizeWise"


@dataclass(frozen=True)
class Notification:
    """One alert instance changing state (or a reminder while it keeps firing)."""

    alertname: str
    status: str  # "firing" | "resolved"
    severity: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: float
    starts_at: float  # unix seconds
    ends_at: float | None = None
    rule: str = ""

    def as_alertmanager(self) -> dict[str, Any]:
        """The alert in Alertmanager's webhook shape."""
        return {
            "status": self.status,
            "labels": {**self.labels, "alertname": self.alertname, "severity": self.severity},
            "annotations": dict(self.annotations),
            "startsAt": _iso(self.starts_at),
            "endsAt": _iso(self.ends_at) if self.ends_at else "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint({"alertname": self.alertname, **self.labels}),
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def fingerprint(labels: Mapping[str, str]) -> str:
    raw = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


# --- Slack formatting (mirrors alertmanager/templates/sizewise.tmpl) -------------------------------

def slack_title(status: str, alertname: str, firing: int) -> str:
    count = f":{firing}" if status == "firing" else ""
    return f"[{status.upper()}{count}] SizeWise Alert: {alertname}"


def slack_color(status: str, severity: str) -> str:
    if status != "firing":
        return "good"
    return {"critical": "danger", "warning": "warning"}.get(severity, "#439FE0")


def slack_alert_text(status: str, severity: str, annotations: Mapping[str, str]) -> str:
    value = f" Value: {annotations.get('value', '')}." if status == "firing" else ""
    return (f"*{annotations.get('summary', '')}* ({severity})\n"
            f"{annotations.get('description', '')}{value}\n"
            f"<{annotations.get('runbook_url', '')}|Runbook> | <{annotations.get('dashboard_url', '')}|Dashboard>")


def slack_payload(channel: str, alerts: Sequence[Mapping[str, Any]], status: str) -> dict[str, Any]:
    """Alertmanager-shaped alerts (``status``, ``labels``, ``annotations``) -> Slack JSON."""
    labels = [a["labels"] for a in alerts]
    common = {k: v for k, v in labels[0].items() if all(lbl.get(k) == v for lbl in labels)}
    firing = sum(1 for a in alerts if a["status"] == "firing")
    title = slack_title(status, common.get("alertname", ""), firing)
    text = "\n".join(slack_alert_text(a["status"], a["labels"].get("severity", ""), a["annotations"])
                     for a in alerts)
    summaries = "; ".join(a["annotations"].get("summary", "") for a in alerts)
    return {
        "channel": channel,
        "username": SLACK_USERNAME,
        "attachments": [{
            "title": title,
            "title_link": alerts[0]["annotations"].get("dashboard_url", ""),
            "text": text,
            "fallback": f"{title}: {summaries}",
            "color": slack_color(status, common.get("severity", "")),
            "mrkdwn_in": ["fallback", "pretext", "text"],
        }],
    }


# --- URL checks and signatures ------------------------------------------------------------------

def redact_url(url: str) -> str:
    """Scheme and host only: webhook paths and queries carry tokens."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme or '?'}://{host}{port}/…"


def check_url(url: str, allow_http: bool) -> str | None:
    """None when the URL may be used, else the reason (without the URL)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an http(s) URL"
    if parts.scheme == "http" and not allow_http:
        return "must use https (set ALERT_ALLOW_HTTP_WEBHOOKS=true to allow http)"
    return None


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(secret: str, body: bytes, timestamp: str, signature: str,
                     tolerance_seconds: float = 300, now: float | None = None) -> bool:
    """For receivers: check ``X-SizeWise-Signature`` against the body and timestamp header."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, body, ts), signature or "")


# --- notifiers ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff_seconds: float = 1.0  # doubled after each failed attempt
    max_backoff_seconds: float = 30.0
    timeout_seconds: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff_seconds * (2 ** attempt), self.max_backoff_seconds)


class Notifier:
    channel = "log"

    async def send(self, notification: Notification) -> bool:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class LogNotifier(Notifier):
    channel = "log"

    async def send(self, notification: Notification) -> bool:
        emit = log.warning if notification.status == "firing" else log.info
        emit("alert", alertname=notification.alertname, status=notification.status,
             severity=notification.severity, summary=notification.annotations.get("summary", ""),
             value=notification.value, labels=dict(notification.labels))
        return True


class HttpNotifier(Notifier):
    """POST JSON with retry and exponential backoff; 4xx other than 408/429 is not retried."""

    def __init__(self, url: str, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None  # per event loop: made on first use

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.retry.timeout_seconds,
                                             transport=self._transport, follow_redirects=False)
        return self._client

    def build(self, notification: Notification) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    async def send(self, notification: Notification) -> bool:
        return await self.post(*self.build(notification))

    async def post(self, body: bytes, headers: Mapping[str, str]) -> bool:
        target = redact_url(self.url)
        for attempt in range(self.retry.attempts):
            try:
                response = await self._http().post(self.url, content=body, headers=dict(headers))
                if response.is_success:
                    return True
                reason = f"HTTP {response.status_code}"
                retryable = response.status_code >= 500 or response.status_code in (408, 429)
            except httpx.HTTPError as exc:
                reason, retryable = type(exc).__name__, True
            last = attempt + 1 >= self.retry.attempts or not retryable
            log.warning("alert delivery failed", channel=self.channel, url=target, reason=reason,
                        attempt=attempt + 1, giving_up=last)
            if last:
                return False
            await asyncio.sleep(self.retry.delay(attempt))
        return False

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def forget_client(self) -> None:
        """Drop the client without closing it (a forked child must not touch the parent's sockets)."""
        self._client = None


class SlackNotifier(HttpNotifier):
    channel = "slack"

    def __init__(self, url: str, slack_channel: str, **kw: Any) -> None:
        super().__init__(url, **kw)
        self.slack_channel = slack_channel

    def build(self, notification: Notification) -> tuple[bytes, dict[str, str]]:
        payload = slack_payload(self.slack_channel, [notification.as_alertmanager()], notification.status)
        return json.dumps(payload).encode(), {"Content-Type": "application/json"}


class WebhookNotifier(HttpNotifier):
    channel = "webhook"

    def __init__(self, url: str, secret: str = "", clock: Callable[[], float] = time.time,
                 **kw: Any) -> None:
        super().__init__(url, **kw)
        self.secret = secret
        self.clock = clock

    def body(self, alerts: Sequence[Mapping[str, Any]], status: str,
             group_labels: Mapping[str, str] | None = None) -> bytes:
        labels = [a.get("labels", {}) for a in alerts] or [{}]
        common = {k: v for k, v in labels[0].items() if all(lbl.get(k) == v for lbl in labels)}
        doc = {
            "version": "4",
            "receiver": "sizewise-webhook",
            "status": status,
            "alerts": list(alerts),
            "groupLabels": dict(group_labels or {"alertname": common.get("alertname", "")}),
            "commonLabels": common,
            "source": "sizewise-otel",
        }
        return json.dumps(doc, sort_keys=True).encode()

    def headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.secret:
            ts = int(self.clock())
            headers[TIMESTAMP_HEADER] = str(ts)
            headers[SIGNATURE_HEADER] = sign(self.secret, body, ts)
        return headers

    def build(self, notification: Notification) -> tuple[bytes, dict[str, str]]:
        body = self.body([notification.as_alertmanager()], notification.status)
        return body, self.headers(body)


@dataclass
class RawWebhook:
    """A pre-built webhook body (Alertmanager relay): sent as is, signed if a secret is set."""

    payload: dict[str, Any]


# --- the dispatcher -----------------------------------------------------------------------------

Outcome = Callable[[str, str], None]  # (channel, outcome)


@dataclass
class _Lane:
    notifier: Notifier
    queue: asyncio.Queue[Any]
    task: asyncio.Task[None] | None = None


@dataclass
class Dispatcher:
    """One bounded queue and worker per channel; ``submit`` never waits."""

    notifiers: Sequence[Notifier]
    on_outcome: Outcome
    queue_size: int = 100
    _lanes: list[_Lane] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lanes = [_Lane(n, asyncio.Queue(maxsize=self.queue_size)) for n in self.notifiers]

    @property
    def channels(self) -> list[str]:
        return [lane.notifier.channel for lane in self._lanes]

    def start(self) -> None:
        for lane in self._lanes:
            if lane.task is None or lane.task.done():
                if lane.task is None:  # a fresh start, perhaps on another event loop
                    lane.queue = asyncio.Queue(maxsize=self.queue_size)
                lane.task = asyncio.get_running_loop().create_task(
                    self._work(lane), name=f"sizewise-alerts-{lane.notifier.channel}")

    def submit(self, item: Notification | RawWebhook, channels: Sequence[str] | None = None) -> None:
        for lane in self._lanes:
            if channels is not None and lane.notifier.channel not in channels:
                continue
            try:
                lane.queue.put_nowait(item)
            except asyncio.QueueFull:
                log.warning("alert notification dropped: queue full", channel=lane.notifier.channel)
                self.on_outcome(lane.notifier.channel, "dropped")

    async def _work(self, lane: _Lane) -> None:
        while True:
            item = await lane.queue.get()
            try:
                ok = await self._deliver(lane.notifier, item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert notifier crashed", channel=lane.notifier.channel)
                ok = False
            finally:
                lane.queue.task_done()
            self.on_outcome(lane.notifier.channel, "success" if ok else "failure")

    @staticmethod
    async def _deliver(notifier: Notifier, item: Notification | RawWebhook) -> bool:
        if isinstance(item, Notification):
            return await notifier.send(item)
        if isinstance(notifier, WebhookNotifier):
            body = json.dumps(item.payload, sort_keys=True).encode()
            return await notifier.post(body, notifier.headers(body))
        return True

    async def drain(self, timeout: float) -> bool:
        """Wait (bounded) for queued deliveries to finish; True when every lane is idle."""
        try:
            await asyncio.wait_for(asyncio.gather(*(lane.queue.join() for lane in self._lanes)), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 2.0) -> None:
        await self.drain(timeout)
        for lane in self._lanes:
            task, lane.task = lane.task, None
            await cancel_task(task)
        for lane in self._lanes:
            with contextlib.suppress(Exception):
                await lane.notifier.aclose()


# --- configuration and the thread-side dispatcher ------------------------------------------------

def configured_notifiers(settings: Settings, retry: RetryPolicy, *, log_channel: bool = True) -> list[Notifier]:
    """The channels the settings ask for: the log, then Slack and the generic webhook when set.

    A URL that fails :func:`check_url` disables its channel with one warning (never the URL itself).
    """
    found: list[Notifier] = [LogNotifier()] if log_channel else []
    for name, url in (("ALERT_SLACK_WEBHOOK_URL", settings.alert_slack_webhook_url),
                      ("ALERT_WEBHOOK_URL", settings.alert_webhook_url)):
        if not url:
            continue
        problem = check_url(url, settings.alert_allow_http_webhooks)
        if problem:
            log.warning("alert channel disabled", variable=name, url=redact_url(url), reason=problem)
            continue
        if name == "ALERT_SLACK_WEBHOOK_URL":
            found.append(SlackNotifier(url, settings.alert_slack_channel, retry=retry))
        else:
            found.append(WebhookNotifier(url, settings.alert_webhook_secret, retry=retry))
    return found


class ThreadedDispatcher:
    """A :class:`Dispatcher` on its own daemon thread and event loop, fed from any thread.

    ``submit`` never blocks: it hands the item to the loop (``call_soon_threadsafe``), where the
    per-channel bounded queues apply (full: counted ``dropped``). The thread starts on the first
    submit (and again in a forked child), so a process that never alerts runs no thread.
    """

    def __init__(self, notifiers: Sequence[Notifier], on_outcome: Outcome, queue_size: int = 100) -> None:
        self.notifiers = list(notifiers)
        self.on_outcome = on_outcome
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: Dispatcher | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def channels(self) -> list[str]:
        return [n.channel for n in self.notifiers]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _ensure(self) -> tuple[asyncio.AbstractEventLoop, Dispatcher]:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread and loop are not ours
                self._pid, self._thread, self._loop, self._dispatcher = os.getpid(), None, None, None
                for n in self.notifiers:
                    if isinstance(n, HttpNotifier):
                        n.forget_client()  # the parent's connections are not ours either
            if self._loop is None or self._dispatcher is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                holder: dict[str, Dispatcher] = {}

                async def setup() -> None:
                    holder["d"] = Dispatcher(self.notifiers, self.on_outcome, self.queue_size)
                    holder["d"].start()  # the lanes' tasks need the running loop
                    ready.set()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.run_until_complete(setup())
                    loop.run_forever()

                thread = threading.Thread(target=run, name="sizewise-alert-notify", daemon=True)
                thread.start()
                if not ready.wait(5.0):
                    raise RuntimeError("the alert notifier thread did not start")
                self._loop, self._dispatcher, self._thread = loop, holder["d"], thread
            return self._loop, self._dispatcher

    def submit(self, item: Notification | RawWebhook) -> None:
        loop, dispatcher = self._ensure()
        loop.call_soon_threadsafe(dispatcher.submit, item)

    def drain(self, timeout: float) -> bool:
        """Wait (bounded) until what was submitted so far is delivered or given up. True when idle."""
        with self._lock:
            loop, dispatcher = self._loop, self._dispatcher
        if loop is None or dispatcher is None or self._pid != os.getpid():
            return True

        try:
            return asyncio.run_coroutine_threadsafe(dispatcher.drain(timeout), loop).result(timeout + 1.0)
        except Exception:
            return False

    def stop(self, timeout: float = 2.0) -> None:
        """Drain (bounded), then stop the loop and its thread. Idempotent."""
        with self._lock:
            loop, dispatcher, thread = self._loop, self._dispatcher, self._thread
            self._loop = self._dispatcher = self._thread = None
        if loop is None or dispatcher is None or thread is None or self._pid != os.getpid():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(dispatcher.stop(timeout), loop).result(timeout + 2.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(2.0)
        if not thread.is_alive():
            loop.close()
