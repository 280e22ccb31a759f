"""k8s/base/networkpolicies.yaml in the overlays as the real kustomize renders them: strictly valid, and
doing what docs/kubernetes.md "What is reachable from where" claims, row by row.

The rows are read from the docs, so the table cannot drift from what the tests check. A row's
verdict comes from NetworkPolicy semantics applied to the rendered policies and the rendered pods'
labels and ports (an isolated pod accepts a connection when some policy selecting it has an ingress
rule whose peers match the source and whose ports match the port).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import kubernetes_validate
import pytest

from tests.unit.k8s_render import NAMESPACES, OVERLAYS, REPO, Obj, find, render
from tests.unit.test_k8s_validate import K8S_VERSION, VERSIONS

DOC = REPO / "docs" / "kubernetes.md"
NAME = "app.kubernetes.io/name"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
FOREIGN_NS = "monitoring"  # where "(any namespace)" sources live in the checks
_PORT = re.compile(r"^(\d+)(?:/(TCP|UDP))?$")


@dataclass(frozen=True)
class Row:
    source: str | None  # the source pod's name label; None: "anywhere" (an address, no pod)
    foreign: bool       # the source pod is in another namespace
    dest: str
    ports: tuple[tuple[int, str], ...]
    allowed: bool
    overlays: tuple[str, ...]

    def __str__(self) -> str:
        src = "anywhere" if self.source is None else self.source + (" (other ns)" if self.foreign else "")
        return f"{src} -> {self.dest} {self.ports} {'yes' if self.allowed else 'no'}"


def _cell_name(cell: str) -> str:
    m = re.search(r"`([^`]+)`", cell)
    assert m, f"no `name` in table cell {cell!r}"
    return m.group(1)


def doc_rows(path: Path = DOC) -> list[Row]:
    text = path.read_text()
    section = text.split("## What is reachable from where", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or cells[0] in ("from", "---"):
            continue
        src, dest, ports, allowed, where, _why = cells
        assert allowed in ("yes", "no") and where in ("both", "production"), line
        parsed = []
        for token in ports.split(","):
            m = _PORT.match(token.strip())
            assert m, f"bad port {token!r} in {line}"
            parsed.append((int(m.group(1)), m.group(2) or "TCP"))
        rows.append(Row(None if src == "anywhere" else _cell_name(src), "(any namespace)" in src,
                        _cell_name(dest), tuple(parsed), allowed == "yes",
                        OVERLAYS if where == "both" else ("production",)))
    return rows


ROWS = doc_rows()


# --- NetworkPolicy semantics ------------------------------------------------------------------

def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions; {} selects everything)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    labels: dict[str, str]
    ports: dict[str, tuple[int, str]]  # container port name -> (number, protocol)


def pods(objs: list[Obj]) -> dict[str, Pod]:
    """The workloads' pod templates, by their name label."""
    out = {}
    for o in objs:
        if o["kind"] not in WORKLOADS:
            continue
        tpl = o["spec"]["template"]
        labels = tpl["metadata"]["labels"]
        ports = {p["name"]: (p["containerPort"], p.get("protocol", "TCP"))
                 for c in tpl["spec"]["containers"] for p in c.get("ports", []) if "name" in p}
        assert labels[NAME] not in out, f"two workloads with {NAME}={labels[NAME]}"
        out[labels[NAME]] = Pod(labels, ports)
    return out


def _peer_matches(peer: Obj, src: Pod | None, src_ns: str, dest_ns: str) -> bool:
    if src is None:  # an address outside any pod: only an ipBlock can name it
        return "ipBlock" in peer and peer["ipBlock"]["cidr"] in ("0.0.0.0/0", "::/0")
    if "ipBlock" in peer:
        return False  # pod addresses are not pinned here; the policies use none
    if "namespaceSelector" in peer:
        ns_ok = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": src_ns})
    else:
        ns_ok = src_ns == dest_ns
    return ns_ok and selects(peer.get("podSelector", {}), src.labels)


def _port_matches(rule_port: Obj, port: int, proto: str, dest: Pod) -> bool:
    if rule_port.get("protocol", "TCP") != proto:
        return False
    want = rule_port.get("port")
    if want is None:
        return True
    if isinstance(want, str):  # a named port of the destination pod
        return dest.ports.get(want) == (port, proto)
    return want <= port <= rule_port.get("endPort", want)


def allowed(policies: list[Obj], ns: str, src: Pod | None, src_ns: str, dest: Pod, port: int,
            proto: str) -> bool:
    selecting = [p for p in policies if p["metadata"]["namespace"] == ns
                 and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                 and selects(p["spec"]["podSelector"], dest.labels)]
    if not selecting:
        return True  # a pod no policy selects is not isolated
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            if peers and not any(_peer_matches(peer, src, src_ns, ns) for peer in peers):
                continue
            if not rule.get("ports") or any(_port_matches(rp, port, proto, dest) for rp in rule["ports"]):
                return True
    return False


# --- the checks -------------------------------------------------------------------------------

def _policies(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] == "NetworkPolicy"]


def verdicts(objs: list[Obj], overlay: str, row: Row) -> dict[tuple[int, str], bool]:
    ns = NAMESPACES[overlay]
    found = pods(objs)
    if row.source is None:
        src, src_ns = None, ns
    elif row.foreign:
        src, src_ns = Pod({NAME: row.source}, {}), FOREIGN_NS
    else:
        src, src_ns = found[row.source], ns
    dest = found[row.dest]
    return {(port, proto): allowed(_policies(objs), ns, src, src_ns, dest, port, proto)
            for port, proto in row.ports}


