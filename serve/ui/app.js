// Kiln's dashboard: a page over the job service's public HTTP API and its
// event streams, with the same bearer tokens. Three views, by the URL's
// fragment: the jobs (#/jobs), one job (#/jobs/ID) and the submit form
// (#/submit/TASK). Nothing polls: lists and trees change as events arrive,
// and a dropped stream is taken up again after the last event number seen.

const LOG_KEEP = 200_000; // characters of a program's log the page keeps
const PAGE = 25;
const STATE_SYMBOL = {
  queued: "◷", pending: "◷", running: "▶", finished: "✓", succeeded: "✓",
  failed: "✗", interrupted: "■", unsatisfactory: "!",
};
// CCP4i2's severities of an error report.
const SEVERITY = { 0: "OK", 1: "Undefined", 2: "Warning", 3: "Undefined error", 4: "Error" };
const ENDED_STATE = {
  succeeded: "finished", failed: "failed", interrupted: "interrupted", unsatisfactory: "unsatisfactory",
};

// ---- small helpers -------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function seconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  s = Math.max(0, Math.round(s));
  const m = Math.floor(s / 60), hh = Math.floor(m / 60);
  if (hh) return `${hh} h ${String(m % 60).padStart(2, "0")} m`;
  if (m) return `${m} m ${String(s % 60).padStart(2, "0")} s`;
  return `${s} s`;
}

function when(t) {
  return t ? new Date(t * 1000).toLocaleString() : "";
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

function stateBadge(state, status) {
  const word = status && status !== "succeeded" ? status : state;
  return h("span", { class: `state state-${word}`, "data-state": word },
    h("span", { "aria-hidden": "true" }, `${STATE_SYMBOL[word] || "•"} `), word);
}

// A bar without a fraction is indeterminate, unless the job has not
// started (empty) or has succeeded (full).
function progressBar(progress, label, job = null) {
  let f = progress && typeof progress.fraction === "number" ? progress.fraction : null;
  const bar = h("progress", { max: "1", "aria-label": label });
  if (f === null && job && job.status === "succeeded") f = 1;
  if (f !== null) bar.value = f;
  else if (job && !job.started_at && !job.status) bar.value = 0;
  return h("span", { class: "progress" }, bar,
    h("span", { class: "pct" }, f === null ? "" : `${Math.round(f * 100)} %`));
}

function notice(text, bad = false) {
  return h("p", { class: bad ? "notice bad" : "notice", role: bad ? "alert" : "status" }, text);
}

function setConnection(text) {
  document.getElementById("connection").textContent = text;
}

// ---- the API -------------------------------------------------------------

const auth = { token: sessionStorage.getItem("kiln-token") || "" };

function headers(extra = {}) {
  const out = { ...extra };
  if (auth.token) out.Authorization = `Bearer ${auth.token}`;
  return out;
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function problemOf(r) {
  try {
    return await r.json();
  } catch {
    return { detail: `${r.status} ${r.statusText}` };
  }
}

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: headers(opts.headers || {}) });
  if (!r.ok) throw new ApiError(r.status, await problemOf(r));
  return (r.headers.get("content-type") || "").includes("json") ? r.json() : r;
}

function filesUrl(jobId, file) {
  return `/jobs/${encodeURIComponent(jobId)}/files/${file.split("/").map(encodeURIComponent).join("/")}`;
}

