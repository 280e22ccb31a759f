"""The HTML dashboard in headless Chromium (Debian packages chromium, chromium-driver): the page
loads against the demo under load, its charts draw data points, and the screenshot is not blank."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sizewise_otel.dashboard.widgets import widgets
from tests.apprunner import RunningApp, run_demo
from tests.servers import need, tempdir, wait_for

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=8000"]


@pytest.fixture(scope="module")
def chromium() -> str:
    return need(shutil.which("chromium") or shutil.which("chromium-browser"),
                "Chromium (Debian packages chromium, chromium-driver)")


@pytest.fixture(scope="module")
def demo() -> Iterator[RunningApp]:
    with run_demo(args=["--load", "--load-rate", "60"]) as app:
        def has_rates() -> bool:  # the embedded history has two samples after traffic began
            data = httpx.get(f"{app.url}/dashboard/widget/hvac_calculations_per_minute", timeout=10).json()
            return data["value"] is not None and len(data["series"][0]["points"]) >= 2

        wait_for(has_rates, 90, "rates in the embedded dashboard history")
        yield app


def run_chromium(chromium: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    profile = tempdir("chromium")
    try:
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, timeout=timeout, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_charts_render_data_points(chromium: str, demo: RunningApp) -> None:
    result = run_chromium(chromium, "--dump-dom", f"{demo.url}/dashboard")
    dom = result.stdout.decode("utf-8", "replace")
    assert "data-rendered=" in dom, f"page scripts did not finish:\n{result.stderr.decode()[-2000:]}"
    charts = dict(re.findall(r'<div class="card widget[^"]*" id="w-([a-z0-9_]+)".*?data-points="(\d+)"',
                             dom, flags=re.S))
    assert set(charts) == {w.id for w in widgets()}
    drawn = {wid for wid, n in charts.items() if int(n) > 0}
    print(f"\ncharts-with-points {len(drawn)}/{len(charts)}")
    assert {"system_cpu", "system_memory", "http_request_rate", "http_latency_p95",
            "hvac_calculations_per_minute", "cache_hit_ratio", "db_latency_p95"} <= drawn
    assert len(drawn) >= 0.8 * len(charts), sorted(set(charts) - drawn)
    assert len(re.findall(r'<path class="sw-line" d="M[\d.]+,[\d.]+(?:L[\d.]+,[\d.]+)+"', dom)) >= 20
    assert dom.count('class="sw-point"') >= len(drawn)
    overview = re.search(r'data-key="request_rate".*?<div class="value">([^<]+)</div>', dom, flags=re.S)
    assert overview and overview.group(1) != "\u2013"


def test_screenshot_is_not_blank(chromium: str, demo: RunningApp) -> None:
    shot = tempdir("shot") / "dashboard.png"
    run_chromium(chromium, "--window-size=1280,900", f"--screenshot={shot}", f"{demo.url}/dashboard")
    assert shot.exists(), "no screenshot written"
    width, height, pixels = read_png(shot)
    assert (width, height) == (1280, 900)
    colours = {pixels[i:i + 3] for i in range(0, len(pixels), 3 * 7)}
    assert len(colours) > 50, "screenshot looks blank"
    # Chart lines are drawn in the palette's blue (#3274d9): anti-aliasing keeps some pixels exact.
    assert sum(1 for i in range(0, len(pixels), 3) if pixels[i:i + 3] == b"\x32\x74\xd9") > 20
    shutil.rmtree(shot.parent, ignore_errors=True)


def read_png(path: Path) -> tuple[int, int, bytes]:
    """Decode an 8-bit RGB/RGBA PNG into RGB bytes (enough for a screenshot check, no Pillow)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        prev = line
        for x in range(width):
            out += line[x * channels:x * channels + 3]
    return width, height, bytes(out)
