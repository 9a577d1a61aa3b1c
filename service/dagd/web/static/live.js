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
    const page = document.body.dataset.page;
    if (!found.length && page === "dags") scheduleRefresh(); // a new run: a new mark
    if (page === "dag" || page === "run" || page === "task") scheduleRefresh(); // durations
  }

  function graphNode(svg, taskId) {
    return $$("g.node", svg).find((g) => g.dataset.task === taskId) || null;
  }

  function onGraphTi(d) {
    const svg = $("svg[data-graph]");
    if (!svg || svg.dataset.dag !== d.dag_id) return;
    const shown = Number(svg.dataset.run);
    if (d.run_id < shown) return;
    if (d.run_id > shown) { // a newer run: the graph follows it
      svg.dataset.run = String(d.run_id);
      for (const g of $$("g.node", svg)) {
        g.dataset.state = "none";
        if (g.hasAttribute("data-mapped")) g.dataset.mapped = "";
        const count = $("[data-count]", g);
        if (count) count.textContent = "[…]";
      }
      for (const a of $$("a[data-task-link]", svg)) {
        a.setAttribute("href", `/runs/${d.run_id}/tasks/${enc(a.dataset.taskLink)}`);
      }
      const link = $("[data-graph-run-link]");
      if (link) {
        link.setAttribute("href", `/runs/${d.run_id}`);
        link.textContent = `run ${d.run_id}`;
        link.closest("[data-graph-run]").hidden = false;
      }
    }
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
    if (page === "task" && here && here.dataset.tiPage === exact) scheduleRefresh();
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

  function scheduleRefresh() {
    if (refreshTimer !== null) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh().catch((exc) => flash(`could not refresh the page: ${exc.message}`));
    }, 150);
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
      if (!resp.ok) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      for (const fresh of $$("[data-region]", doc)) {
        const old = $(attr("data-region", fresh.dataset.region));
        if (old) old.replaceWith(document.importNode(fresh, true));
      }
      const box = $("#log-box");
      const freshBox = $("#log-box", doc);
      const pre = $("#log");
      if (box && freshBox && pre && pre.dataset.pinned !== "yes" &&
          freshBox.dataset.attempt !== box.dataset.attempt) { // a new try: follow its log
        box.replaceWith(document.importNode(freshBox, true));
      }
      const stream = doc.body.dataset.stream;
      if (stream !== document.body.dataset.stream) {
        document.body.dataset.stream = stream;
        openStream();
      }
    } finally {
      refreshing = false;
    }
  }

  let source = null;

  function openStream() {
    const spec = document.body.dataset.stream;
    if (source) source.close();
    source = null;
    if (!spec || typeof EventSource === "undefined") return;
    const live = $("#live");
    source = new EventSource(`/api/v1/stream${spec === "all" ? "" : `?${spec}`}`);
    source.addEventListener("open", () => { live.dataset.live = "on"; });
    source.addEventListener("error", () => { live.dataset.live = "off"; });
    const on = (name, fn) => source.addEventListener(name, (ev) => {
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
    const pre = $("#log");
    if (pre) follow(pre);
    openStream();
  });
})();