// A download through fetch, so that it carries the token.
async function download(jobId, file, status) {
  const r = await fetch(filesUrl(jobId, file), { headers: headers() });
  if (!r.ok) {
    status.replaceChildren(notice(`Cannot download ${file}: ${(await problemOf(r)).detail}`, true));
    return;
  }
  const url = URL.createObjectURL(await r.blob());
  const a = h("a", { href: url, download: file.split("/").pop() });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// Follow a Server-Sent Events stream read with fetch (an EventSource
// cannot send a bearer token). `onEvent(event, number)` returns "end" when
// the stream is done; otherwise a stream that closes or fails is opened
// again after the last number seen, so that nothing is missed or repeated.
function follow(url, { after = 0, onEvent, signal }) {
  let last = after;
  (async () => {
    let delay = 500;
    while (!signal.aborted) {
      let ended = false;
      try {
        const r = await fetch(url, {
          headers: headers({ "Last-Event-ID": String(last), Accept: "text/event-stream" }),
          signal,
        });
        if (r.status >= 400 && r.status < 500) {
          // Asking again would get the same answer.
          setConnection(`events refused: ${(await problemOf(r)).detail}`);
          return;
        }
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        setConnection("live");
        delay = 500;
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let id = null, data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("id:")) id = line.slice(3).trim();
              else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
            }
            if (id === null) continue; // a keep-alive
            const n = Number(id);
            if (!(n > last)) continue;
            last = n;
            let event;
            try {
              event = JSON.parse(data);
            } catch {
              continue;
            }
            if (onEvent(event, n) === "end") ended = true;
          }
        }
      } catch {
        if (signal.aborted) return;
      }
      if (ended || signal.aborted) return;
      setConnection("reconnecting…");
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
    }
  })();
}

// ---- charts --------------------------------------------------------------

