// dagd's pages: the actions (fetch to the REST API, with the session's CSRF header) and
// the live updates (the server-sent events of /api/v1/stream). Data from the server is
// only ever set as text (textContent) or as an attribute value: never parsed as HTML.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const attr = (name, value) => `[${name}="${CSS.escape(String(value))}"]`;
  const enc = encodeURIComponent;

  // -- talking to the API ------------------------------------------------------------------
  function csrf() {
    const meta = $('meta[name="dagd-csrf"]');
    return meta ? meta.content : "";
  }

  async function api(method, url, body) {
    const resp = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Dagd-CSRF": csrf(),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    if (!resp.ok) {
      const message = (data && (data.message || data.error)) || `${resp.status} ${resp.statusText}`;
      throw new Error(message);
    }
    return data;
  }

  function flash(message) {
    const el = $("#flash");
    el.textContent = message;
    el.hidden = false;
  }

  // Where an action says how it went: the .form-result next to its button, or the flash.
  function report(origin, message, { error = false, link = null } = {}) {
    const scope = origin.closest("form, .actions, td, li") || document;
    const out = $(".form-result", scope);
    if (!out) {
      flash(message);
      return;
    }
    out.replaceChildren();
    out.classList.toggle("error-text", error);
    out.append(document.createTextNode(message));
    if (link) {
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      out.append(" ", a);
    }
  }

  async function act(origin, method, url, body, done) {
    const button = origin.closest("button") || origin;
    button.disabled = true;
    try {
      const data = await api(method, url, body);
      if (done) done(data);
    } catch (exc) {
      report(origin, exc.message, { error: true });
      throw exc;
    } finally {
      button.disabled = false;
    }
  }

  // -- the trigger form: a field per param, type-checked before sending -------------------
  const PARSE = {
    string: (text) => text,
    integer: (text) => {
      if (!/^-?\d+$/.test(text.trim())) throw new Error("must be a whole number");
      return Number(text.trim());
    },
    number: (text) => {
      const value = Number(text.trim());
      if (text.trim() === "" || !Number.isFinite(value)) throw new Error("must be a number");
      return value;
    },
    boolean: (text) => {
      if (text !== "true" && text !== "false") throw new Error("must be true or false");
      return text === "true";
    },
    array: (text) => {
      const value = JSON.parse(text);
      if (!Array.isArray(value)) throw new Error("must be a JSON array");
      return value;
    },
    json: (text) => JSON.parse(text),
    any: (text) => JSON.parse(text),
  };

  function confOf(form) {
    const raw = $("[data-raw]", form);
    const rawOpen = raw && raw.closest("details").open;
    if (rawOpen && raw.value.trim()) {
      let value;
      try {
        value = JSON.parse(raw.value);
      } catch (exc) {
        throw new Error(`raw conf: not valid JSON (${exc.message})`);
      }
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new Error("raw conf: must be a JSON object like {\"key\": \"value\"}");
      }
      return value;
    }
    return fieldsConf(form);
  }

  function fieldsConf(form) {
    const conf = {};
    const problems = [];
    for (const field of $$("[data-param]", form)) {
      const parse = PARSE[field.dataset.type] || PARSE.json;
      try {
        conf[field.name] = parse(field.value);
        field.removeAttribute("aria-invalid");
      } catch (exc) {
        field.setAttribute("aria-invalid", "true");
        problems.push(`${field.name} (${field.dataset.type}): ${exc.message}`);
      }
    }
    if (problems.length) throw new Error(problems.join("; "));
    return conf;
  }

  // Opening the raw editor starts it from the fields' values (when they are valid).
  document.addEventListener("toggle", (ev) => {
    const details = ev.target;
    if (!(details instanceof HTMLDetailsElement) || !details.classList.contains("raw")) return;
    const raw = $("[data-raw]", details);
    if (!details.open || raw.value.trim()) return;
    try {
      raw.value = JSON.stringify(fieldsConf(details.closest("form")), null, 2);
    } catch (_) {
      raw.value = "{}";
    }
  }, true);

  async function trigger(form) {
    const problem = $(".form-error", form);
    problem.hidden = true;
    let conf;
    try {
      conf = confOf(form);
    } catch (exc) {
      problem.textContent = exc.message;
      problem.hidden = false;
      return;
    }
    const dag = form.dataset.dag;
    await act($('button[type="submit"]', form), "POST", `/api/v1/dags/${enc(dag)}/runs`,
      { conf }, (data) => {
        report(form, `run ${data.run_id} queued.`, {
          link: { href: `/runs/${data.run_id}`, text: "open" },
        });
        scheduleRefresh();
      });
  }

  // -- buttons ------------------------------------------------------------------------------
  function taskUrl(box, verb) {
    return `/api/v1/runs/${enc(box.dataset.runId)}/tasks/${enc(box.dataset.task)}/${verb}`;
  }

  const ACTIONS = {
    "mark-run": (el) => act(el, "POST", `/api/v1/runs/${enc(el.dataset.runId)}/mark`,
      { state: el.dataset.stateTo }, () => {
        report(el, `marked ${el.dataset.stateTo}.`);
        scheduleRefresh();
      }),
    "clear": (el) => clear(el, false),
    "clear-downstream": (el) => clear(el, true),
    "mark-task": (el) => {
      const box = el.closest(".actions");
      return act(el, "POST", taskUrl(box, "mark"),
        { state: el.dataset.stateTo, map_index: Number(box.dataset.mapIndex) }, () => {
          report(el, `marked ${el.dataset.stateTo}.`);
          scheduleRefresh();
        });
    },
    "replay": (el) => act(el, "POST", `/api/v1/events/${enc(el.dataset.event)}/replay`,
      undefined, (data) => {
        if (data && data.run_id) {
          report(el, "replayed:", { link: { href: `/runs/${data.run_id}`, text: `run ${data.run_id}` } });
        } else {
          report(el, "replayed.");
        }
      }),
    "retry-notification": (el) => act(el, "POST",
      `/api/v1/notifications/${enc(el.dataset.notification)}/retry`, undefined, () => {
        report(el, "owed again.");
        el.remove();
      }),
  };

  function clear(el, downstream) {
    const box = el.closest(".actions");
    return act(el, "POST", taskUrl(box, "clear"),
      { downstream, map_index: Number(box.dataset.mapIndex) }, (data) => {
        const cleared = data && Array.isArray(data.cleared) ? data.cleared : [];
        report(el, cleared.length ? `cleared: ${cleared.join(", ")}.` : "cleared.");
        scheduleRefresh();
      });
  }

  async function togglePause(box) {
    const paused = box.checked;
    try {
      await api("POST", `/api/v1/dags/${enc(box.dataset.dag)}/${paused ? "pause" : "unpause"}`);
      const card = box.closest(".dag-card");
      if (card) card.classList.toggle("paused", paused);
    } catch (exc) {
      box.checked = !paused;
      flash(`${box.dataset.dag}: ${exc.message}`);
    }
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target.closest('form[data-action="trigger"]');
    if (!form) return;
    ev.preventDefault();
    trigger(form).catch(() => {});
  });
  document.addEventListener("click", (ev) => {
    const el = ev.target.closest("button[data-action]");
    if (!el || !ACTIONS[el.dataset.action]) return;
    ev.preventDefault();
    ACTIONS[el.dataset.action](el).catch(() => {});
  });
  document.addEventListener("change", (ev) => {
    const box = ev.target.closest('input[data-action="pause"]');
    if (box) togglePause(box);
  });

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

  window.addEventListener("pagehide", () => { if (source) source.close(); });
  document.addEventListener("DOMContentLoaded", () => {
    const pre = $("#log");
    if (pre) follow(pre);
    openStream();
  });
})();
