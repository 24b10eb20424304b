// modelzoo demo page: vanilla JavaScript, no build step, no external resources.
// Every call goes through api(); the endpoints it uses are listed once, in ENDPOINTS
// (tests/app/test_demo.py checks each against the app's OpenAPI schema).
"use strict";

const ENDPOINTS = {
  ready: ["GET", "/readyz"],
  models: ["GET", "/v1/models"],
  neighbors: ["POST", "/v1/word2vec/neighbors"],
  generate: ["POST", "/v1/lm/generate"],
  translate: ["POST", "/v1/translate"],
  recognize: ["POST", "/v1/handwriting/recognize"],
  match: ["POST", "/v1/match"],
  matchRank: ["POST", "/v1/match/rank"],
  matchModels: ["GET", "/v1/match/models"],
};

const TASKS = ["word2vec", "lm", "translation", "handwriting", "matching"];
const KEY_STORAGE = "modelzoo.apiKey";
const API_KEY_HEADER = "X-API-Key";

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch (_) {
    return "";  // storage disabled: the page still works without a key
  }
}

/** Call an endpoint; resolve with the parsed JSON, or reject with an ApiError. */
async function api(endpoint, body) {
  const [method, path] = endpoint;
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers[API_KEY_HEADER] = key;
  let payload;
  if (body instanceof FormData) {
    payload = body;  // the browser sets multipart/form-data with its boundary
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch (err) {
    throw new ApiError(0, "network_error",
      `Could not reach the service (${err && err.message ? err.message : err}). Is it running?`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    if (data && data.error && typeof data.error.message === "string") {
      throw new ApiError(response.status, data.error.code || "error", data.error.message,
        data.error.details);
    }
    const snippet = text.trim().slice(0, 300) || "no body";
    throw new ApiError(response.status, `http_${response.status}`,
      `${response.status} ${response.statusText}: ${snippet}`);
  }
  if (data === null) {
    throw new ApiError(response.status, "bad_response",
      "The service answered with something that is not JSON.", text.slice(0, 300));
  }
  return data;
}

// ---------------------------------------------------------------- DOM helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name === "style") node.setAttribute("style", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function hideError(box) {
  box.hidden = true;
  box.replaceChildren();
}

/** Render an ApiError (or any error) into an alert box; never leaves it blank. */
function showError(box, err) {
  const status = err instanceof ApiError && err.status ? ` (HTTP ${err.status})` : "";
  const code = err instanceof ApiError ? err.code : "error";
  const message = (err && err.message) || String(err) || "Unknown error";
  box.replaceChildren(el("strong", {}, "Error"), " ", el("code", {}, code + status), ": ",
    message);
  if (err instanceof ApiError && Array.isArray(err.details) && err.details.length &&
      err.details.every((d) => d && Array.isArray(d.loc))) {
    const list = el("ul");
    for (const d of err.details.slice(0, 5)) {
      list.append(el("li", {}, `${d.loc.filter((p) => p !== "body").join(".") || "body"}: ${d.msg}`));
    }
    box.append(list);
  }
  if (err instanceof ApiError && err.status === 401) {
    box.append(el("p", {}, "Enter a valid API key at the top of the page and try again."));
  } else if (err instanceof ApiError && err.status === 503) {
    box.append(el("p", {}, "The model is not ready (still loading, not configured, or busy); "
      + "see Model readiness above."));
  }
  box.hidden = false;
}

/** Read a number input: "" → null; a value that is not a number → a clear error. */
function numberField(input, label, { integer = true } = {}) {
  if (input.validity && input.validity.badInput) {
    throw new Error(`${label} must be a number.`);
  }
  const raw = input.value.trim();
  if (raw === "") return null;
  const value = Number(raw);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new Error(`${label} must be ${integer ? "a whole number" : "a number"} (got "${raw}").`);
  }
  return value;
}

function withoutNulls(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== null));
}