def _applies(objs: list[Obj], row: Row) -> bool:
    """Both pods are in the overlay and the destination listens on the row's ports."""
    found = pods(objs)
    return (row.dest in found and set(row.ports) <= set(found[row.dest].ports.values())
            and (row.source is None or row.foreign or row.source in found))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_policies_validate_strictly(overlay: str) -> None:
    policies = _policies(render(f"k8s/overlays/{overlay}"))
    assert {p["metadata"]["name"] for p in policies} >= {"default-deny-ingress", "sizewise-app-http"}
    for policy in policies:
        assert policy["metadata"]["namespace"] == NAMESPACES[overlay]
        for version in VERSIONS:
            kubernetes_validate.validate(policy, version, strict=True)


def test_strict_validation_rejects_a_misspelt_policy_field() -> None:
    policy = find(render("k8s/overlays/dev"), "NetworkPolicy", "alertmanager")
    policy["spec"]["ingress"][0]["form"] = policy["spec"]["ingress"][0].pop("from")
    with pytest.raises(kubernetes_validate.ValidationError, match="form"):
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_isolated(overlay: str) -> None:
    objs = render(f"k8s/overlays/{overlay}")
    deny = find(objs, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    for name, pod in pods(objs).items():
        # Nothing reaches a pod on a port no row opens, from any source.
        for port, proto in pod.ports.values():
            if not any(r.allowed and r.dest == name and (port, proto) in r.ports for r in ROWS):
                for src in (None, Pod({NAME: "sizewise-hvac"}, {})):
                    assert not allowed(_policies(objs), NAMESPACES[overlay], src, NAMESPACES[overlay],
                                       pod, port, proto), f"{name}:{port}/{proto} open but undocumented"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reachability_table(overlay: str) -> None:
    objs = render(f"k8s/overlays/{overlay}")
    wrong = []
    for row in ROWS:
        # The "where" column: a row applies to exactly the overlays holding its pods.
        assert _applies(objs, row) is (overlay in row.overlays), f"{row}: where column vs {overlay}"
        if overlay not in row.overlays:
            continue
        wrong += [f"{row} on {port}/{proto}" for (port, proto), ok in verdicts(objs, overlay, row).items()
                  if ok is not row.allowed]
    assert not wrong, f"{overlay}: the policies disagree with docs/kubernetes.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_port_and_every_opened_port_is_documented(overlay: str) -> None:
    objs = render(f"k8s/overlays/{overlay}")
    found = pods(objs)
    documented = {(r.dest, p) for r in ROWS if overlay in r.overlays for p in r.ports}
    opened = {(r.dest, p) for r in ROWS if r.allowed and overlay in r.overlays for p in r.ports}
    for svc in (o for o in objs if o["kind"] == "Service"):
        targets = [n for n, pod in found.items() if selects({"matchLabels": svc["spec"]["selector"]},
                                                            pod.labels)]
        assert targets, f"Service {svc['metadata']['name']} selects no pod"
        for sp in svc["spec"]["ports"]:
            for name in targets:
                target = found[name].ports[sp["targetPort"]] if isinstance(sp["targetPort"], str) \
                    else (sp["targetPort"], sp.get("protocol", "TCP"))
                assert (name, target) in documented, f"{svc['metadata']['name']} {sp}: not in the table"
    for policy in _policies(objs):
        dests = [n for n, pod in found.items() if selects(policy["spec"]["podSelector"], pod.labels)]
        for rule in policy["spec"].get("ingress", []):
            for rp in rule.get("ports", []):
                for name in dests:
                    port = found[name].ports[rp["port"]] if isinstance(rp["port"], str) \
                        else (rp["port"], rp.get("protocol", "TCP"))
                    # A port the pod does not listen on is open to nothing.
                    if port in found[name].ports.values():
                        assert (name, port) in opened, f"{policy['metadata']['name']} opens {name} {port}"


def test_a_widened_policy_breaks_a_blocked_row() -> None:
    """The checks can fail: Alertmanager's API opened to every pod of the namespace is caught."""
    objs = render("k8s/overlays/production")
    row = next(r for r in ROWS if r.source == "sizewise-hvac" and r.dest == "alertmanager")
    assert not any(verdicts(objs, "production", row).values())
    widened = copy.deepcopy(objs)
    find(widened, "NetworkPolicy", "alertmanager")["spec"]["ingress"][0]["from"].append({"podSelector": {}})
    assert verdicts(widened, "production", row)[(9093, "TCP")]
    # ... and a policy that loses its source breaks an allowed row.
    narrowed = copy.deepcopy(objs)
    find(narrowed, "NetworkPolicy", "otlp-from-app")["spec"]["ingress"][0]["from"][0]["podSelector"] = {
        "matchLabels": {NAME: "sizewise"}}
    app_row = next(r for r in ROWS if r.source == "sizewise-hvac" and r.dest == "otel-collector" and r.allowed)
    assert not any(verdicts(narrowed, "production", app_row).values())


def test_the_docs_table_has_both_kinds_of_rows() -> None:
    assert sum(r.allowed for r in ROWS) >= 10 and sum(not r.allowed for r in ROWS) >= 5
    assert any(r.source is None and r.allowed for r in ROWS), "the app's port from anywhere"
