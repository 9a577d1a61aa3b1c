// dagd's pages, their actions: fetch to the REST API with the session's CSRF header, and
// the API's message shown when it refuses. live.js keeps the pages current. Data from
// the server is only ever set as text (textContent) or as an attribute value: never
// parsed as HTML.
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
        window.dagd.scheduleRefresh();
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
        window.dagd.scheduleRefresh();
      }),
    "clear": (el) => clear(el, false),
    "clear-downstream": (el) => clear(el, true),
    "mark-task": (el) => {
      const box = el.closest(".actions");
      return act(el, "POST", taskUrl(box, "mark"),
        { state: el.dataset.stateTo, map_index: Number(box.dataset.mapIndex) }, () => {
          report(el, `marked ${el.dataset.stateTo}.`);
          window.dagd.scheduleRefresh();
        });
    },
    "replay": (el) => act(el, "POST", `/api/v1/events/${enc(el.dataset.event)}/replay`,
      undefined, (data) => {
        if (data && data.run_id) {
          report(el, `replayed: run ${data.run_id} queued.`, {
            link: { href: `/runs/${data.run_id}`, text: "open" },
          });
        } else {
          report(el, `replayed: ${(data && data.outcome) || "no run started"}.`);
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
        window.dagd.scheduleRefresh();
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
  // -- a confirm step before an action that changes a run: what it will do, in words ---
  function taskName(box) {
    const i = Number(box.dataset.mapIndex);
    return `${box.dataset.task}${i >= 0 ? `[${i}]` : ""} of run ${box.dataset.runId}`;
  }

  const CONFIRM = {
    "clear": (el) => `Clear ${taskName(el.closest(".actions"))}: it runs again.`,
    "clear-downstream": (el) => `Clear ${taskName(el.closest(".actions"))} and every ` +
      "task after it: they all run again.",
    "mark-task": (el) => `Mark ${taskName(el.closest(".actions"))} ` +
      `${el.dataset.stateTo}: a running try is stopped.`,
    "mark-run": (el) => `Mark run ${el.dataset.runId} ${el.dataset.stateTo}: its ` +
      "unfinished tasks end with it.",
    "replay": (el) => `Replay event ${el.dataset.event}: it may start a new run.`,
  };

  function askFirst(el) {
    const scope = el.closest("form, .actions, td, li") || document;
    let box = $(".confirm", scope);
    if (!box) {
      box = document.createElement("span");
      box.className = "confirm";
      box.setAttribute("role", "alertdialog");
      const result = $(".form-result", scope);
      if (result) result.before(box);
      else el.after(box);
    }
    const yes = document.createElement("button");
    yes.type = "button";
    yes.className = el.classList.contains("danger") ? "danger" : "primary";
    yes.textContent = "Confirm";
    const no = document.createElement("button");
    no.type = "button";
    no.textContent = "Cancel";
    box.replaceChildren(document.createTextNode(`${CONFIRM[el.dataset.action](el)} `), yes,
      " ", no);
    yes.addEventListener("click", () => {
      box.remove();
      ACTIONS[el.dataset.action](el).catch(() => {});
    });
    no.addEventListener("click", () => box.remove());
    yes.focus();
  }

  document.addEventListener("click", (ev) => {
    const el = ev.target.closest("button[data-action]");
    if (!el || !ACTIONS[el.dataset.action]) return;
    ev.preventDefault();
    if (CONFIRM[el.dataset.action]) {
      askFirst(el);
      return;
    }
    ACTIONS[el.dataset.action](el).catch(() => {});
  });
  document.addEventListener("change", (ev) => {
    const box = ev.target.closest('input[data-action="pause"]');
    if (box) togglePause(box);
  });

  window.dagd = Object.assign(window.dagd || {}, { flash });
})();