/** Wire a form: busy state, one handler, every failure shown in the form's alert box. */
function bindForm(form, resultBox, handler) {
  const button = form.querySelector("button[type=submit]");
  const errorBox = form.querySelector(".error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    hideError(errorBox);
    resultBox.replaceChildren();
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      await handler();
    } catch (err) {
      showError(errorBox, err);
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
}

// ---------------------------------------------------------------- readiness

let statusTimer = null;

function setBadge(task, state, title) {
  for (const badge of document.querySelectorAll(`[data-badge="${task}"]`)) {
    badge.textContent = state === "absent" ? "not loaded" : state;
    badge.className = `badge ${state}`;
    badge.title = title || "";
  }
}

async function refreshStatus() {
  clearTimeout(statusTimer);
  const summary = document.getElementById("ready-summary");
  const list = document.getElementById("model-list");
  const errorBox = document.getElementById("status-error");
  hideError(errorBox);
  let pending = false;
  const states = {};

  try {
    const ready = await api(ENDPOINTS.ready);
    summary.textContent = `Ready: ${Object.keys(ready.models).join(", ") || "no models"}.`;
    Object.assign(states, ready.models);
  } catch (err) {
    if (err instanceof ApiError && err.status === 503) {
      const notReady = (err.details && err.details.not_ready) || {};
      summary.textContent = `Not ready: ${err.message}`;
      for (const [task, state] of Object.entries(notReady)) {
        states[task] = String(state).split(":")[0];
      }
      pending = Object.values(states).some((s) => s === "pending" || s === "loading");
    } else {
      summary.textContent = "Readiness unknown.";
      showError(errorBox, err);
    }
  }

  try {
    const { models } = await api(ENDPOINTS.models);
    list.replaceChildren();
    for (const m of models) {
      states[m.task] = m.status;
      const facts = [];
      if (m.device) facts.push(m.device);
      if (m.quantized) facts.push("int8");
      if (m.card && m.card.name) facts.push(m.card.name);
      if (m.error) facts.push(m.error);
      list.append(el("li", {}, el("strong", {}, m.task), " ",
        el("span", { class: `badge ${m.status}` }, m.status),
        facts.length ? el("span", { class: "detail" }, facts.join(" · ")) : null));
    }
    if (!models.length) list.append(el("li", {}, "No model is configured."));
  } catch (err) {
    list.replaceChildren();
    showError(errorBox, err);
  }

  for (const task of TASKS) setBadge(task, states[task] || "absent");
  if (states.matching === "ready" && !matchModelsLoaded) loadMatchModels();
  if (pending) statusTimer = setTimeout(refreshStatus, 3000);
}

// ---------------------------------------------------------------- API key

function initApiKey() {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  const status = document.getElementById("api-key-status");
  input.value = storedKey();
  status.textContent = input.value ? "A key is set for this tab." : "";
  const save = (value) => {
    try {
      if (value) sessionStorage.setItem(KEY_STORAGE, value);
      else sessionStorage.removeItem(KEY_STORAGE);
      status.textContent = value
        ? `Saved for this tab; sent as ${API_KEY_HEADER} with every /v1 call.`
        : "No key: calls are sent without one.";
    } catch (_) {
      status.textContent = "This browser blocks sessionStorage, so the key cannot be kept.";
    }
    refreshStatus();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save(input.value.trim());
  });
  document.getElementById("api-key-clear").addEventListener("click", () => {
    input.value = "";
    save("");
  });
}

// ---------------------------------------------------------------- word2vec

function initWord2Vec() {
  const form = document.getElementById("form-word2vec");
  const result = document.getElementById("result-word2vec");
  bindForm(form, result, async () => {
    const body = withoutNulls({
      word: form.elements.word.value,
      k: numberField(form.elements.k, "k"),
    });
    const data = await api(ENDPOINTS.neighbors, body);
    const list = el("ol", { class: "neighbors", "aria-label": `Nearest words to ${data.word}` });
    for (const n of data.neighbors) {
      const width = Math.max(0, Math.min(1, n.cosine)) * 100;
      list.append(el("li", {},
        el("span", { class: "word" }, n.word),
        el("span", { class: "bar", style: `width:${width.toFixed(1)}%`, "aria-hidden": "true" }),
        el("span", { class: "cos" }, n.cosine.toFixed(3))));
    }
    result.replaceChildren(
      el("p", { class: "meta" }, `Nearest to “${data.word}” by cosine similarity:`), list);
  });
}

// ---------------------------------------------------------------- language model

function initLM() {
  const form = document.getElementById("form-lm");
  const result = document.getElementById("result-lm");
  bindForm(form, result, async () => {
    const f = form.elements;
    const body = withoutNulls({
      prompt: f.prompt.value,
      max_tokens: numberField(f.max_tokens, "Max tokens"),
      temperature: numberField(f.temperature, "Temperature", { integer: false }),
      top_k: numberField(f.top_k, "Top-k"),
      seed: numberField(f.seed, "Seed"),
    });
    const data = await api(ENDPOINTS.generate, body);
    const sample = data.samples[0];
    const meta = [`seed ${data.seed}`, `${sample.tokens.length} tokens`];
    if (data.unknown_words.length) meta.push(`unknown words: ${data.unknown_words.join(", ")}`);
    result.replaceChildren(
      el("div", { class: "output" }, el("span", { class: "hint" }, body.prompt ? `${body.prompt} ` : ""),
        sample.text),
      el("p", { class: "meta" }, meta.join(" · ")));
  });
}