// A line through `points` ([x, y] pairs), with its numbers also as a table.
function chart({ title, xLabel, yLabel, points, yMin, yMax }) {
  const W = 560, H = 260, L = 56, R = 16, T = 28, B = 44;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = yMin ?? Math.min(...ys), y1 = yMax ?? Math.max(...ys);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title));
  svg.append(s("text", { x: L, y: 16 }, title));
  svg.append(s("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.append(s("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (let k = 0; k <= 4; k++) {
    const xv = x0 + ((x1 - x0) * k) / 4, yv = y0 + ((y1 - y0) * k) / 4;
    svg.append(s("text", { x: sx(xv), y: H - B + 16, "text-anchor": "middle" }, fmt(xv)));
    svg.append(s("text", { x: L - 6, y: sy(yv) + 4, "text-anchor": "end" }, fmt(yv)));
  }
  svg.append(s("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, xLabel));
  svg.append(s("text", { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`, "text-anchor": "middle" }, yLabel));
  const sorted = [...points].sort((a, b) => a[0] - b[0]);
  svg.append(s("polyline", { class: "series", points: sorted.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" ") }));
  for (const p of sorted) svg.append(s("circle", { class: "dot", cx: sx(p[0]), cy: sy(p[1]), r: 3 }));
  const table = h("table", {},
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, xLabel), h("th", { scope: "col" }, yLabel))),
    h("tbody", {}, sorted.map((p) => h("tr", {}, h("td", {}, fmt(p[0])), h("td", {}, fmt(p[1]))))));
  return h("figure", { class: "plot" }, svg,
    h("details", { class: "data" }, h("summary", {}, `${title}: the numbers`), table));
}

// ---- sign in -------------------------------------------------------------

function signIn(main, why) {
  main.replaceChildren();
  const input = h("input", { type: "password", id: "token", autocomplete: "off", required: true });
  main.append(
    h("h1", {}, "Sign in"),
    notice(why || "This service needs a bearer token.", true),
    h("form", {
      onsubmit: (e) => {
        e.preventDefault();
        auth.token = input.value.trim();
        sessionStorage.setItem("kiln-token", auth.token);
        route();
      },
    },
    h("div", { class: "field" }, h("label", { for: "token" }, "Token"), input),
    h("button", { class: "primary" }, "Use this token")));
  input.focus();
}

// ---- the jobs ------------------------------------------------------------

async function jobsView(main, params, signal) {
  const state = params.get("state") || "", task = params.get("task") || "", cursor = params.get("cursor") || "";
  const q = new URLSearchParams({ limit: String(PAGE) });
  if (state) q.set("state", state);
  if (task) q.set("task", task);
  if (cursor) q.set("cursor", cursor);
  const [list, tasks] = await Promise.all([api(`/jobs?${q}`), api("/tasks").catch(() => [])]);
  if (signal.aborted) return;

  const stateSelect = h("select", { id: "filter-state", name: "state" },
    ["", "queued", "running", "finished", "failed", "interrupted", "unsatisfactory"].map((s) =>
      h("option", { value: s, selected: s === state }, s || "any")));
  const taskSelect = h("select", { id: "filter-task", name: "task" },
    h("option", { value: "" }, "any"),
    tasks.map((t) => h("option", { value: t.name, selected: t.name === task }, t.name)));
  const filters = h("form", {
    class: "filters", role: "search",
    onsubmit: (e) => {
      e.preventDefault();
      const f = new URLSearchParams();
      if (stateSelect.value) f.set("state", stateSelect.value);
      if (taskSelect.value) f.set("task", taskSelect.value);
      location.hash = `#/jobs?${f}`;
    },
  },
  h("label", { for: "filter-state" }, "State", stateSelect),
  h("label", { for: "filter-task" }, "Task", taskSelect),
  h("button", {}, "Show"));

  const body = h("tbody", { id: "jobs-body" });
  const rows = new Map();
  const row = (item) => {
    const ended = item.ended_at ?? null;
    const elapsed = item.started_at ? (ended ?? Date.now() / 1000) - item.started_at : null;
    return h("tr", { "data-job-id": item.id },
      h("td", {}, h("a", { href: `#/jobs/${item.id}` }, item.id)),
      h("td", {}, item.task),
      h("td", {}, stateBadge(item.state, item.status)),
      h("td", { class: "elapsed" }, seconds(elapsed)),
      h("td", {}, progressBar(item.progress, `progress of job ${item.id}`, item),
        item.progress ? h("span", { class: "meta" }, ` ${item.progress.phase}`) : null),
      h("td", { class: "wide meta" }, when(item.submitted_at)));
  };
  const render = (items) => {
    rows.clear();
    body.replaceChildren(...items.map((item) => {
      const tr = row(item);
      rows.set(item.id, { item, tr });
      return tr;
    }));
    if (!items.length) body.append(h("tr", {}, h("td", { colspan: "6" }, "No jobs.")));
  };
  render(list.jobs);

  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const base = new URLSearchParams();
  if (state) base.set("state", state);
  if (task) base.set("task", task);
  if (cursor) pager.append(h("a", { href: `#/jobs?${base}` }, "Newest"));
  if (list.next_cursor) {
    const older = new URLSearchParams(base);
    older.set("cursor", list.next_cursor);
    pager.append(h("a", { href: `#/jobs?${older}` }, "Older"));
  }

  main.append(
    h("h1", {}, "Jobs"),
    filters,
    h("div", { class: "table-wrap" }, h("table", { "aria-label": "Jobs, newest first" },
      h("thead", {}, h("tr", {},
        ["Job", "Task", "State", "Elapsed", "Progress"].map((c) => h("th", { scope: "col" }, c)),
        h("th", { scope: "col", class: "wide" }, "Submitted"))),
      body)),
    pager);

  // Elapsed times move on; the server is not asked.
  const tick = setInterval(() => {
    for (const { item, tr } of rows.values()) {
      if (item.started_at && !item.ended_at) {
        tr.querySelector(".elapsed").textContent = seconds(Date.now() / 1000 - item.started_at);
      }
    }
  }, 1000);
  signal.addEventListener("abort", () => clearInterval(tick));

  // A job not on the page yet: the first page is read again, once for a
  // burst of new jobs.
  let reload = null;
  const reloadSoon = () => {
    if (reload) return;
    reload = setTimeout(async () => {
      reload = null;
      try {
        const fresh = await api(`/jobs?${q}`);
        if (!signal.aborted) render(fresh.jobs);
      } catch { /* the next event tries again */ }
    }, 300);
  };
  follow("/events", {
    after: list.last_event,
    signal,
    onEvent: (ev) => {
      if (ev.job_id.includes(".")) return;
      const known = rows.get(ev.job_id);
      if (!known) {
        if (!cursor && (!task || ev.task === task)) reloadSoon();
        return;
      }
      const item = known.item;
      if (ev.event === "state") {
        item.state = ev.state;
        if (ev.state === "running" && !item.started_at) item.started_at = ev.time;
      } else if (ev.event === "progress") {
        item.progress = { fraction: ev.fraction, phase: ev.phase, message: ev.message };
      } else if (ev.event === "finished") {
        item.status = ev.status;
        item.state = ENDED_STATE[ev.status] || ev.status;
        item.reason = ev.reason;
        item.ended_at = ev.time;
      } else {
        return;
      }
      const tr = row(item);
      known.tr.replaceWith(tr);
      known.tr = tr;
    },
  });
}

// ---- one job -------------------------------------------------------------

async function jobView(main, id, signal) {
  let view = await api(`/jobs/${encodeURIComponent(id)}`);
  if (signal.aborted) return;
  const top = id.split(".")[0];
  const nodes = new Map();
  const index = (v) => { nodes.set(v.id, v); v.sub_jobs.forEach(index); };
  index(view);

  const title = h("h1", {});
  const summary = h("div", { id: "job-summary" });
  const actions = h("div", { class: "actions" });
  const status = h("div", { id: "job-status" });
  const tree = h("ul", { class: "tree", id: "tree", "aria-label": "Job and sub-jobs" });
  const plots = h("div", { id: "plots" });
  const outputs = h("div", { id: "outputs" });
  const diagnostics = h("div", { id: "diagnostics" });
  const files = h("div", { id: "files" });
  const log = logPanel(() => [...nodes.keys()], signal);
  main.append(title, summary, actions, status,
    h("div", { class: "job-grid" },
      h("section", { "aria-labelledby": "tree-title" }, h("h2", { id: "tree-title" }, "Jobs"), tree),
      h("section", { "aria-labelledby": "plots-title" }, h("h2", { id: "plots-title" }, "Plots"), plots)),
    h("h2", {}, "Outputs"), outputs,
    diagnostics,
    h("h2", {}, "Files"), files,
    h("h2", {}, "Program log"), log.panel);

  const stop = h("button", {
    class: "danger", id: "stop",
    onclick: async () => {
      if (!(await confirmDialog(`Stop job ${top} and all its sub-jobs? Its programs are killed.`, "Stop job"))) return;
      try {
        await api(`/jobs/${top}/stop`, { method: "POST" });
        status.replaceChildren(notice(`Stop requested for job ${top}.`));
      } catch (e) {
        status.replaceChildren(notice(`The stop was refused: ${e.message}`, true));
      }
    },
  }, "Stop job…");
  actions.append(stop);

  const nodeEl = (v) => {
    const p = v.progress;
    return h("li", { "data-job-id": v.id },
      h("div", { class: "node" },
        h("a", { class: "id", href: `#/jobs/${v.id}` }, v.id),
        h("span", { class: "task" }, v.task),
        stateBadge(v.state, v.status),
        progressBar(p, `progress of job ${v.id}`, v),
        p ? h("span", { class: "phase" }, p.phase) : null,
        h("span", { class: "msg" }, v.reason || (p ? p.message : ""))),
      v.sub_jobs.length ? h("ul", {}, v.sub_jobs.map(nodeEl)) : null);
  };
  const renderOutputs = () => {
    const rows = [];
    for (const v of nodes.values()) {
      for (const [item, o] of Object.entries(v.outputs || {})) {
        rows.push(h("tr", {},
          h("td", {}, v.id), h("td", {}, item), h("td", {}, o.file), h("td", { class: "wide" }, bytes(o.size)),
          h("td", {}, h("button", {
            "data-output": `${v.id}:${item}`,
            "aria-label": `Download ${item} of job ${v.id}`,
            onclick: () => download(v.id, o.file, status),
          }, "Download"))));
      }
    }
    outputs.replaceChildren(rows.length
      ? h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {},
        ["Job", "Item", "File"].map((c) => h("th", { scope: "col" }, c)),
        h("th", { scope: "col", class: "wide" }, "Size"), h("th", {}, ""))), h("tbody", {}, rows)))
      : h("p", { class: "meta" }, "No outputs yet."));
  };
  const render = () => {
    title.replaceChildren(`Job ${view.id}: ${view.task}`);
    const elapsed = view.started_at ? (view.ended_at ?? Date.now() / 1000) - view.started_at : null;
    summary.replaceChildren(h("p", {}, stateBadge(view.state, view.status),
      h("span", { class: "meta" }, `  submitted ${when(view.submitted_at)}`,
        elapsed !== null ? `, ${view.ended_at ? "ran" : "running for"} ${seconds(elapsed)}` : ""),
      view.stop_requested ? h("span", { class: "meta" }, " (stop requested)") : null),
    ...(view.reason ? [h("p", { class: view.status === "succeeded" ? "" : "error" }, view.reason)] : []));
    stop.hidden = id !== top || !!view.status;
    tree.replaceChildren(nodeEl(view));
    renderOutputs();
    log.fill();
  };
  render();

  const refreshFiles = async () => {
    try {
      const list = await api(`/jobs/${encodeURIComponent(id)}/files`);
      files.replaceChildren(list.length
        ? h("ul", {}, list.slice(0, 500).map((f) => h("li", {},
          h("button", { class: "link", onclick: () => download(id, f.path, status) }, f.path),
          h("span", { class: "meta" }, ` ${bytes(f.size)}`))))
        : h("p", { class: "meta" }, "No files."));
    } catch (e) {
      files.replaceChildren(notice(e.message, true));
    }
  };
  refreshFiles();
  const showDiagnostics = async () => {
    const failed = [...nodes.values()].filter((v) => v.status && v.status !== "succeeded").slice(0, 20);
    const found = [];
    const seen = new Set();
    for (const v of failed) {
      try {
        const r = await api(filesUrl(v.id, "diagnostic.xml"));
        const xml = new DOMParser().parseFromString(await r.text(), "application/xml");
        for (const e of xml.querySelectorAll("errorReport")) {
          const f = (n) => e.querySelector(n)?.textContent?.trim() || "";
          // A pipeline's file repeats its steps' reports; each is shown once.
          const key = `${f("jobId")}|${f("code")}|${f("description")}`;
          if (seen.has(key)) continue;
          seen.add(key);
          const severity = SEVERITY[f("severity")] || `severity ${f("severity")}`;
          found.push(h("li", {},
            h("strong", {}, `${severity} in ${f("className") || "job"}${f("jobId") ? ` (job ${f("jobId")})` : ""}, code ${f("code")}: `),
            f("description")));
        }
      } catch { /* no diagnostic.xml, or not readable: the reason above says why */ }
    }
    diagnostics.replaceChildren(...(found.length
      ? [h("h2", {}, "Errors (diagnostic.xml)"), h("ul", { class: "diagnostic" }, found)] : []));
  };
  showDiagnostics();

  // Plots: the job's progress over time, and each custom signal whose
  // payloads carry numbers.
  const progressPoints = [];
  const signals = new Map();
  const drawPlots = () => {
    const figs = [];
    if (progressPoints.length) {
      figs.push(chart({
        title: `Progress of job ${id}`, xLabel: "seconds since its first report", yLabel: "% done",
        points: progressPoints.map(([t, f]) => [t - progressPoints[0][0], f * 100]), yMin: 0, yMax: 100,
      }));
    }
    // A signal's payload may name the number to plot the others against
    // ("x": "weight"); otherwise each is plotted against its report.
    for (const [name, payloads] of signals) {
      if (payloads.length < 2) continue;
      const numeric = Object.keys(payloads[0]).filter((k) => payloads.every((p) => typeof p[k] === "number"));
      const x = numeric.includes(payloads[0].x) ? payloads[0].x : null;
      for (const y of numeric.filter((k) => k !== x)) {
        figs.push(chart({
          title: x ? `Signal “${name}”: ${y} against ${x}` : `Signal “${name}”: ${y}`,
          xLabel: x || "report", yLabel: y,
          points: payloads.map((p, i) => [x ? p[x] : i + 1, p[y]]),
        }));
      }
    }
    plots.replaceChildren(...(figs.length ? figs : [h("p", { class: "meta" }, "Nothing to plot yet.")]));
  };
  drawPlots();

  let refresh = null;
  const refreshSoon = (then) => {
    clearTimeout(refresh);
    refresh = setTimeout(async () => {
      try {
        const fresh = await api(`/jobs/${encodeURIComponent(id)}`);
        if (signal.aborted) return;
        view = fresh;
        nodes.clear();
        index(view);
        render();
        if (then) then();
      } catch { /* the next event tries again */ }
    }, 250);
  };
  const within = (jobId) => jobId === id || jobId.startsWith(`${id}.`);
  follow(`/jobs/${top}/events`, {
    signal,
    onEvent: (ev) => {
      if (!within(ev.job_id)) return ev.event === "finished" && ev.job_id === top ? "end" : undefined;
      if (ev.event === "progress" && ev.job_id === id && typeof ev.fraction === "number") {
        progressPoints.push([ev.time, ev.fraction]);
        drawPlots();
      } else if (ev.event === "signal") {
        let payload = ev.payload;
        if (typeof payload === "string") { try { payload = JSON.parse(payload); } catch { payload = null; } }
        if (payload && typeof payload === "object" && !Array.isArray(payload)) {
          if (!signals.has(ev.name)) signals.set(ev.name, []);
          signals.get(ev.name).push(payload);
          drawPlots();
        }
      }
      const v = nodes.get(ev.job_id);
      if (!v) {
        refreshSoon();
      } else if (!v.status) {
        // An ended job never changes again; replayed events of its run
        // are not applied over its end.
        if (ev.event === "state") v.state = ev.state;
        if (ev.event === "progress") v.progress = { fraction: ev.fraction, phase: ev.phase, message: ev.message };
        if (ev.event === "finished") {
          v.status = ev.status;
          v.state = ENDED_STATE[ev.status] || ev.status;
          v.reason = ev.reason;
          v.ended_at = ev.time;
        }
        if (["state", "progress", "finished"].includes(ev.event)) {
          const li = tree.querySelector(`li[data-job-id="${CSS.escape(v.id)}"]`);
          if (li) li.replaceWith(nodeEl(v));
          if (v === view) render();
        }
      }
      if (ev.event === "finished") {
        // Outputs and records are complete once a job has ended.
        refreshSoon(() => { refreshFiles(); showDiagnostics(); });
        if (ev.job_id === id) return "end";
      }
      return undefined;
    },
  });
}

