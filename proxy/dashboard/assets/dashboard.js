// synqra-proxy dashboard: fetches /dashboard/data every few seconds and draws it (no libraries, no CDN).
"use strict";
(function () {
  const REFRESH_MS = 5000;
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, ...kids) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.setAttribute("class", v); else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  // Dollars as the budget guard words them (policies/budget/policy.usd_text): cents from a dollar up, below a dollar
  // three significant digits and at least cents ($0.50, $0.05, $0.035, $0.0035): 70% of a $0.05 limit read "$0.04".
  function usd(x) {
    x = Number(x) || 0;
    if (x === 0) return "$0.00";
    const sign = x < 0 ? "-" : "", a = Math.abs(x);
    if (a >= 1) return sign + "$" + a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    const [whole, frac] = a.toFixed(Math.max(2, 2 - Math.floor(Math.log10(a)))).split(".");
    return sign + "$" + whole + "." + frac.slice(0, 2) + frac.slice(2).replace(/0+$/, "");
  }
  const pct = (p) => (Number(p) || 0).toFixed(1) + "%";  // p already in percent
  function fig(id, value, text) {
    const e = document.getElementById(id);
    e.dataset.value = String(value);
    e.textContent = text;
  }
  function replace(id, ...kids) { document.getElementById(id).replaceChildren(...kids.filter((k) => k != null)); }
  function table(head, rows, numeric) {
    const tr = (cells, tag) => el("tr", {}, ...cells.map((c, i) => el(tag, numeric.includes(i) ? { class: "num" } : {}, c)));
    return el("table", {}, el("thead", {}, tr(head, "th")), el("tbody", {}, ...rows.map((r) => tr(r, "td"))));
  }
  const clock = (ts) => new Date(ts * 1000).toLocaleTimeString("en-GB");

  function drawBudget(b, marks) {
    fig("month", b.month, b.month + " (" + b.timezone + ")");
    const state = document.getElementById("state");
    state.textContent = b.state; state.dataset.value = b.state; state.className = "badge " + b.state;
    fig("spend", b.monthly_used, usd(b.monthly_used));
    fig("limit", b.monthly_limit, usd(b.monthly_limit));
    fig("percentage", b.percentage, pct(b.percentage));
    fig("reserved", b.reserved, usd(b.reserved));
    fig("projected", b.projected_month_end, usd(b.projected_month_end));
    fig("savings", b.savings, usd(b.savings));
    fig("savings-percent", b.savings_percent, pct(b.savings_percent));
    fig("baseline", b.baseline_cost, usd(b.baseline_cost) + " on " + b.baseline_model);
    fig("local-share", b.local_share, pct(100 * b.local_share));
    fig("local-requests", b.local_requests, String(b.local_requests));
    fig("requests", b.requests, String(b.requests));
    const fill = document.getElementById("spend-fill");
    fill.style.width = Math.min(100, b.percentage) + "%";
    fill.className = "fill " + b.state;
    document.getElementById("mark-alert").style.left = 100 * b.alert_at + "%";
    document.getElementById("mark-stop").style.left = 100 * b.stop_at + "%";
    fig("mark-alert-label", marks.alert_usd, "alert at " + Math.round(100 * b.alert_at) + "% (" + usd(marks.alert_usd) + ")");
    fig("mark-stop-label", marks.stop_usd, "paid calls stop at " + Math.round(100 * b.stop_at) + "% (" + usd(marks.stop_usd) + ")");
  }

  // Cost per day as bars (left scale), client requests per day as a line (right scale).
  function drawDaily(days, today) {
    const W = 1000, H = 220, L = 56, R = 44, T = 12, B = 24;
    const cw = (W - L - R) / days.length;
    const maxCost = Math.max(...days.map((d) => d.cost_usd), 0) || 1;
    const maxReq = Math.max(...days.map((d) => d.requests), 0) || 1;
    const y = (v, max) => T + (H - T - B) * (1 - v / max);
    const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
    svg.append(el("svg:line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    svg.append(el("svg:text", { x: 4, y: T + 8, text: usd(maxCost) }));
    svg.append(el("svg:text", { x: W - R + 4, y: T + 8, text: maxReq + " req" }));
    const pts = [];
    days.forEach((d, i) => {
      const x = L + i * cw;
      const top = y(d.cost_usd, maxCost);
      const bar = el("svg:rect", { class: "day-cost", x: x + cw * 0.15, width: cw * 0.7, y: top, height: H - B - top, "data-day": d.day, "data-cost": d.cost_usd, "data-requests": d.requests });
      bar.append(el("svg:title", { text: `${d.date}: ${d.requests} requests (${d.local_requests} local), ${usd(d.cost_usd)}` }));
      svg.append(bar);
      if (d.date <= today) pts.push(`${x + cw / 2},${y(d.requests, maxReq)}`);  // the line stops at today
      if (d.requests > 0) svg.append(el("svg:circle", { class: "reqdot", cx: x + cw / 2, cy: y(d.requests, maxReq), r: 3 }));
      if (d.day === 1 || d.day % 5 === 0) svg.append(el("svg:text", { x: x + cw / 2 - 6, y: H - 8, text: String(d.day) }));
    });
    svg.append(el("svg:polyline", { class: "req", points: pts.join(" ") }));
    const legend = el("div", { class: "legend muted" }, el("span", { text: "bars: cost per day (left scale)" }), el("span", { text: "line: client requests per day (right scale)" }));
    replace("daily-chart", svg, legend);
  }

  function drawTierMix(mix) {
    const bar = el("div", { class: "mixbar" }, ...mix.tiers.map((t, i) => {
      const d = el("div", { class: "t" + (i % 4), title: t.tier }); d.style.width = 100 * t.share + "%"; return d;
    }));
    const rows = mix.tiers.map((t) => [t.tier, String(t.requests), pct(100 * t.share)]);
    replace("tier-mix", bar, table(["tier", "requests", "share"], rows, [1, 2]));
  }

  function drawEscalation(rows) {
    if (!rows.length) { replace("escalation", el("p", { class: "muted", text: "no validated answers yet" })); return; }
    const body = rows.map((r) => [r.tier, String(r.judged), String(r.escalated), pct(100 * r.rate),
      Object.entries(r.verdicts).map(([a, n]) => a + " " + n).join(", ")]);
    replace("escalation", table(["first tier", "judged", "escalated", "rate", "verdicts"], body, [1, 2, 3]));
  }

  function drawModels(m) {
    const items = [];
    for (const [name, s] of Object.entries(m.local || {})) {
      const ok = s.enabled && s.healthy;
      items.push(el("div", {}, el("span", { class: "dot" + (ok ? " ok" : "") }), name + " (local " + s.kind + "): " + (!s.enabled ? "disabled" : ok ? "healthy" : "not healthy" + (s.error ? " (" + s.error + ")" : ""))));
    }
    for (const [name, s] of Object.entries(m.cloud || {})) {
      const available = "available" in s ? s.available : s.has_key;
      const why = s.unavailable_reason || (s.has_key ? "" : (s.key_env ? s.key_env + " not set" : "no key"));
      items.push(el("div", {}, el("span", { class: "dot" + (available ? " ok" : "") }), name + ": " + (available ? "available" : "unavailable: " + why)));
    }
    replace("models", ...items);
  }

  function runLine(run) {
    return (run.time || (run.ts ? new Date(run.ts * 1000).toISOString() : "")).slice(0, 16).replace("T", " ") + " " + run.outcome + (run.version ? " → " + run.version : "");
  }

  function drawRouter(r) {
    const run = r.last_learning_run, back = r.last_rollback;
    replace("router",
      el("div", {}, el("b", { text: "version " }), el("code", { id: "router-version", text: r.version })),
      el("div", { class: "muted", text: "scorer " + r.scorer + (r.embedder ? " on " + r.embedder : "") }),
      el("div", { class: "muted", text: "thresholds " + r.thresholds.join(", ") }),
      el("div", { id: "router-last-run" }, el("b", { text: "last learning run: " }), run ? runLine(run) : el("span", { class: "muted", text: r.note || "none" })),
      run && run.reason ? el("div", { class: "muted small", id: "router-run-reason", text: run.reason }) : null,
      back ? el("div", { id: "router-last-rollback" }, el("b", { text: "last rollback: " }), runLine(back)) : null);
  }

  function drawTags(byTag) {
    const card = document.getElementById("tags-card");
    if (!byTag) { card.hidden = true; return; }
    card.hidden = false;
    const rows = Object.entries(byTag).map(([tag, t]) => [tag, String(t.requests), pct(100 * t.local_share), usd(t.cost), usd(t.savings),
      pct(t.savings_percent), t.limit == null ? "—" : usd(t.limit)]);
    replace("tags", table(["tag", "requests", "local", "cost", "savings", "savings %", "cap"], rows, [1, 2, 3, 4, 5, 6]));
  }

  function drawRecent(rows) {
    if (!rows.length) { replace("recent", el("p", { class: "muted", text: "no requests this month yet" })); return; }
    const num = (x) => (x == null ? "—" : Number(x).toFixed(4));
    const labels = (ls) => (ls || []).map((l) => l.source + " " + Number(l.value).toFixed(2)).join(", ");
    const body = rows.map((r) => [clock(r.ts), r.requested_model || "", r.chain.join(" › "), r.escalated ? "yes" : r.rephrased ? "rephrased" : "no",
      num(r.route_score), labels(r.labels), usd(r.cost_usd), r.tag || ""]);
    const t = table(["time", "asked for", "models called", "escalated", "route score", "labels", "cost", "tag"], body, [4, 6]);
    t.id = "recent-table";
    replace("recent", t, el("p", { class: "muted small", text: "Models, escalations and cost from the ledger; route scores and labels (1 = the local answer was not good enough) from the inference log, for routed requests. Prompts are never shown." }));
  }

  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    const problem = document.getElementById("problem");
    try {
      const r = await fetch("/dashboard/data", { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { location.reload(); return; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      const d = await r.json();
      drawBudget(d.budget, d.marks);
      drawDaily(d.daily, d.today);
      drawTierMix(d.tier_mix);
      drawEscalation(d.escalation);
      drawModels(d.models);
      drawRouter(d.router);
      drawTags(d.budget.by_tag);
      drawRecent(d.recent);
      problem.hidden = true;
      fig("updated", d.generated_at, "updated " + clock(d.generated_at));
      if (!document.body.dataset.loaded) performance.mark("synqra-first-draw");  // bench/dashboard_cost.py reads it
      document.body.dataset.loaded = String(d.generated_at);
    } catch (e) {
      problem.textContent = "Could not refresh: " + e.message;
      problem.hidden = false;
    } finally {
      busy = false;
    }
  }
  document.addEventListener("visibilitychange", refresh);
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
