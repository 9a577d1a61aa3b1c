// dagd's pages, kept current: the server-sent events of /api/v1/stream move states in
// place (elements carry data-run, data-ti, data-task and data-state), a running try's
// log grows, and what cannot be updated in place is re-read from the server. Data is
// only ever set as text (textContent) or as an attribute value: never parsed as HTML.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const attr = (name, value) => `[${name}="${CSS.escape(String(value))}"]`;
  const enc = encodeURIComponent;
  const flash = (message) => window.dagd.flash(message);

  // -- live updates -------------------------------------------------------------------------
  const ORDER = ["running", "queued", "up_for_retry", "scheduled", "failed",
    "upstream_failed", "success", "skipped"];

  function summary(states) {
    return ORDER.find((s) => states.includes(s)) || "none";
  }

  function setState(el, state) {
    el.dataset.state = state;
    if (el.hasAttribute("data-state-text")) el.textContent = state;
    const title = el.getAttribute("title");
    if (title && title.includes(": ")) {
      el.setAttribute("title", `${title.slice(0, title.lastIndexOf(": "))}: ${state}`);
    }
    const sr = $(".sr", el);
    if (sr && el.classList.contains("cell")) sr.textContent = state;
  }

  // A mapped task's element keeps "index=state,..." in data-mapped and shows their summary.
  function setMapped(el, mapIndex, state) {
    const states = new Map();
    for (const part of (el.dataset.mapped || "").split(",")) {
      const at = part.indexOf("=");
      if (at > 0) states.set(part.slice(0, at), part.slice(at + 1));
    }
    states.set(String(mapIndex), state);
    el.dataset.mapped = Array.from(states, ([i, s]) => `${i}=${s}`).join(",");
    setState(el, summary(Array.from(states.values())));
    return states.size;
  }

  function onRun(d) {
    const found = $$(`[data-run]${attr("data-run", d.id)}:not(svg)`);
    for (const el of found) setState(el, d.state);
    if (d.state === "running") graphFollows(d.dag_id, d.id, true);
    const page = document.body.dataset.page;
    if (!found.length && page === "dags") scheduleRefresh(); // a new run: a new mark
    if (page === "dag" || page === "run" || page === "task") scheduleRefresh(); // durations
  }

  function graphNode(svg, taskId) {
    return $$("g.node", svg).find((g) => g.dataset.task === taskId) || null;
  }

  // The graph shows the newest run of its DAG. A run that starts has every task instance
  // made, scheduled (the stream carries their changes, not their creation): its nodes
  // show scheduled until their own event comes, as the grid's cells do.
  function graphFollows(dagId, runId, starting = false) {
    const svg = $("svg[data-graph]");
    if (!svg || svg.dataset.dag !== dagId) return null;
    const shown = Number(svg.dataset.run);
    if (runId < shown) return null;
    if (runId > shown) {
      svg.dataset.run = String(runId);
      for (const g of $$("g.node", svg)) {
        setState(g, "scheduled");
        if (g.hasAttribute("data-mapped")) g.dataset.mapped = "";
        const count = $("[data-count]", g);
        if (count) count.textContent = "[…]";
      }
      for (const a of $$("a[data-task-link]", svg)) {
        a.setAttribute("href", `/runs/${runId}/tasks/${enc(a.dataset.taskLink)}`);
      }
      const link = $("[data-graph-run-link]");
      if (link) {
        link.setAttribute("href", `/runs/${runId}`);
        link.textContent = `run ${runId}`;
        link.closest("[data-graph-run]").hidden = false;
      }
    } else if (starting) {
      for (const g of $$('g.node[data-state="none"]', svg)) setState(g, "scheduled");
    }
    return svg;
  }

  function onGraphTi(d) {
    const svg = graphFollows(d.dag_id, d.run_id);
    if (!svg) return;
    const node = graphNode(svg, d.task_id);
    if (!node) return;
    if (node.hasAttribute("data-mapped") && d.map_index >= 0) {
      const n = setMapped(node, d.map_index, d.state);
      const count = $("[data-count]", node);
      if (count) count.textContent = `[${n}]`;
    } else {
      setState(node, d.state);
    }
  }

  function onTi(d) {
    const key = `${d.run_id}:${d.task_id}`;
    const exact = d.map_index >= 0 ? `${key}:${d.map_index}` : key;
    let found = 0;
    for (const el of $$(attr("data-ti", exact))) {
      setState(el, d.state);
      found += 1;
    }
    if (d.map_index >= 0) {
      for (const el of $$(`${attr("data-ti", key)}[data-mapped]`)) {
        setMapped(el, d.map_index, d.state);
        found += 1;
      }
    }
    onGraphTi(d);
    const page = document.body.dataset.page;
    if (page === "dag" && !found) scheduleRefresh(); // a new run or instance: a new cell
    if (page === "run") scheduleRefresh(); // the Gantt grows
    const here = $("[data-ti-page]");
    if (page === "task" && here && (here.dataset.tiPage === exact ||
        (here.hasAttribute("data-mapped-page") && here.dataset.tiPage === key))) {
      scheduleRefresh();
    }
  }

  function onAttempt(d) {
    const here = $("[data-ti-id]");
    const page = document.body.dataset.page;
    if (page === "run") scheduleRefresh();
    if (page === "task" && here && Number(here.dataset.tiId) === d.ti_id) scheduleRefresh();
  }

  function onEvent() {
    if (document.body.dataset.page === "events") scheduleRefresh();
  }

  // -- the log's live tail ---------------------------------------------------------------
  const utf8 = new TextEncoder();

  function onLog(d) {
    const pre = $("#log");
    if (!pre || pre.dataset.attempt !== String(d.attempt_id)) return;
    const have = Number(pre.dataset.offset || "0");
    const size = utf8.encode(d.text).length;
    if (d.offset + size <= have) return; // already shown (the page had it)
    let text = d.text;
    if (d.offset < have) { // the page had its start
      text = new TextDecoder().decode(utf8.encode(d.text).slice(have - d.offset));
    } else if (d.offset > have) { // lines went by unseen: read them from the API
      fillLog(pre);
      return;
    }
    pre.append(document.createTextNode(text));
    pre.dataset.offset = String(d.offset + size);
    follow(pre);
  }

  function follow(pre) {
    const box = $("#follow");
    if (box && box.checked) pre.scrollTop = pre.scrollHeight;
  }

  async function fillLog(pre) {
    const here = $("[data-ti-page]");
    const actions = $(".actions[data-task]");
    if (!here || !actions) return;
    const url = `/api/v1/runs/${enc(actions.dataset.runId)}/tasks/${enc(actions.dataset.task)}` +
      `/logs?map_index=${enc(actions.dataset.mapIndex)}&offset=${enc(pre.dataset.offset)}` +
      `&attempt=${enc(pre.dataset.attempt)}`;
    const resp = await fetch(url, { credentials: "same-origin" });
    if (!resp.ok || resp.headers.get("X-Dagd-Attempt-Id") !== pre.dataset.attempt) return;
    pre.append(document.createTextNode(await resp.text()));
    pre.dataset.offset = resp.headers.get("X-Dagd-Log-Offset") || pre.dataset.offset;
    follow(pre);
  }

  // -- refreshing a page's live regions in place -----------------------------------------
  let refreshTimer = null;
  let refreshing = false;
  let loggedOut = false;

  function scheduleRefresh() {
    if (refreshTimer !== null || loggedOut) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh().catch((exc) => flash(`could not refresh the page: ${exc.message}`));
    }, 150);
  }

  // The session is gone: no more stream nor refresh, and a way back in.
  function showLoggedOut() {
    loggedOut = true;
    if (source) source.close();
    source = null;
    clearTimeout(reopenTimer);
    const live = $("#live");
    if (live) {
      live.dataset.live = "out";
      live.textContent = "logged out";
    }
    const el = $("#flash");
    const a = document.createElement("a");
    a.href = `/login?next=${enc(location.pathname + location.search)}`;
    a.textContent = "log in";
    el.replaceChildren(document.createTextNode("logged out: "), a);
    el.hidden = false;
  }

  // A block being used (an open trigger form, a message just shown, a field with focus)
  // stays as it is when its region is redrawn around it.
  function busy(el) {
    if (el.open || el.contains(document.activeElement)) return true;
    const result = $(".form-result", el);
    return Boolean(result && result.textContent.trim());
  }

  function swapRegion(old, fresh) {
    const active = document.activeElement;
    let selection = null;
    try {
      selection = [active.selectionStart, active.selectionEnd];
    } catch (_) {
      selection = null;
    }
    for (const kept of $$("[data-keep]", old)) {
      if (!busy(kept)) continue;
      const twin = $(attr("data-keep", kept.dataset.keep), fresh);
      if (twin) twin.replaceWith(kept);
    }
    old.replaceWith(fresh);
    if (active && active !== document.activeElement && fresh.contains(active)) {
      active.focus();
      if (selection && selection[0] !== null && selection[0] !== undefined) {
        try {
          active.setSelectionRange(selection[0], selection[1]);
        } catch (_) { /* not a text field */ }
      }
    }
  }

  // Re-read this page from the server and swap its [data-region] parts (and, on a task
  // page following the latest try, the log) for the new ones: a parsed copy of the
  // server's own escaped HTML, never HTML made here from data.
  async function refresh() {
    if (refreshing) {
      scheduleRefresh();
      return;
    }
    refreshing = true;
    try {
      const resp = await fetch(location.href, { credentials: "same-origin" });
      if (resp.status === 401 || new URL(resp.url).pathname === "/login") {
        showLoggedOut();
        return;
      }
      if (!resp.ok) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      if (doc.body.dataset.page !== document.body.dataset.page) return; // not this page
      for (const fresh of $$("[data-region]", doc)) {
        const old = $(attr("data-region", fresh.dataset.region));
        if (old) swapRegion(old, document.importNode(fresh, true));
      }
      const box = $("#log-box");
      const freshBox = $("#log-box", doc);
      const pre = $("#log");
      if (box && freshBox && pre && pre.dataset.pinned !== "yes" &&
          freshBox.dataset.attempt !== box.dataset.attempt) { // a new try: follow its log
        box.replaceWith(document.importNode(freshBox, true));
      }
      setClock(doc.body.dataset.clock);
      const stream = doc.body.dataset.stream || "";
      if (stream !== (document.body.dataset.stream || "")) {
        document.body.dataset.stream = stream;
        openStream();
      }
    } finally {
      refreshing = false;
    }
  }

  // -- durations that tick: one timer for the page -----------------------------------------
  let skew = 0; // the server's clock minus this browser's, in seconds

  function setClock(text) {
    const server = Number(text);
    if (text && Number.isFinite(server)) skew = server - Date.now() / 1000;
  }

  function spanText(seconds) {
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(1)}s`;
    const minutes = Math.floor(seconds / 60);
    const secs = Math.floor(seconds % 60);
    if (minutes < 60) return `${minutes}m ${String(secs).padStart(2, "0")}s`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours}h ${String(minutes % 60).padStart(2, "0")}m`;
    return `${Math.floor(hours / 24)}d ${hours % 24}h`;
  }

  function tick() {
    const now = Date.now() / 1000 + skew;
    for (const el of $$("[data-tick]")) {
      const start = Number(el.dataset.tick);
      if (Number.isFinite(start)) el.textContent = spanText(Math.max(0, now - start));
    }
  }

  // -- the stream ---------------------------------------------------------------------------
  let source = null;
  let reopenTimer = null;

  // The stream was refused (EventSource gives up on an error status): a 401 is a session
  // gone; anything else is tried again a little later.
  async function streamRefused() {
    let status = 0;
    try {
      status = (await fetch("/login/session", { credentials: "same-origin" })).status;
    } catch (_) {
      status = 0;
    }
    if (status === 401) {
      showLoggedOut();
      return;
    }
    clearTimeout(reopenTimer);
    reopenTimer = setTimeout(openStream, 5000);
  }

  function openStream() {
    const spec = document.body.dataset.stream || "";
    if (source) source.close();
    source = null;
    if (!spec || loggedOut || typeof EventSource === "undefined") return;
    const live = $("#live");
    const opened = new EventSource(`/api/v1/stream${spec === "all" ? "" : `?${spec}`}`);
    source = opened;
    opened.addEventListener("open", () => { live.dataset.live = "on"; });
    opened.addEventListener("error", () => {
      live.dataset.live = "off";
      if (opened.readyState === EventSource.CLOSED && source === opened) streamRefused();
    });
    const on = (name, fn) => opened.addEventListener(name, (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      fn(data);
    });
    on("run", onRun);
    on("ti", onTi);
    on("attempt", onAttempt);
    on("event", onEvent);
    on("log", onLog);
    on("reload", () => scheduleRefresh());
  }

  window.dagd = Object.assign(window.dagd || {}, { scheduleRefresh });

  window.addEventListener("pagehide", () => { if (source) source.close(); });
  document.addEventListener("DOMContentLoaded", () => {
    setClock(document.body.dataset.clock);
    if ($("[data-tick]")) tick();
    setInterval(tick, 1000);
    const pre = $("#log");
    if (pre) follow(pre);
    openStream();
  });
})();