// A program's stdout or stderr, followed while its job runs; the page keeps
// only the last LOG_KEEP characters.
function logPanel(jobIds, signal) {
  const jobSelect = h("select", { id: "log-job" });
  const stream = h("select", { id: "log-stream" }, h("option", { value: "stdout" }, "stdout"), h("option", { value: "stderr" }, "stderr"));
  const process = h("input", { id: "log-process", type: "number", min: "1", placeholder: "last", size: "5" });
  const out = h("pre", { class: "log", id: "log", tabindex: "0", "aria-label": "Program log" });
  const note = h("p", { class: "meta", id: "log-note", role: "status" });
  let reading = null;
  const start = async () => {
    if (reading) reading.abort();
    reading = new AbortController();
    signal.addEventListener("abort", () => reading.abort());
    const q = new URLSearchParams({ stream: stream.value, follow: "true" });
    if (process.value) q.set("process", process.value);
    out.textContent = "";
    note.textContent = "following…";
    let text = "", dropped = false;
    try {
      const r = await fetch(`/jobs/${encodeURIComponent(jobSelect.value)}/log?${q}`, { headers: headers(), signal: reading.signal });
      if (!r.ok) { note.textContent = (await problemOf(r)).detail; return; }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        if (text.length > LOG_KEEP) { text = text.slice(text.length - LOG_KEEP); dropped = true; }
        const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.textContent = text;
        if (atEnd) out.scrollTop = out.scrollHeight;
        if (dropped) note.textContent = `following… (only the last ${LOG_KEEP / 1000} k characters are kept)`;
      }
      note.textContent = dropped ? `ended (only the last ${LOG_KEEP / 1000} k characters are kept)` : "ended";
    } catch (e) {
      if (!reading.signal.aborted) note.textContent = `the log stopped: ${e.message}`;
    }
  };
  const fill = () => {
    const ids = jobIds();
    if (ids.join(" ") === [...jobSelect.options].map((o) => o.value).join(" ")) return;
    const keep = jobSelect.value;
    jobSelect.replaceChildren(...ids.map((j) => h("option", { value: j, selected: j === keep }, j)));
  };
  jobSelect.addEventListener("focus", fill);
  fill();
  const panel = h("div", {},
    h("div", { class: "log-controls" },
      h("label", { for: "log-job" }, "Job "), jobSelect,
      h("label", { for: "log-stream" }, "Stream "), stream,
      h("label", { for: "log-process" }, "Program number "), process,
      h("button", { id: "log-follow", onclick: start }, "Show log")),
    note, out);
  return { panel, fill };
}

