"""bench/rounds.py: each variant run sits between two bare runs, which chain from round to round."""

from __future__ import annotations

from typing import Any

import pytest

from bench import rounds
from bench.proc import WrkResult


class FakeServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"http://{name}"


def test_variant_runs_sit_between_bare_runs_that_chain_across_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    # bare gets faster each run (a machine warming up): each ratio must use its own neighbours
    rps = {"bare": iter(range(1000, 2000, 100)), "a": iter([990, 1290, 1590]), "b": iter([1090, 1390, 1690])}

    def measured(server: Any, url: str, seconds: float, script: Any = None) -> WrkResult:
        calls.append(server.name)
        result = WrkResult(float(next(rps[server.name])), 1.0, 2.0, 1000)
        result.cpu_us = 100.0
        return result

    monkeypatch.setattr(rounds, "measured", measured)
    monkeypatch.setattr(rounds, "wrk", lambda *a, **k: None)
    servers = {v: FakeServer(v) for v in ("bare", "a", "b")}
    out = rounds.interleave(servers, {"bare": "bare", "a": "A", "b": "B"}, "/", rounds=3, seconds=1, warmup=0)
    # 3 rounds of bare,x,bare,y,bare with the last bare run of a round opening the next: 7 bare runs
    assert calls == ["bare", "a", "bare", "b", "bare", "b", "bare", "a", "bare", "a", "bare", "b", "bare"]
    # bare ran 1000, 1100, ..., 1600: each ratio is against the mean of the bare runs around it
    assert out["a"].ratios == pytest.approx([990 / 1050, 1290 / 1350, 1590 / 1450])
    assert out["b"].ratios == pytest.approx([1090 / 1150, 1390 / 1250, 1690 / 1550])
    assert len(out["bare"].runs) == 3 and out["bare"].ratios == [1.0, 1.0, 1.0]
