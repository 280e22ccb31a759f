"""Alerting: with --prometheus, the generated rules are loaded and healthy and alerts have somewhere
to go; with --alertmanager, its configuration is loaded and has a Slack receiver that is routed."""

from __future__ import annotations

from typing import Any

import yaml

from sizewise_otel.validate import artifacts
from sizewise_otel.validate.context import Context
from sizewise_otel.validate.model import Verdict, fail, ok, skip, warn
from sizewise_otel.validate.registry import check

RULES_FIX = ("load the generated rules: `rule_files: [rules/*.yml]` in prometheus.yml with "
             "prometheus/rules/ mounted beside it, regenerate with `sizewise-otel render`, then "
             "reload Prometheus (POST /-/reload)")


@check("alerting", "alert rules loaded in Prometheus", weight=2)
def rules_loaded(ctx: Context) -> Verdict:
    if not ctx.prometheus:
        return skip("needs --prometheus URL", "pass --prometheus to check the rules")
    files, source = artifacts.rule_files()
    expected = artifacts.rule_names(files)
    resp = ctx.external(ctx.prometheus, "/api/v1/rules")
    if resp.status_code != 200:
        return fail(f"Prometheus /api/v1/rules answered {resp.status_code}", "check the --prometheus URL")
    loaded = {(g["name"], r["name"]): r for g in resp.json()["data"]["groups"] for r in g["rules"]}
    missing = [f"{g}/{n}" for g, n in expected if (g, n) not in loaded]
    if missing:
        return fail(f"{len(missing)}/{len(expected)} rules from {source} not loaded: {', '.join(missing[:5])}",
                    RULES_FIX, missing=missing)
    unhealthy = [f"{g}/{n}: {loaded[(g, n)].get('lastError') or loaded[(g, n)].get('health')}"
                 for g, n in expected if loaded[(g, n)].get("health") not in ("ok", "unknown")]
    if unhealthy:
        return fail(f"rules failing to evaluate: {'; '.join(unhealthy[:3])}",
                    "fix the rule's expression in sizewise_otel/alerts/rules.py and run `sizewise-otel render`",
                    unhealthy=unhealthy)
    pending = [f"{g}/{n}" for g, n in expected if loaded[(g, n)].get("health") == "unknown"]
    if pending:
        return warn(f"{len(pending)} rules not evaluated yet", "wait one evaluation_interval and re-run")
    return ok(f"all {len(expected)} rules of {source} loaded and healthy")


@check("alerting", "Prometheus sends alerts to an Alertmanager")
def prometheus_alertmanagers(ctx: Context) -> Verdict:
    if not ctx.prometheus:
        return skip("needs --prometheus URL", "pass --prometheus to check alert delivery")
    resp = ctx.external(ctx.prometheus, "/api/v1/alertmanagers")
    if resp.status_code != 200:
        return fail(f"Prometheus /api/v1/alertmanagers answered {resp.status_code}", "check the --prometheus URL")
    active = [a["url"] for a in resp.json()["data"].get("activeAlertmanagers", [])]
    if not active:
        return fail("Prometheus has no active Alertmanager: alerts fire but go nowhere",
                    "set alerting.alertmanagers in prometheus.yml to the Alertmanager's address")
    if ctx.alertmanager and not any(ctx.alertmanager.split("://", 1)[-1] in a for a in active):
        return warn(f"Prometheus sends to {', '.join(active)}, not to {ctx.alertmanager}",
                    "point alerting.alertmanagers at the Alertmanager you validate")
    return ok("alerts go to " + ", ".join(active))


def _am_config(ctx: Context) -> tuple[dict[str, Any] | None, Verdict | None]:
    if "am_config" not in ctx.cache:
        assert ctx.alertmanager
        resp = ctx.external(ctx.alertmanager, "/api/v2/status")
        if resp.status_code != 200:
            ctx.cache["am_config"] = (None, fail(f"Alertmanager /api/v2/status answered {resp.status_code}",
                                                 "check the --alertmanager URL"))
        else:
            body = resp.json()
            try:
                config = yaml.safe_load(body["config"]["original"]) or {}
                ctx.cache["am_config"] = (config, None)
            except (KeyError, yaml.YAMLError) as exc:
                ctx.cache["am_config"] = (None, fail(f"Alertmanager reports no readable config ({exc})",
                                                     "start Alertmanager with --config.file=alertmanager.yml"))
            ctx.cache["am_status"] = body
    return ctx.cache["am_config"]


@check("alerting", "Alertmanager config loaded")
def am_loaded(ctx: Context) -> Verdict:
    if not ctx.alertmanager:
        return skip("needs --alertmanager URL", "pass --alertmanager to check notification routing")
    config, problem = _am_config(ctx)
    if problem:
        return problem
    cluster = (ctx.cache.get("am_status", {}).get("cluster") or {}).get("status")
    receivers = [r.get("name") for r in config.get("receivers", [])]
    if not receivers or not (config.get("route") or {}).get("receiver"):
        return fail("the loaded config has no route receiver", "use alertmanager/alertmanager.yml")
    if cluster not in (None, "ready", "disabled"):
        return warn(f"cluster status {cluster}", "check the Alertmanager peers (or --cluster.listen-address=)")
    return ok(f"config loaded, {len(receivers)} receivers, route -> {config['route']['receiver']}")


def _routed(route: dict[str, Any]) -> set[str]:
    found = {route.get("receiver")} if route.get("receiver") else set()
    for child in route.get("routes") or []:
        found |= _routed(child)
    return found


@check("alerting", "Alertmanager has a routed Slack receiver")
def am_slack(ctx: Context) -> Verdict:
    if not ctx.alertmanager:
        return skip("needs --alertmanager URL", "pass --alertmanager to check the Slack receiver")
    config, problem = _am_config(ctx)
    if problem:
        return problem
    slack = [r["name"] for r in config.get("receivers", []) if r.get("slack_configs")]
    if not slack:
        return fail("no receiver with slack_configs", "add the Slack receiver of alertmanager/alertmanager.yml")
    routed = _routed(config.get("route") or {})
    unrouted = [n for n in slack if n not in routed]
    if len(unrouted) == len(slack):
        return fail(f"Slack receivers {', '.join(slack)} are never routed to",
                    "name a Slack receiver in route.receiver or a child route")
    no_url = [r["name"] for r in config.get("receivers", []) for c in r.get("slack_configs") or []
              if not (c.get("api_url") or c.get("api_url_file") or (config.get("global") or {}).get("slack_api_url")
                      or (config.get("global") or {}).get("slack_api_url_file"))]
    if no_url:
        return fail(f"Slack receiver {no_url[0]} has no webhook URL",
                    "set api_url_file to the file holding the Slack webhook URL")
    return ok(f"Slack receiver(s) {', '.join(slack)} routed")
