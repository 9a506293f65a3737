/* QuantumRNG dashboard: polls /api/v2/dashboard (2 s) and /api/v2/dashboard/quality (10 s),
   draws with the vendored uPlot, writes text only through textContent (no HTML from data). */
(() => {
  "use strict";

  const POLL_MS = 2000;
  const QUALITY_MS = 10000;
  const TIMEOUT_MS = 5000;
  const KEEP_SECONDS = 3600;
  const KEY_NAME = "quantumrng.dashboard.key";
  const COLORS = {
    blue: "#2563eb", amber: "#d97706", green: "#16a34a", red: "#dc2626",
    violet: "#7c3aed", teal: "#0d9488", grid: "#e5e9f0",
  };

  const $ = (id) => document.getElementById(id);
  let key = sessionStorage.getItem(KEY_NAME) || "";
  let paused = false;
  let downSince = null;
  let lastData = null;
  let since = null;
  let authorized = false;
  let lastOverall = "";
  const hist = { t: [], blocks: [], req: [], err: [], bytes: [] };
  const charts = {};

  // --- formatting -------------------------------------------------------------------

  const fmtInt = (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"));
  const fmtNum = (n, d = 3) => (n === null || n === undefined ? "–" : Number(n).toFixed(d));
  function fmtBytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    let v = Math.abs(n);
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
    return (i === 0 ? Math.round(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
  }
  const fmtRate = (n) => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US"));
  function pad(n) { return String(n).padStart(2, "0"); }
  function fmtClock(date) { return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`; }
  function fmtTime(sec) {
    if (!sec) return "–";
    const d = new Date(sec * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(d)}`;
  }
  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  function fmtAgo(sec) {
    if (!sec) return "–";
    return fmtDuration(Date.now() / 1000 - sec) + " ago";
  }
  const short = (s, n = 12) => (!s ? "–" : s.length > n ? s.slice(0, n) + "…" : s);

  // --- DOM helpers ------------------------------------------------------------------

  function setText(id, text, cls) {
    const el = $(id);
    el.textContent = text;
    if (cls !== undefined) {
      el.classList.remove("ok", "warn", "bad");
      if (cls) el.classList.add(cls);
    }
  }
  function cell(text, cls) {
    const td = document.createElement("td");
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function pValueList(t, threshold) {
    // every p-value of a many-valued test, opened from the keyboard as well as the mouse
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = `${t.p_values.length} values`;
    const list = document.createElement("ol");
    list.className = "pvalues";
    t.p_values.forEach((p, i) => {
      const item = document.createElement("li");
      const label = t.labels && t.labels[i] ? `${t.labels[i]}: ` : "";
      item.textContent = label + p.toFixed(6);
      if (p < threshold) item.className = "low";
      list.appendChild(item);
    });
    details.append(summary, list);
    return details;
  }
  function badge(text, cls) {
    const b = document.createElement("span");
    b.className = "badge " + cls;
    b.textContent = text;
    return b;
  }
  function fillRows(tbody, rows) {
    tbody.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement("tr");
      cells.forEach((c) => tr.appendChild(c));
      return tr;
    }));
  }
  function facts(dl, items) {
    const nodes = [];
    for (const [label, value, cls] of items) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      if (value instanceof Node) dd.appendChild(value); else dd.textContent = value;
      if (cls) dd.className = cls;
      nodes.push(dt, dd);
    }
    dl.replaceChildren(...nodes);
  }
  function empty(text) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = text;
    return p;
  }

  // --- network ----------------------------------------------------------------------

  async function getJSON(path) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
    try {
      const headers = key ? { Authorization: "Bearer " + key } : {};
      const r = await fetch(path, { headers, cache: "no-store", credentials: "omit", signal: ctrl.signal });
      let body = null;
      try { body = await r.json(); } catch (e) { body = null; }
      return { status: r.status, body };
    } finally {
      clearTimeout(timer);
    }
  }

  function markDown() {
    if (!downSince) downSince = new Date();
    const banner = $("banner");
    banner.className = "banner";
    const seen = lastData ? ` The figures below are from ${fmtClock(new Date(lastData.generated_at * 1000))}.` : "";
    banner.textContent = `Server unreachable since ${fmtClock(downSince)}; retrying every ${POLL_MS / 1000} s.${seen}`;
    banner.hidden = false;
    $("main").classList.add("stale");
    setOverall("Offline", "pill-bad");
  }
  function markUp() {
    if (downSince) {
      downSince = null;
      $("banner").hidden = true;
      $("main").classList.remove("stale");
    }
  }
  function showProblem(body) {
    const banner = $("banner");
    banner.className = "banner warn";
    const message = body && body.error ? body.error.message : "an unexpected answer";
    banner.textContent = `The server answers, but its data is unavailable: ${message}`;
    banner.hidden = false;
    setOverall("Degraded", "pill-warn");
  }
  function needKey(status, body) {
    authorized = false;
    const form = $("auth");
    const wasHidden = form.hidden;
    form.hidden = false;
    $("main").hidden = true;
    $("forget").hidden = !key;
    let why = "";
    if (key && status === 401) why = "That key is invalid or revoked.";
    else if (key && status === 403) why = "That key lacks the admin scope.";
    else if (status === 429) why = (body && body.error && body.error.message) || "Too many attempts; wait a moment.";
    $("auth-error").textContent = why;
    setOverall("API key needed", "pill-unknown");
    if (wasHidden) $("key").focus();
  }
  function authorize() {
    if (authorized) return;
    authorized = true;
    $("auth").hidden = true;
    $("main").hidden = false;
    $("forget").hidden = !key;
  }

  function setOverall(text, cls) {
    const el = $("overall");
    if (lastOverall === text + cls) return;
    lastOverall = text + cls;
    el.className = "pill " + cls;
    el.textContent = text;
  }

  // --- charts -----------------------------------------------------------------------

  function chartSize(el) {
    const width = Math.max(240, Math.floor(el.clientWidth || el.parentElement.clientWidth || 300));
    return { width, height: window.innerWidth < 600 ? 190 : 230 };
  }
  const SPAN_SECONDS = 60;
  function setTimeData(chart, data) {
    chart.setData(data, false);
    const ts = data[0];
    const end = ts.length ? ts[ts.length - 1] : Date.now() / 1000;
    const start = ts.length ? Math.min(ts[0], end - SPAN_SECONDS) : end - SPAN_SECONDS;
    chart.setScale("x", { min: start, max: end });
  }
  function timeTicks(u, ticks) {
    const step = ticks.length > 1 ? ticks[1] - ticks[0] : SPAN_SECONDS;
    return ticks.map((t) => {
      const d = new Date(t * 1000);
      return step >= 60 ? `${pad(d.getHours())}:${pad(d.getMinutes())}` : fmtClock(d);
    });
  }
  const timeAxis = () => axis({ space: 70, values: timeTicks });
  const axis = (extra) => Object.assign({ stroke: "#5b6675", grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid } }, extra);

  function makeChart(name, opts, data) {
    const el = $("chart-" + name);
    el.replaceChildren();
    const chart = new uPlot(Object.assign(chartSize(el), opts), data, el);
    charts[name] = chart;
    return chart;
  }

  function poolChart() {
    return makeChart("pool", {
      scales: { x: { time: true, auto: false }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.08] } },
      series: [
        { label: "Time", value: (u, v) => (v === null || v === undefined ? "–" : fmtClock(new Date(v * 1000))) },
        { label: "Blocks", stroke: COLORS.blue, width: 2, fill: "rgba(37,99,235,0.08)", value: (u, v) => (v === null ? "–" : fmtInt(v)) },
        { label: "Low water", stroke: COLORS.amber, width: 1.5, dash: [6, 4], points: { show: false } },
        { label: "High water", stroke: COLORS.green, width: 1.5, dash: [6, 4], points: { show: false } },
      ],
      axes: [timeAxis(), axis({ size: 56, values: (u, v) => v.map((x) => fmtInt(x)) })],
    }, [[], [], [], []]);
  }

  function ratesChart() {
    return makeChart("rates", {
      scales: { x: { time: true, auto: false }, r: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] }, b: { range: (u, min, max) => [0, Math.max(1000, max) * 1.1] } },
      series: [
        { label: "Time", value: (u, v) => (v === null || v === undefined ? "–" : fmtClock(new Date(v * 1000))) },
        { label: "Requests/s", scale: "r", stroke: COLORS.blue, width: 2, value: (u, v) => (v === null ? "–" : fmtRate(v)) },
        { label: "Errors/s", scale: "r", stroke: COLORS.red, width: 1.5, points: { show: false }, value: (u, v) => (v === null ? "–" : fmtRate(v)) },
        { label: "Bytes/s", scale: "b", stroke: COLORS.violet, width: 2, points: { show: false }, value: (u, v) => (v === null ? "–" : fmtBytes(v) + "/s") },
      ],
      axes: [
        timeAxis(),
        axis({ scale: "r", size: 50, values: (u, v) => v.map((x) => fmtRate(x)) }),
        axis({ scale: "b", side: 1, size: 64, grid: { show: false }, values: (u, v) => v.map((x) => fmtBytes(x)) }),
      ],
    }, [[], [], [], []]);
  }

  function barChart(name, label, color, yRange, fmt, extra) {
    const series = [
      { label: "Qubit", value: (u, v) => (v === null ? "–" : "q" + v) },
      { label, stroke: color, fill: color + "cc", width: 1, paths: uPlot.paths.bars({ size: [0.7, 28] }), points: { show: false }, value: (u, v) => (v === null ? "–" : fmt(v)) },
    ];
    if (extra) series.push(extra);
    return makeChart(name, {
      scales: { x: { time: false, range: (u, min, max) => [min - 0.6, max + 0.6] }, y: { range: yRange } },
      series,
      axes: [
        axis({ values: (u, v) => v.map((x) => (Number.isInteger(x) ? "q" + x : "")), grid: { show: false } }),
        axis({ size: 64, values: (u, v) => v.map((x) => fmt(x)) }),
      ],
      legend: { show: true },
    }, series.map(() => []));
  }

  function biasChart() {
    let limit = 0.02;
    const chart = barChart("bias", "Ones fraction − 0.5", COLORS.teal, () => [-limit, limit], (x) => (x >= 0 ? "+" : "") + x.toFixed(3));
    chart.setLimit = (l) => { limit = l; };
    return chart;
  }
  function entropyChart() {
    return barChart("entropy", "Last harvest (MCV)", COLORS.blue, () => [0, 1.05], (x) => x.toFixed(3), {
      label: "Assessed (H per bit)", stroke: COLORS.amber, width: 0, points: { show: true, size: 9, fill: COLORS.amber, stroke: COLORS.amber },
      value: (u, v) => (v === null ? "–" : v.toFixed(3)),
    });
  }

  function setupCharts() {
    poolChart();
    ratesChart();
    biasChart();
    entropyChart();
    const ro = new ResizeObserver(() => {
      for (const [name, chart] of Object.entries(charts)) {
        const el = $("chart-" + name);
        if (el.clientWidth > 0) {
          const size = chartSize(el);
          if (size.width !== chart.width || size.height !== chart.height) chart.setSize(size);
        }
      }
    });
    for (const name of Object.keys(charts)) ro.observe($("chart-" + name));
  }

  // --- rendering --------------------------------------------------------------------

  function appendHistory(h) {
    for (let i = 0; i < h.t.length; i += 1) {
      hist.t.push(h.t[i]);
      hist.blocks.push(h.blocks[i]);
      hist.req.push(h.requests_per_second[i]);
      hist.err.push(h.errors_per_second[i]);
      hist.bytes.push(h.drbg_bytes_per_second[i] + h.raw_bytes_per_second[i]);
    }
    if (h.t.length) since = h.t[h.t.length - 1];
    const cutoff = (hist.t.length ? hist.t[hist.t.length - 1] : 0) - KEEP_SECONDS;
    let drop = 0;
    while (drop < hist.t.length && hist.t[drop] < cutoff) drop += 1;
    if (drop) for (const k of Object.keys(hist)) hist[k].splice(0, drop);
  }

  function overall(d) {
    const state = d.source.state;
    const blocks = d.pool.blocks;
    if (state === "persistent") return ["Source stopped", "pill-bad"];
    if (blocks === 0) return ["Pool empty", "pill-bad"];
    if (state === "intermittent") return ["Intermittent failures", "pill-warn"];
    if (!d.engine.seeded) return ["DRBG not seeded", "pill-warn"];
    if (d.harvester && d.harvester.backoff_until) return ["Harvest backing off", "pill-warn"];
    if (blocks < d.pool.low_water) return ["Pool below low water", "pill-warn"];
    return ["Healthy", "pill-ok"];
  }

  function renderTiles(d) {
    const p = d.pool;
    const srcBlocks = p.by_source && p.by_source[d.source.kind] !== undefined ? p.by_source[d.source.kind] : p.blocks;
    const poolCls = srcBlocks === 0 ? "bad" : srcBlocks < p.low_water ? "warn" : "ok";
    setText("t-pool", `${fmtInt(srcBlocks)} blocks`, poolCls);
    setText("t-pool-sub", `low ${fmtInt(p.low_water)} · high ${fmtInt(p.high_water)} · ${fmtInt(p.credited_bits)} credited bits`);
    const st = d.source.state;
    const stCls = st === "ok" ? "ok" : st === "persistent" ? "bad" : st === "intermittent" ? "warn" : "";
    const stText = { ok: "OK", intermittent: "Intermittent failure", persistent: "Persistent failure", startup: "Start-up pending", unknown: "Not harvested here" }[st] || st;
    setText("t-source", stText, stCls);
    const backend = d.harvester && d.harvester.backend ? " · " + d.harvester.backend : "";
    setText("t-source-sub", `${d.source.kind}${backend}${d.source.quantum ? " · quantum" : ""}${d.source.creditable ? "" : " · earns no credit"}`);
    if (d.leader) {
      setText("t-leader", d.leader.node, "");
      const mine = d.harvester && d.harvester.active ? "this worker · " : "";
      setText("t-leader-sub", `${mine}lease ${d.leader.expires_in.toFixed(1)} s left · token ${d.leader.token}`);
    } else {
      setText("t-leader", "None", "warn");
      setText("t-leader-sub", "no process holds the harvest lease");
    }
    const e = d.engine;
    setText("t-drbg", e.seeded ? "Seeded" : "Not seeded", e.seeded ? "ok" : "warn");
    setText("t-drbg-sub", `${fmtInt(e.reseeds)} seeding${e.reseeds === 1 ? "" : "s"}${e.seeded_at ? " · seeded " + fmtAgo(e.seeded_at) : ""}`);
    const n = hist.t.length;
    const req = n ? hist.req[n - 1] : 0;
    const err = n ? hist.err[n - 1] : 0;
    const bytes = n ? hist.bytes[n - 1] : 0;
    setText("t-req", `${fmtRate(req)} /s`, "");
    setText("t-req-sub", `errors ${fmtRate(err)} /s`);
    setText("t-bytes", `${fmtBytes(bytes)}/s`, "");
    setText("t-bytes-sub", `generated by this worker: DRBG ${fmtBytes(e.drbg_bytes)} · raw ${fmtBytes(e.raw_bytes)}`);
  }

  function mark(name, points, last) {
    const el = $("chart-" + name);
    el.dataset.points = String(points);
    el.dataset.last = last === null || last === undefined ? "" : String(last);
  }

  function renderCharts(d) {
    const low = hist.t.map(() => d.pool.low_water);
    const high = hist.t.map(() => d.pool.high_water);
    setTimeData(charts.pool, [hist.t, hist.blocks, low, high]);
    const n = hist.t.length;
    mark("pool", n, n ? hist.blocks[n - 1] : null);
    mark("rates", n, n ? hist.req[n - 1] : null);
    $("chart-pool").setAttribute("aria-label", `Pool level over the last ${fmtDuration(n ? hist.t[n - 1] - hist.t[0] : 0)}: now ${fmtInt(n ? hist.blocks[n - 1] : d.pool.blocks)} blocks; low water ${d.pool.low_water}, high water ${d.pool.high_water}`);
    setTimeData(charts.rates, [hist.t, hist.req, hist.err, hist.bytes]);
    $("chart-rates").setAttribute("aria-label", `Requests ${fmtRate(n ? hist.req[n - 1] : 0)} per second, output ${fmtBytes(n ? hist.bytes[n - 1] : 0)} per second`);

    const h = d.health;
    const ones = h && h.samples_accepted ? h.ones_fraction : null;
    if (ones && ones.length) {
      const xs = ones.map((_, i) => i);
      const bias = ones.map((f) => (f === null ? null : f - 0.5));
      const worst = Math.max(...bias.map((b) => Math.abs(b || 0)));
      charts.bias.setLimit(Math.max(0.01, worst * 1.25));
      charts.bias.setData([xs, bias]);
      mark("bias", xs.length, worst);
      $("bias-note").textContent = `Fraction of ones per qubit minus ½, over ${fmtInt(h.samples_accepted)} accepted samples; largest |bias| ${worst.toFixed(4)}.`;
      $("chart-bias").setAttribute("aria-label", `Per-qubit bias of ${ones.length} qubits; largest absolute bias ${worst.toFixed(4)}`);
    } else {
      charts.bias.setData([[], []]);
      $("bias-note").textContent = "No harvest checked by this worker yet (another worker or node may lead the harvest).";
    }
    const last = h && h.last_min_entropy && h.last_min_entropy.length ? h.last_min_entropy : null;
    const a = d.assessment && d.assessment.state === "assessed" ? d.assessment : null;
    const width = last ? last.length : a ? a.streams.length : 0;
    if (width) {
      const xs = Array.from({ length: width }, (_, i) => i);
      const mcv = last ? last : xs.map(() => null);
      const assessed = a && a.streams.length === width ? a.streams : xs.map(() => null);
      charts.entropy.setData([xs, mcv, assessed]);
      mark("entropy", width, null);
    } else {
      charts.entropy.setData([[], [], []]);
    }
    let note = "Bars: the health monitor's most-common-value estimate on the last harvest (bits per bit).";
    if (a) {
      const iid = a.iid.filter(Boolean).length;
      note += ` Dots: the stored assessment (SP 800-90B) per stream; IID on ${iid} of ${a.iid.length} streams, whole samples ${a.joint_iid ? "IID" : "non-IID"}; credit ${fmtNum(a.credited_bits_per_sample)} bits per sample.`;
    } else if (d.assessment && d.assessment.state === "not_credited") {
      note += " This source earns no credit, so it has no assessment.";
    } else if (d.assessment) {
      note += ` Assessment ${d.assessment.state}${d.assessment.samples_collected !== undefined ? `: ${fmtInt(d.assessment.samples_collected)} of ${fmtInt(d.assessment.samples_needed)} samples` : ""}.`;
    }
    $("entropy-note").textContent = note;
  }

  function renderHealth(d) {
    const h = d.health;
    const st = d.source.state;
    const el = $("health-state");
    const failure = d.source.failure;
    el.className = "state " + (st === "ok" ? "ok" : st === "persistent" ? "bad" : st === "intermittent" ? "warn" : "");
    el.textContent = failure ? failure.message : { ok: "All tests passing.", intermittent: `Intermittent: ${h ? h.failed_in_row : "?"} failed harvest(s) in a row (persistent after ${h ? h.persistent_after : "?"}).`, startup: "The start-up test runs with this process's first harvest (the pool is above its low-water mark).", unknown: "This process runs no harvester." }[st] || st;
    const tbody = $("health-table").tBodies[0];
    const failures = h ? h.failures : {};
    const names = { startup: "Start-up", rct: "Repetition count (§4.4.1)", apt: "Adaptive proportion (§4.4.2)", bias: "Bias monitor", repeat: "Repeated harvest" };
    fillRows(tbody, Object.entries(failures).map(([test, count]) => [cell(names[test] || test), cell(fmtInt(count), "num" + (count ? " bad" : ""))]));
    const hv = d.harvester;
    facts($("health-facts"), [
      ["Harvests checked", h ? fmtInt(h.harvests_checked) : "–"],
      ["Harvests dropped", h ? fmtInt(h.harvests_dropped) : "–"],
      ["Source errors", hv ? fmtInt(hv.source_errors) : "–"],
      ["Last harvest", hv && hv.last_harvest_at ? fmtAgo(hv.last_harvest_at) : "–"],
      ["Harvest rate", hv && hv.rate ? `${fmtInt(hv.rate.raw_bits_per_second)} raw bits/s` : "–"],
      ["Last error", hv && hv.last_error ? hv.last_error : "none"],
      ["Backing off until", hv && hv.backoff_until ? fmtTime(hv.backoff_until) : "–"],
      ["Integrity failures", fmtInt(d.pool.integrity_failures)],
    ]);
  }

  function witnessBadge(w) {
    if (!w) return badge("none", "na");
    const cls = w.status === "passed" ? "ok" : w.status === "failed" ? "bad" : "na";
    return badge(`${w.kind} ${w.status}`, cls);
  }

  function renderHarvests(d) {
    const tbody = $("harvests").tBodies[0];
    if (!d.harvests.length) {
      const td = cell("No harvest in the pool.", "wrap");
      td.colSpan = 8;
      fillRows(tbody, [[td]]);
      return;
    }
    const credit = { none: ["none", "na"], assessed: ["assessed", "ok"], withheld: ["withheld", "bad"] };
    fillRows(tbody, d.harvests.map((h) => {
      const [ctext, ccls] = credit[h.credit] || [h.credit, "na"];
      const job = cell(short(h.job_id, 14), "hash");
      if (h.job_id) job.title = h.job_id;
      return [
        cell(fmtTime(h.harvested_at)),
        cell(h.source),
        cell(h.backend || "–"),
        job,
        cell(h.qubits ? `${fmtInt(h.qubits)} × ${fmtInt(h.shots)}` : "–", "num"),
        cell(fmtInt(h.blocks_left), "num"),
        cell(badge(ctext, ccls)),
        cell(witnessBadge(h.witness)),
      ];
    }));
  }

  function renderWitness(d) {
    const newest = d.harvests.find((h) => h.witness);
    const w = newest ? newest.witness : null;
    const cfg = d.witness || {};
    const items = [
      ["Required for credit", cfg.required ? "yes" : "no"],
      ["Share of shots", cfg.share !== undefined ? `${Math.round(cfg.share * 100)} %` : "–"],
      ["Confidence", cfg.confidence !== undefined ? String(cfg.confidence) : "–"],
    ];
    if (w) {
      items.push(
        ["Newest verdict", witnessBadge(w)],
        ["Value vs bound", `${fmtNum(w.value)} vs ${fmtNum(w.bound, 2)} (± ${fmtNum(w.stderr)})`],
        ["p (classical)", w.p_classical === null || w.p_classical === undefined ? "–" : Number(w.p_classical).toExponential(2)],
        ["Witness shots", fmtInt(w.shots)],
      );
    } else {
      items.push(["Newest verdict", d.source.quantum ? "no witness in the pool's harvests" : `none: the ${d.source.kind} source runs no witness`]);
    }
    if (d.harvester) items.push(["Harvests withheld", fmtInt(d.harvester.witness_withheld)]);
    facts($("witness-facts"), items);
  }

  function shortHash(value) {
    // a long hex value cut to 32 characters, whole in its tooltip; "–" when there is none
    const span = document.createElement("span");
    span.className = "hash";
    span.textContent = value ? value.slice(0, 32) + "…" : "–";
    if (value) span.title = value;
    return span;
  }

  function renderBeacon(d) {
    const b = d.beacon || {};
    const latest = b.latest;
    const out = shortHash(latest ? latest.output_value : null);
    facts($("beacon-facts"), [
      ["Status", b.error ? b.error : b.enabled ? `publishing every ${b.period_seconds} s` : "off (beacon_period = 0)", b.error ? "bad" : ""],
      ["Latest pulse", latest ? `chain ${latest.chain_index}, pulse ${fmtInt(latest.pulse_index)}` : "none yet"],
      ["Time stamp", latest ? latest.time_stamp : "–"],
      ["Output value", out],
      ["Status code", latest ? String(latest.status_code) : "–"],
    ]);
  }

  function renderLog(d) {
    const l = d.log || {};
    const head = l.head;
    const root = shortHash(head ? head.root_hash : null);
    facts($("log-facts"), [
      ["Signed tree head", l.error ? l.error : head ? `size ${fmtInt(head.tree_size)}` : "none yet", l.error ? "bad" : ""],
      ["Root hash", root],
      ["Signed at", head ? fmtTime(head.timestamp / 1000) : "–"],
      ["Key id", head ? short(head.key_id, 24) : "–"],
    ]);
  }

  function render(d) {
    lastData = d;
    appendHistory(d.history);
    const s = d.server;
    $("node").textContent = `${s.node} · v${s.version} · pid ${s.pid} · ${s.workers} worker${s.workers === 1 ? "" : "s"} · up ${fmtDuration(s.uptime_seconds)}`;
    const [text, cls] = overall(d);
    setOverall(text, cls);
    renderTiles(d);
    renderCharts(d);
    renderHealth(d);
    renderHarvests(d);
    renderWitness(d);
    renderBeacon(d);
    renderLog(d);
    $("updated").textContent = `Updated ${fmtClock(new Date())}.`;
  }

  // --- quality ----------------------------------------------------------------------

  function renderAssessment(item) {
    const box = document.createElement("div");
    box.className = "assessment";
    const h = document.createElement("h4");
    h.textContent = `Source ${item.source}`;
    box.appendChild(h);
    const a = item.assessment;
    if (!a) {
      box.appendChild(empty("No stored assessment."));
      return box;
    }
    const dl = document.createElement("dl");
    dl.className = "facts";
    facts(dl, [
      ["Backend", a.backend || "–"],
      ["Assessed", fmtTime(a.assessed_at)],
      ["Samples", `${fmtInt(a.samples)} × ${a.width} bits`],
      ["Submitter's estimate", `${fmtNum(a.h_submitter)} bits per bit`],
      ["Whole samples", `${fmtNum(a.joint)} bits per bit, ${a.joint_iid ? "IID" : "non-IID"}`],
      ["Credit", `${fmtNum(a.credited_bits_per_sample)} bits per sample`],
    ]);
    box.appendChild(dl);
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    const table = document.createElement("table");
    const cap = document.createElement("caption");
    cap.className = "visually-hidden";
    cap.textContent = `Per-stream min-entropy of the ${item.source} source`;
    const thead = document.createElement("thead");
    const hr = document.createElement("tr");
    for (const [t, c] of [["Stream", ""], ["Min-entropy (bits/bit)", "num"], ["IID", ""], ["Credit (bits/bit)", "num"]]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = t;
      if (c) th.className = c;
      hr.appendChild(th);
    }
    thead.appendChild(hr);
    const tbody = document.createElement("tbody");
    table.append(cap, thead, tbody);
    fillRows(tbody, a.streams.map((hStream, i) => [
      cell("q" + i), cell(fmtNum(hStream), "num"), cell(badge(a.iid[i] ? "IID" : "non-IID", a.iid[i] ? "ok" : "warn")), cell(fmtNum(a.credit[i]), "num"),
    ]));
    wrap.appendChild(table);
    box.appendChild(wrap);
    return box;
  }

  function renderQuality(q) {
    const a = q.assessment || {};
    let progress = `Configured source: ${q.source}. `;
    if (a.state === "not_credited") progress += "It earns no credit, so it is never assessed.";
    else if (a.state === "assessed") progress += "Assessed; its blocks are credited by this assessment.";
    else if (a.state) progress += `Assessment ${a.state}${a.samples_collected !== undefined ? `: ${fmtInt(a.samples_collected)} of ${fmtInt(a.samples_needed)} samples collected` : ""}.`;
    $("assess-progress").textContent = progress;
    $("assessments").replaceChildren(...q.assessments.map(renderAssessment));

    const b = q.battery;
    const note = $("battery-note");
    const summary = $("battery-summary");
    const tbody = $("battery").tBodies[0];
    const base = `One sequence of ${fmtInt(b.bytes * 8)} bits drawn from this worker's DRBG for the test only (never served), at α = ${b.alpha}.`;
    if (b.state === "off") {
      note.textContent = "The battery is off (dashboard_battery_seconds = 0).";
      summary.textContent = "";
      fillRows(tbody, []);
      return;
    }
    note.textContent = `${base} Rerun at most every ${fmtDuration(b.interval_seconds)}.${b.ran_at ? ` Last run ${fmtTime(b.ran_at)}, took ${b.seconds} s.` : ""}`;
    const running = b.state === "running";
    if (b.tests) {
      const expected = (b.p_values * b.alpha).toFixed(1);
      summary.className = "state " + (b.failed ? "warn" : "ok");
      summary.textContent = `${running ? "Running again; the last run: " : ""}${b.passed} passed, ${b.failed} failed, ${b.skipped} skipped; ${b.p_values} p-values (about ${expected} fall below α by chance on a good generator).`;
      fillRows(tbody, b.tests.map((t) => {
        const ps = t.p_values;
        const min = ps.length ? Math.min(...ps) : null;
        const result = t.skipped ? badge("skipped", "na") : t.passed ? badge("pass", "ok") : badge("fail", "bad");
        const r = cell(result);
        if (t.skipped) r.title = t.skipped;
        const pcell = cell(ps.length === 0 ? "–" : ps.length === 1 ? ps[0].toFixed(6) : pValueList(t, b.alpha / ps.length), "num");
        const name = cell(t.parameters ? `${t.name} (${t.parameters})` : t.name);
        return [name, cell(t.section), pcell, cell(min === null ? "–" : min.toFixed(6), "num"), r];
      }));
    } else {
      summary.className = "state " + (running || b.state === "idle" ? "" : "bad");
      summary.textContent = running ? "Running the battery…" : b.message || b.state;
      fillRows(tbody, []);
    }
  }

  // --- loops ------------------------------------------------------------------------

  async function refresh() {
    try {
      const url = "api/v2/dashboard" + (since !== null ? "?since=" + since : "");
      const { status, body } = await getJSON(url);
      markUp();
      if (status === 401 || status === 403 || (status === 429 && !authorized)) {
        needKey(status, body);
      } else if (status !== 200 || !body) {
        authorize();
        showProblem(body);
      } else {
        authorize();
        $("banner").hidden = true;
        render(body);
      }
    } catch (e) {
      markDown();
    }
  }

  async function refreshQuality() {
    if (!authorized) return;
    try {
      const { status, body } = await getJSON("api/v2/dashboard/quality");
      if (status === 200 && body) renderQuality(body);
    } catch (e) {
      /* the main loop shows the outage */
    }
  }

  function loop(fn, ms) {
    const tick = async () => {
      if (!paused) await fn();
      setTimeout(tick, ms);
    };
    tick();
  }

  // --- navigation and controls ------------------------------------------------------

  function showPage() {
    const quality = location.hash === "#quality";
    $("live").hidden = quality;
    $("quality").hidden = !quality;
    $("tab-live").toggleAttribute("aria-current", !quality);
    $("tab-quality").toggleAttribute("aria-current", quality);
    if (quality) { $("tab-quality").setAttribute("aria-current", "page"); refreshQuality(); }
    else $("tab-live").setAttribute("aria-current", "page");
  }

  function init() {
    setupCharts();
    window.addEventListener("hashchange", showPage);
    showPage();
    $("pause").addEventListener("click", () => {
      paused = !paused;
      $("pause").setAttribute("aria-pressed", String(paused));
      $("pause").textContent = paused ? "Resume updates" : "Pause updates";
      if (!paused) { refresh(); refreshQuality(); }
    });
    $("forget").addEventListener("click", () => {
      key = "";
      sessionStorage.removeItem(KEY_NAME);
      $("forget").hidden = true;
      authorized = false;
      refresh();
    });
    $("auth").addEventListener("submit", (ev) => {
      ev.preventDefault();
      key = $("key").value.trim();
      $("key").value = "";
      if (key) sessionStorage.setItem(KEY_NAME, key); else sessionStorage.removeItem(KEY_NAME);
      refresh().then(refreshQuality);
    });
    loop(refresh, POLL_MS);
    setTimeout(() => loop(refreshQuality, QUALITY_MS), 500);
  }

  init();
})();