function confirmDialog(text, ok) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = ok;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// ---- submit --------------------------------------------------------------

const SECTION_TITLE = { inputData: "Inputs", controlParameters: "Parameters" };
const HIDDEN_SECTIONS = new Set(["outputData", "guiAdmin"]);
const fieldId = (path) => `f-${path.replace(/[^A-Za-z0-9_-]/g, "_")}`;

function fieldEl(f) {
  const id = fieldId(f.path);
  const name = f.path.split(".").pop();
  const label = h("label", { for: id }, f.label || name, f.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null);
  const hints = [];
  if (f.tooltip) hints.push(f.tooltip);
  if (f.kind === "int" || f.kind === "float") {
    if (f.min !== null && f.max !== null) hints.push(`from ${f.min} to ${f.max}`);
    else if (f.min !== null) hints.push(`at least ${f.min}`);
    else if (f.max !== null) hints.push(`at most ${f.max}`);
  }
  if (f.required) hints.push("required");
  const hint = h("span", { class: "hint", id: `${id}-hint` }, hints.join("; "));
  const error = h("span", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true });
  const described = `${id}-hint ${id}-error`;
  const common = { id, name: f.path, "aria-describedby": described, title: f.tooltip || null, "data-path": f.path };
  let control, extra = null, wrap = "field";
  switch (f.kind) {
    case "file": {
      control = h("input", { ...common, type: "file", accept: f.file_extensions.length ? f.file_extensions.map((e) => `.${e}`).join(",") : null });
      extra = h("input", { id: `${id}-path`, type: "text", placeholder: "or a path on the server", "aria-label": `${f.label || name}: a path on the server, inside the directories your grants allow`, value: f.default || "" });
      break;
    }
    case "int":
    case "float":
      control = h("input", { ...common, type: "number", inputmode: f.kind === "int" ? "numeric" : "decimal", step: f.kind === "int" ? "1" : "any", min: f.min ?? null, max: f.max ?? null, value: f.default ?? "" });
      break;
    case "bool":
      control = h("input", { ...common, type: "checkbox", checked: /^(true|1|yes|on)$/i.test(f.default || "") });
      wrap = "field inline";
      break;
    case "list":
      control = h("input", { ...common, type: "text", disabled: true, value: "lists cannot be set from this form" });
      break;
    default:
      if (f.only_choices && f.choices.length) {
        control = h("select", common,
          f.required ? null : h("option", { value: "" }, "(none)"),
          f.choices.map((c) => h("option", { value: c, selected: c === f.default }, c)));
      } else {
        control = h("input", { ...common, type: "text", value: f.default ?? "", list: f.choices.length ? `${id}-choices` : null, maxlength: f.max_length ?? null });
        if (f.choices.length) extra = h("datalist", { id: `${id}-choices` }, f.choices.map((c) => h("option", { value: c })));
      }
  }
  const el = wrap === "field inline"
    ? h("div", { class: wrap }, control, label, hint, error)
    : h("div", { class: wrap }, label, control, extra, hint, error);
  return { el, control, extra, error, field: f };
}