// ---------------------------------------------------------------- translation

function initTranslation() {
  const form = document.getElementById("form-translation");
  const result = document.getElementById("result-translation");
  bindForm(form, result, async () => {
    const body = withoutNulls({
      text: form.elements.text.value,
      beam_size: numberField(form.elements.beam_size, "Beam size"),
    });
    const data = await api(ENDPOINTS.translate, body);
    const t = data.translations[0];
    result.replaceChildren(
      el("div", { class: "output", lang: "en" }, t.text),
      el("p", { class: "meta" }, `score ${t.score.toFixed(3)} · beam size ${data.beam_size}`));
  });
}

// ---------------------------------------------------------------- handwriting

const MAX_CANVAS_WIDTH = 900;

function fitCanvas(canvas, image) {
  const available = Math.min(MAX_CANVAS_WIDTH, canvas.parentElement.clientWidth || MAX_CANVAS_WIDTH);
  const cssWidth = Math.max(1, Math.min(image.naturalWidth, available));
  const cssHeight = Math.round(cssWidth * image.naturalHeight / image.naturalWidth);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(cssWidth * ratio);
  canvas.height = Math.round(cssHeight * ratio);
  canvas.style.width = `${cssWidth}px`;
  canvas.hidden = false;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  return ctx;
}

/** Draw each letter's box ([x, y, w, h] in image pixels) and the letter above it. */
function drawBoxes(canvas, image, data) {
  const ctx = fitCanvas(canvas, image);
  const sx = canvas.width / data.width;
  const sy = canvas.height / data.height;
  const ratio = window.devicePixelRatio || 1;
  ctx.lineWidth = Math.max(1.5, 2 * ratio);
  ctx.textBaseline = "bottom";
  for (const c of data.characters) {
    const [x, y, w, h] = c.box;
    const bx = x * sx, by = y * sy, bw = w * sx, bh = h * sy;
    const hue = Math.round(120 * c.confidence);  // red (unsure) .. green (sure)
    ctx.strokeStyle = `hsl(${hue}, 85%, 38%)`;
    ctx.strokeRect(bx, by, bw, bh);
    const size = Math.round(Math.max(12 * ratio, Math.min(32 * ratio, bh * 0.45)));
    ctx.font = `bold ${size}px system-ui, sans-serif`;
    const ty = by - 2 >= size ? by - 2 : by + bh + size + 2;  // above, or below at the top edge
    ctx.lineWidth = Math.max(2, size / 6);
    ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
    ctx.strokeText(c.char, bx, ty);
    ctx.fillStyle = `hsl(${hue}, 85%, 32%)`;
    ctx.fillText(c.char, bx, ty);
    ctx.lineWidth = Math.max(1.5, 2 * ratio);
  }
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error("This browser cannot show that file as an image (the service may still read it)."));
    };
    image.src = url;
  });
}

function initHandwriting() {
  const form = document.getElementById("form-handwriting");
  const result = document.getElementById("result-handwriting");
  const canvas = document.getElementById("hw-canvas");
  const input = form.elements.file;
  const errorBox = form.querySelector(".error");
  let image = null;

  input.addEventListener("change", async () => {
    hideError(errorBox);
    result.replaceChildren();
    image = null;
    canvas.hidden = true;
    const file = input.files && input.files[0];
    if (!file) return;
    try {
      image = await loadImage(file);
      fitCanvas(canvas, image);  // preview
    } catch (err) {
      showError(errorBox, err);
    }
  });

  bindForm(form, result, async () => {
    const file = input.files && input.files[0];
    if (!file) throw new Error("Choose an image file first.");
    const body = new FormData();
    body.append("file", file, file.name || "upload.png");
    const pipeline = form.elements.pipeline ? form.elements.pipeline.value : "auto";
    const [method, path] = ENDPOINTS.recognize;
    const data = await api([method, `${path}?pipeline=${encodeURIComponent(pipeline)}`], body);
    const n = data.characters.length;
    const mean = n ? data.characters.reduce((s, c) => s + c.confidence, 0) / n : 0;
    result.replaceChildren(
      el("div", { class: "output" }, data.text || "(no letters found)"),
      el("p", { class: "meta" }, n
        ? `${n} letters · mean confidence ${(100 * mean).toFixed(1)}% · image ${data.width}×${data.height} · read by ${data.pipeline}`
        : `No ink found in the ${data.width}×${data.height} image.`));
    if (image) drawBoxes(canvas, image, data);
  });
}

