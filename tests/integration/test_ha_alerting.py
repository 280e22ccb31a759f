"""HA alerting with the real binaries on loopback: a Prometheus pair (copies of
prometheus/prometheus-ha.yml, replicas `a` and `b`, the generated rules) sending to three gossiping
Alertmanagers (copies of alertmanager/alertmanager.yml), Slack and the other receivers at a local
HTTP sink. Alerts come from the generated rules over a scrape target whose samples the test sets.

Both replicas evaluate and send every alert to every peer, so each peer receives it twice: exactly
one Slack message must reach the sink, with one alert in it (the `replica` label is dropped before
sending). Then one peer is killed and the next alert still gives exactly one message; a silence set
on one peer suppresses the alert on every peer, including the killed one once it is back. Last,
a drill: one Prometheus replica is killed and the next alert still gives exactly one message.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests import ha, servers

pytestmark = pytest.mark.integration

# The critical series of a check (one series per state): 1 while the check is critical.
HEALTH = ('sizewise_health_status{job="sizewise/sizewise-hvac",sizewise_health_check="%s",'
          'sizewise_health_state="critical"}')
DEADLINE = 120.0  # scrape, evaluation and group wait are 1 s each: generous for a loaded machine
# After the first message, a duplicate could come from a later peer: each waits its position in the
# cluster times the peer timeout before sending. Wait past the last one, plus group intervals.
QUIET = 3 * ha.PEER_TIMEOUT_S + 5


def wait(predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> float:
    t0 = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - t0
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def messages(sink: ha.Sink, alertname: str) -> list[str]:
    return [t for t in sink.slack_titles() if t.endswith(f"SizeWise Alert: {alertname}")]


def relayed(sink: ha.Sink, alertname: str) -> int:
    return sum(1 for path, body in list(sink.received)
               if path == "/relay" and json.loads(body)["commonLabels"].get("alertname") == alertname)


def firing_in(prom: servers.Server, alertname: str) -> bool:
    alerts = httpx.get(f"{prom.url}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
    return any(a["labels"]["alertname"] == alertname and a["state"] == "firing" for a in alerts)


def fire_once(sink: ha.Sink, exporter: ha.FakeExporter, proms: list[servers.Server],
              peers: list[servers.Server], check: str, alertname: str) -> None:
    """Turn ``check`` critical; exactly one Slack message for ``alertname``, with one alert."""
    exporter.lines[HEALTH % check] = 1
    took = wait(lambda: messages(sink, alertname), f"the Slack message for {alertname}")
    for prom in proms:  # both replicas fire it (and so both sent it)
        wait(lambda p=prom: firing_in(p, alertname), f"{alertname} firing in {prom.name}")
    for am in peers:  # every live peer holds it
        wait(lambda a=am: ha.alert_states(a, alertname) == ["active"], f"{alertname} in {am.name}")
    time.sleep(QUIET)
    print(f"\n{alertname}: Slack message {took:.1f} s after the check turned critical")
    assert messages(sink, alertname) == [f"[FIRING:1] SizeWise Alert: {alertname}"]


def test_two_replicas_three_peers_one_message_each_and_silences_hold_everywhere() -> None:
    tmp = servers.tempdir("ha-alerting")
    exporter = ha.FakeExporter({HEALTH % c: 0 for c in ("database", "redis", "disk", "queue")})
    with ha.sink() as sink:
        am_config = ha.alertmanager_test_config(tmp, sink.url)
        peers = ha.alertmanager_cluster(am_config)
        hosts = {f"alertmanager-{i + 1}:9093": f"127.0.0.1:{am.port}" for i, am in enumerate(peers)}
        hosts["otel-agent:8889"] = f"127.0.0.1:{exporter.port}"
        proms = []
        for replica in ("a", "b"):
            path = tmp / f"prometheus-{replica}.yml"
            prom = servers.prometheus_server(path, ["--rules.alert.resend-delay=1s"])
            ha.prometheus_ha_config(tmp, path.stem, {**hosts, "localhost:9090": f"127.0.0.1:{prom.port}"},
                                    remote_write=None)
            prom.env = {"PROMETHEUS_REPLICA": replica}
            prom.name = f"prometheus-{replica}"
            proms.append(prom)
        try:
            for am in peers:
                am.start(timeout=90)
            for am in peers:
                wait(lambda a=am: ha.cluster_size(a) == 3, f"{am.name} to see 3 peers")
            for prom in proms:
                prom.start(timeout=60)
            # The external label is expanded per replica (and dropped again on the alerts).
            for prom, replica in zip(proms, "ab", strict=True):
                labels = httpx.get(f"{prom.url}/api/v1/query", params={"query": "up"}, timeout=5)
                wait(lambda p=prom: firing_in(p, "Watchdog"), f"Watchdog in {prom.name}")
                assert "replica: " + replica in httpx.get(f"{prom.url}/api/v1/status/config",
                                                          timeout=5).json()["data"]["yaml"], labels

            fire_once(sink, exporter, proms, peers, "database", "DatabaseDown")
            assert relayed(sink, "DatabaseDown") == 1  # critical: Slack and the app's relay, once each
            assert sink.count("/watchdog") == 1  # the always-firing heartbeat, once (repeats in 5m)

            # One peer dies (no goodbye to the cluster): the other two still send exactly once.
            peers[0].stop(signal.SIGKILL)
            fire_once(sink, exporter, proms, peers[1:], "redis", "RedisDown")

            # A silence set on one peer is gossiped: the alert is suppressed on every peer, and the
            # killed peer learns it when it rejoins.
            silence = {"matchers": [{"name": "alertname", "value": "CriticalHealthCheck", "isRegex": False},
                                    {"name": "sizewise_health_check", "value": "disk", "isRegex": False}],
                       "startsAt": "2000-01-01T00:00:00Z", "endsAt": "2100-01-01T00:00:00Z",
                       "createdBy": "test_ha_alerting", "comment": "maintenance"}
            sid = httpx.post(f"{peers[1].url}/api/v2/silences", json=silence, timeout=5).json()["silenceID"]
            wait(lambda: any(s["id"] == sid and s["status"]["state"] == "active"
                             for s in httpx.get(f"{peers[2].url}/api/v2/silences", timeout=2).json()),
                 "the silence gossiped to the third peer")
            peers[0].start(timeout=90)
            wait(lambda: ha.cluster_size(peers[0]) == 3, "the restarted peer to rejoin")
            exporter.lines[HEALTH % "disk"] = 1
            for prom in proms:
                wait(lambda p=prom: firing_in(p, "CriticalHealthCheck"), f"CriticalHealthCheck in {prom.name}")
            for am in peers:
                wait(lambda a=am: ha.alert_states(a, "CriticalHealthCheck") == ["suppressed"],
                     f"CriticalHealthCheck suppressed in {am.name}")
            time.sleep(QUIET)
            assert messages(sink, "CriticalHealthCheck") == []
            assert relayed(sink, "CriticalHealthCheck") == 0
            # The rejoined peer did not notify again what the cluster had already sent.
            assert messages(sink, "DatabaseDown") == ["[FIRING:1] SizeWise Alert: DatabaseDown"]
            assert messages(sink, "RedisDown") == ["[FIRING:1] SizeWise Alert: RedisDown"]

            # Failure drill: one Prometheus replica down. The other alone evaluates and sends; the
            # next alert still arrives, once (the silenced one of the same group stays out of it).
            proms[0].stop(signal.SIGKILL)
            exporter.lines[HEALTH % "queue"] = 1
            wait(lambda: messages(sink, "CriticalHealthCheck"), "the alert with one Prometheus replica down")
            time.sleep(QUIET)
            assert messages(sink, "CriticalHealthCheck") == ["[FIRING:1] SizeWise Alert: CriticalHealthCheck"]
            assert relayed(sink, "CriticalHealthCheck") == 1
        finally:
            for srv in (*proms, *peers):
                srv.stop()
            exporter.stop()
            for path in (*(s.workdir for s in (*proms, *peers)), tmp):
                shutil.rmtree(path, ignore_errors=True)