async function submitView(main, name, signal) {
  const tasks = await api("/tasks");
  if (signal.aborted) return;
  const picker = h("select", { id: "task", onchange: () => { location.hash = `#/submit/${picker.value}`; } },
    h("option", { value: "" }, "choose a task"),
    tasks.map((t) => h("option", { value: t.name, selected: t.name === name }, `${t.name}: ${t.title}`)));
  main.append(h("h1", {}, name ? `Submit ${name}` : "Submit a job"),
    h("div", { class: "field" }, h("label", { for: "task" }, "Task"), picker));
  if (!name) return;
  const detail = await api(`/tasks/${encodeURIComponent(name)}`);
  if (signal.aborted) return;

  const controls = [];
  const form = h("form", { class: "task", novalidate: true, id: "submit-form" });
  const status = h("div", { id: "submit-status" });
  let fieldset = null, section = null, group = null, groupOf = null;
  for (const f of detail.form) {
    if (HIDDEN_SECTIONS.has(f.section)) continue;
    if (f.section !== section) {
      section = f.section;
      fieldset = h("fieldset", {}, h("legend", {}, SECTION_TITLE[section] || section));
      form.append(fieldset);
      group = null;
    }
    const c = fieldEl(f);
    controls.push(c);
    if (f.part_of) {
      if (groupOf !== f.part_of || !group) {
        groupOf = f.part_of;
        group = h("div", { class: "parts" });
        fieldset.append(h("fieldset", {}, h("legend", {}, f.part_of_label || f.part_of), group));
      }
      group.append(c.el);
    } else {
      group = null;
      groupOf = null;
      fieldset.append(c.el);
    }
  }
  const priority = h("input", { id: "priority", type: "number", step: "1", value: "0" });
  form.append(
    h("div", { class: "field" }, h("label", { for: "priority" }, "Priority"), priority,
      h("span", { class: "hint" }, "higher runs first among queued jobs")),
    h("button", { class: "primary", id: "submit" }, "Submit job"));
  main.append(h("p", { class: "meta" }, detail.title), status, form);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.replaceChildren();
    for (const c of controls) {
      c.error.hidden = true;
      c.error.textContent = "";
      c.control.removeAttribute("aria-invalid");
    }
    const params = {};
    const uploads = [];
    for (const { control, extra, field } of controls) {
      if (control.disabled) continue;
      if (field.kind === "file") {
        if (control.files.length) uploads.push([field.path, control.files[0]]);
        else if (extra.value.trim() && extra.value.trim() !== (field.default || "")) params[field.path] = extra.value.trim();
      } else if (field.kind === "bool") {
        const was = /^(true|1|yes|on)$/i.test(field.default || "");
        if (control.checked !== was) params[field.path] = control.checked ? "True" : "False";
      } else if (control.value !== (field.default ?? "") && control.value !== "") {
        params[field.path] = control.value;
      } else if (control.value === "" && field.default && control.value !== field.default) {
        params[field.path] = "";
      }
    }
    const request = { task: name, params };
    if (priority.value && priority.value !== "0") request.priority = Number(priority.value);
    const body = new FormData();
    body.append("request", JSON.stringify(request));
    for (const [path, file] of uploads) body.append(path, file, file.name);
    const button = document.getElementById("submit");
    button.disabled = true;
    try {
      const r = await fetch("/jobs", { method: "POST", body, headers: headers() });
      if (r.ok) {
        const done = await r.json();
        location.hash = `#/jobs/${done.job_id}`;
        return;
      }
      const problem = await problemOf(r);
      const loose = [];
      let first = null;
      for (const err of problem.errors || []) {
        const c = controls.find((c) => c.field.path === err.path)
          || controls.find((c) => c.field.path.split(".").pop() === err.path.split(".").pop());
        if (!c) { loose.push(`${err.path}: ${err.message}`); continue; }
        c.error.textContent = `${err.message} (rule ${err.rule}, CCP4i2 code ${err.code})`;
        c.error.hidden = false;
        c.control.setAttribute("aria-invalid", "true");
        first = first || c.control;
      }
      status.replaceChildren(notice(problem.errors && !loose.length
        ? "Some values are not valid; see the marked fields."
        : `${problem.detail}${loose.length ? ` ${loose.join("; ")}` : ""}`, true));
      (first || status).focus?.();
    } catch (err) {
      status.replaceChildren(notice(`The job could not be submitted: ${err.message}`, true));
    } finally {
      button.disabled = false;
    }
  });
}

// ---- routing -------------------------------------------------------------

let current = null;

async function route() {
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  const [path, query] = (location.hash || "#/jobs").slice(1).split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const main = document.getElementById("main");
  main.replaceChildren();
  setConnection("");
  try {
    if (parts[0] === "jobs" && parts[1]) await jobView(main, parts[1], signal);
    else if (parts[0] === "submit") await submitView(main, parts[1], signal);
    else await jobsView(main, new URLSearchParams(query || ""), signal);
  } catch (e) {
    if (signal.aborted) return;
    if (e instanceof ApiError && e.status === 401) signIn(main, e.message);
    else if (e instanceof ApiError && e.status === 403) main.replaceChildren(notice(`Not allowed: ${e.message}`, true));
    else main.replaceChildren(notice(e.message, true), h("p", {}, h("button", { onclick: route }, "Try again")));
  }
}

window.addEventListener("hashchange", () => {
  route().then(() => document.getElementById("main").focus({ preventScroll: true }));
});
route();
