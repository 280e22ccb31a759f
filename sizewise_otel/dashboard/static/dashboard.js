/* SizeWise performance dashboard: a self-refreshing page over /dashboard/* with a tiny SVG chart
   drawer (no dependencies). The API key, if the server needs one, is read from "#key=..." once and
   kept in sessionStorage. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#3274d9", "#e0752d", "#56a64b", "#a352cc", "#d44a3a", "#1f9ea3", "#8f8f1f", "#e05c9b"];
  var OVERVIEW_MS = 5000, WIDGETS_MS = 10000;
  var BOARDS = {
    "system-overview": "System Overview", "application-performance": "Application Performance",
    "hvac-calculations": "HVAC Calculations", "microservices-health": "Microservices Health",
    "error-tracking": "Error Tracking"
  };
  var OVERVIEW = [
    ["request_rate", "Request rate", "reqps"], ["error_rate_percent", "Error rate", "percent"],
    ["latency_p95_seconds", "p95 latency", "s"], ["cpu_percent", "CPU", "percent"],
    ["memory_percent", "Memory", "percent"], ["active_sessions", "Active sessions", "short"],
    ["calculations_per_minute", "Calculations / min", "short"],
    ["cache_hit_ratio_percent", "Cache hit ratio", "percent"], ["failing_checks", "Failing checks", "short"]
  ];

  var m = /key=([^&]+)/.exec(location.hash || "");
  if (m) { sessionStorage.setItem("sizewise-key", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  var key = sessionStorage.getItem("sizewise-key");

  function api(path) {
    var headers = key ? { "Authorization": "Bearer " + key } : {};
    return fetch(path, { headers: headers, cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error(path + ": HTTP " + r.status); }
      return r.json();
    });
  }

  function fmt(v, unit) {
    if (v === null || v === undefined || !isFinite(v)) { return "–"; }
    var a = Math.abs(v);
    function n(x, d) {
      if (d === undefined && x === Math.round(x)) { return x.toFixed(0); }
      return x.toFixed(d === undefined ? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2) : d);
    }
    switch (unit) {
      case "percent": return n(v) + " %";
      case "percentunit": return n(v * 100) + " %";
      case "s": return a >= 1 ? n(v) + " s" : a >= 0.001 ? n(v * 1000) + " ms" : n(v * 1e6) + " µs";
      case "bytes": case "Bps":
        var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
        while (a >= 1024 && i < units.length - 1) { a /= 1024; v /= 1024; i++; }
        return n(v) + " " + units[i] + (unit === "Bps" ? "/s" : "");
      case "reqps": return n(v) + " req/s";
      case "ops": return n(v) + " /s";
      case "opm": return n(v) + " /min";
      default: return a >= 1e6 ? n(v / 1e6) + " M" : a >= 1e3 ? n(v / 1e3) + " k" : n(v);
    }
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function svgEl(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  /* Draw series [{label, points: [[t, v], ...]}] into an <svg>; returns the number of points drawn. */
  function drawChart(svg, series, unit, thresholds) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var W = 400, H = 150, L = 56, R = 8, T = 8, B = 18;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var t0 = Infinity, t1 = -Infinity, v0 = Infinity, v1 = -Infinity, drawn = 0;
    series.forEach(function (s) {
      s.points.forEach(function (p) {
        if (p[1] === null) { return; }
        t0 = Math.min(t0, p[0]); t1 = Math.max(t1, p[0]); v0 = Math.min(v0, p[1]); v1 = Math.max(v1, p[1]);
      });
    });
    if (!isFinite(t0)) { svg.setAttribute("data-points", "0"); return 0; }
    v0 = Math.min(0, v0);
    (thresholds || []).forEach(function (t) { if (t <= v1 * 1.5) { v1 = Math.max(v1, t); } });
    if (v1 <= v0) { v1 = v0 + 1; }
    if (t1 <= t0) { t0 -= 5; t1 += 5; }
    function x(t) { return L + (W - L - R) * (t - t0) / (t1 - t0); }
    function y(v) { return T + (H - T - B) * (1 - (v - v0) / (v1 - v0)); }
    for (var g = 0; g <= 4; g++) {
      var gv = v0 + (v1 - v0) * g / 4;
      svg.appendChild(svgEl("line", { "class": "grid-line", x1: L, x2: W - R, y1: y(gv), y2: y(gv) }));
      var lab = svgEl("text", { "class": "axis-label", x: L - 4, y: y(gv) + 3, "text-anchor": "end" });
      lab.textContent = fmt(gv, unit);
      svg.appendChild(lab);
    }
    [t0, t1].forEach(function (t, i) {
      var lab = svgEl("text", { "class": "axis-label", x: i ? W - R : L, y: H - 4, "text-anchor": i ? "end" : "start" });
      lab.textContent = new Date(t * 1000).toLocaleTimeString();
      svg.appendChild(lab);
    });
    (thresholds || []).forEach(function (t, i) {
      if (t >= v0 && t <= v1) {
        svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(t), y2: y(t), stroke: i ? "#d4351c" : "#d99a00",
                                         "stroke-dasharray": "4 3", "stroke-width": 1 }));
      }
    });
    series.forEach(function (s, i) {
      var colour = COLOURS[i % COLOURS.length], d = "", pts = s.points.filter(function (p) { return p[1] !== null; });
      pts.forEach(function (p, j) { d += (j ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); });
      if (pts.length) {
        svg.appendChild(svgEl("path", { "class": "sw-line", d: d, stroke: colour, "data-points": pts.length }));
        var last = pts[pts.length - 1];
        svg.appendChild(svgEl("circle", { "class": "sw-point", cx: x(last[0]), cy: y(last[1]), r: 2.5, fill: colour }));
        drawn += pts.length;
      }
    });
    svg.setAttribute("data-points", String(drawn));
    return drawn;
  }

  function seriesLabel(s) {
    var keys = Object.keys(s.labels || {});
    if (s.legend && s.legend !== "__auto" && s.legend.indexOf("{{") < 0) { return s.legend; }
    if (!keys.length) { return s.legend && s.legend !== "__auto" && s.legend.indexOf("{{") < 0 ? s.legend : "value"; }
    return keys.map(function (k) { return s.labels[k]; }).join(" ");
  }

  function renderOverview(o) {
    document.getElementById("source").textContent = "source: " + o.source;
    document.getElementById("updated").textContent = "updated " + new Date(o.timestamp * 1000).toLocaleTimeString();
    var box = document.getElementById("overview");
    box.textContent = "";
    OVERVIEW.forEach(function (item) {
      var card = el("div", { "class": "card " + ((o.status || {})[item[0]] || "ok"), "data-key": item[0] });
      card.appendChild(el("div", { "class": "label" }, item[1]));
      card.appendChild(el("div", { "class": "value" }, fmt(o[item[0]], item[2])));
      box.appendChild(card);
    });
    var health = el("div", { "class": "card " + (o.health && o.health.overall_status === "healthy" ? "ok" : "warning") });
    health.appendChild(el("div", { "class": "label" }, "Health"));
    health.appendChild(el("div", { "class": "value" }, (o.health && o.health.overall_status) || "unknown"));
    box.appendChild(health);
    renderCapacity(o.capacity || []);
    var b = document.getElementById("bottlenecks");
    b.textContent = "";
    [["slowest_routes", "Slowest routes (p95)", "s"], ["slowest_db_operations", "Slowest DB operations (p95)", "s"],
     ["lowest_cache_hit_ratio", "Lowest cache hit ratio", "percent"]].forEach(function (item) {
      var card = el("div", { "class": "card" });
      card.appendChild(el("div", { "class": "label" }, item[1]));
      var list = el("ol");
      ((o.bottlenecks || {})[item[0]] || []).forEach(function (row) {
        list.appendChild(el("li", {}, (row.name || JSON.stringify(row.labels)) + ": " + fmt(row.value, item[2])));
      });
      if (!list.childNodes.length) { list.appendChild(el("li", {}, "no data yet")); }
      card.appendChild(list);
      b.appendChild(card);
    });
  }

  /* Capacity insights: one sentence each, computed by the server (numbers and "not enough
     history yet" alike); coloured by how soon the resource runs out. */
  function renderCapacity(items) {
    var list = document.getElementById("capacity-list");
    list.textContent = "";
    items.forEach(function (item) {
      var level = "ok";
      if (item.unit === "d" && item.value !== null) { level = item.value < 1 ? "critical" : item.value < 7 ? "warning" : "ok"; }
      if (item.unit === "percent" && item.value !== null) { level = item.value >= 100 ? "critical" : item.value >= 80 ? "warning" : "ok"; }
      if (item.value === null) { level = "pending"; }
      list.appendChild(el("li", { "class": level, "data-signal": item.signal, "data-widget": item.widget || "" },
                          item.sentence));
    });
    if (!items.length) { list.appendChild(el("li", {}, "no data yet")); }
  }

  var cards = {};
  function buildBoards(list) {
    var root = document.getElementById("boards");
    Object.keys(BOARDS).forEach(function (board) {
      var items = list.filter(function (w) { return w.dashboard === board; });
      if (!items.length) { return; }
      root.appendChild(el("h2", {}, BOARDS[board]));
      var grid = el("div", { "class": "grid", "data-board": board });
      items.forEach(function (w) {
        var card = el("div", { "class": "card widget", id: "w-" + w.id, "data-widget": w.id });
        var h = el("h3", {}, w.title);
        var now = el("span", { "class": "now" }, "–");
        h.appendChild(now);
        card.appendChild(h);
        card.appendChild(el("p", {}, w.description));
        var svg = svgEl("svg", { "class": "chart", "data-points": "0", role: "img", "aria-label": w.title });
        card.appendChild(svg);
        var legend = el("div", { "class": "legend" });
        card.appendChild(legend);
        grid.appendChild(card);
        cards[w.id] = { widget: w, card: card, now: now, svg: svg, legend: legend };
      });
      root.appendChild(grid);
    });
  }

  function refreshWidget(id) {
    var c = cards[id], range = document.getElementById("range").value;
    return api("/dashboard/widget/" + encodeURIComponent(id) + "?range=" + range).then(function (d) {
      c.now.textContent = fmt(d.value, d.unit);
      c.card.className = "card widget " + d.status;
      var series = d.series.map(function (s) { return { label: seriesLabel(s), points: s.points }; });
      var n = drawChart(c.svg, series, d.unit, d.thresholds);
      c.legend.textContent = "";
      if (!n) {
        c.legend.appendChild(el("span", { "class": "empty" }, "no data yet"));
      }
      series.forEach(function (s, i) {
        var item = el("span");
        var sw = el("i");
        sw.style.background = COLOURS[i % COLOURS.length];
        item.appendChild(sw);
        item.appendChild(document.createTextNode(s.label));
        c.legend.appendChild(item);
      });
    });
  }

  function showError(e) {
    var box = document.getElementById("error");
    box.hidden = !e;
    box.textContent = e ? String(e.message || e) : "";
  }

  function refreshOverview() {
    return api("/dashboard/overview").then(function (o) { renderOverview(o); showError(null); }).catch(showError);
  }
  function refreshAll() {
    var ids = Object.keys(cards), i = 0;
    function next() {  /* four requests in flight at a time */
      if (i >= ids.length) { return Promise.resolve(); }
      var id = ids[i++];
      return refreshWidget(id).catch(showError).then(next);
    }
    return Promise.all([next(), next(), next(), next()]).then(function () {
      document.body.setAttribute("data-rendered", String(Date.now()));
    });
  }

  document.getElementById("range").addEventListener("change", refreshAll);
  refreshOverview();
  api("/dashboard/widgets").then(function (d) {
    buildBoards(d.widgets);
    return refreshAll();
  }).catch(showError);
  setInterval(refreshOverview, OVERVIEW_MS);
  setInterval(refreshAll, WIDGETS_MS);
  window.SizeWiseDashboard = { drawChart: drawChart, format: fmt };
})();