// ---------------------------------------------------------------- text matching

let matchModelsLoaded = false;

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

/** A 0..1 value as a horizontal bar (decorative: the number is always shown as text),
 * with an optional tick at the decision threshold. */
function scoreBar(value, threshold) {
  const clamp = (v) => (100 * Math.max(0, Math.min(1, v))).toFixed(1);
  const bar = el("span", { class: "scorebar", "aria-hidden": "true" },
    el("span", { class: "fill", style: `width:${clamp(value)}%` }));
  if (threshold !== undefined) {
    bar.append(el("span", { class: "tick", style: `left:${clamp(threshold)}%` }));
  }
  return bar;
}

/** "esim-quora (default) · dev acc. 79.4%": the name first, so a narrow select cuts the
 * metric, not the name. */
function matchModelLabel(model, isDefault) {
  const m = model.metrics || {};
  let label = `${model.name}${isDefault ? " (default)" : ""}`;
  if (typeof m.accuracy === "number") label += ` · dev acc. ${percent(m.accuracy)}`;
  else if (typeof m.map === "number") label += ` · dev MAP ${m.map.toFixed(3)}`;
  return label;
}

/** Fill the model selects from GET /v1/match/models, each preselecting the server's
 * default for its endpoint (data-use="match" | "rank"); a user's choice is kept. On failure
 * the selects keep "server default" (the request then omits `model`). */
async function loadMatchModels() {
  let data;
  try {
    data = await api(ENDPOINTS.matchModels);
  } catch (_) {
    return;  // not ready / no key yet: the next refreshStatus tries again
  }
  if (!data.models.length) return;
  matchModelsLoaded = true;
  for (const select of document.querySelectorAll("select[data-use]")) {
    const fallback = select.dataset.use === "rank" ? data.default_rank : data.default_match;
    const previous = select.value;
    select.replaceChildren(...data.models.map((m) =>
      el("option", { value: m.name }, matchModelLabel(m, m.name === fallback))));
    select.value = data.models.some((m) => m.name === previous) ? previous : fallback;
  }
}

function initMatching() {
  const pairForm = document.getElementById("form-match");
  const pairResult = document.getElementById("result-match");
  bindForm(pairForm, pairResult, async () => {
    const f = pairForm.elements;
    const body = {
      text_a: f.text_a.value,
      text_b: f.text_b.value,
      ...(f.model.value ? { model: f.model.value } : {}),
    };
    const data = await api(ENDPOINTS.match, body);
    pairResult.replaceChildren(
      el("p", { class: "verdict" },
        el("span", { class: `verdict-label ${data.label ? "yes" : "no"}` },
          data.label ? "match" : "no match"),
        " ", el("span", { class: "score" }, percent(data.score))),
      scoreBar(data.score, data.threshold),
      el("p", { class: "meta" }, `score ${data.score.toFixed(4)} · threshold `
        + `${data.threshold.toFixed(4)} (marked on the bar) · model ${data.model}`));
  });

  const rankForm = document.getElementById("form-match-rank");
  const rankResult = document.getElementById("result-match-rank");
  bindForm(rankForm, rankResult, async () => {
    const f = rankForm.elements;
    const candidates = [];
    const lineOf = [];  // candidate index → line number in the textarea
    f.candidates.value.split("\n").forEach((line, i) => {
      if (line.trim()) {
        candidates.push(line.trim());
        lineOf.push(i + 1);
      }
    });
    if (!candidates.length) throw new Error("Enter at least one candidate, one per line.");
    const body = {
      query: f.query.value,
      candidates,
      ...(f.model.value ? { model: f.model.value } : {}),
    };
    const data = await api(ENDPOINTS.matchRank, body);
    const list = el("ol", { class: "ranking",
      "aria-label": `Candidates for “${body.query}”, best first` });
    for (const c of data.results) {
      list.append(el("li", {},
        el("span", { class: "text" }, c.text, " ",
          el("span", { class: "hint" }, `(line ${lineOf[c.index]})`)),
        el("span", { class: "bar-row" }, scoreBar(c.score),
          el("span", { class: "score" }, percent(c.score)))));
    }
    rankResult.replaceChildren(
      el("p", { class: "meta" },
        `${data.results.length} candidates, best first · model ${data.model}`),
      list);
  });
}

// ---------------------------------------------------------------- start

function start() {
  initApiKey();
  initWord2Vec();
  initLM();
  initTranslation();
  initHandwriting();
  initMatching();
  document.getElementById("status-refresh").addEventListener("click", refreshStatus);
  refreshStatus();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
