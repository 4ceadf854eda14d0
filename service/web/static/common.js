// The dashboard's shared parts: the /v1 API with the user's key (X-API-Key), the key
// dialog, DOM helpers, training options, the models table and polling.


export const KEY_NAME = "ganaug.apiKey";
export const ACTIVE = new Set(["queued", "running"]);
export const REPORT_ACTIVE = new Set(["pending", "queued", "running"]);
export const POLL_MS = 1500;

// ------------------------------------------------------------------ the API and its key

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const api = {
  key() {
    return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || "";
  },
  headers(extra) {
    const headers = new Headers(extra || {});
    const key = this.key();
    if (key) headers.set("X-API-Key", key);
    return headers;
  },
  async request(path, options = {}) {
    const response = await fetch(path, { ...options, headers: this.headers(options.headers) });
    if (!response.ok) throw await errorOf(response);
    return response;
  },
  async json(path, options) {
    return (await this.request(path, options)).json();
  },
  async send(method, path, body) {
    const options = { method };
    if (body !== undefined) {
      options.body = JSON.stringify(body);
      options.headers = { "content-type": "application/json" };
    }
    const response = await this.request(path, options);
    return response.status === 204 ? null : response.json();
  },
};

export async function errorOf(response) {
  let code = "http_" + response.status;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (_) {
    // not the API's JSON error shape: keep the status line
  }
  const error = new ApiError(response.status, code, message);
  if (response.status === 401) askForKey(message);
  return error;
}

export function askForKey(reason) {
  const dialog = byId("key-dialog");
  if (reason) byId("key-reason").textContent = reason;
  if (!dialog.open) dialog.showModal();
  byId("key-input").focus();
}

export function setUpKey(reload) {
  const dialog = byId("key-dialog");
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = byId("key-input").value.trim();
    if (!key) return;
    localStorage.removeItem(KEY_NAME);
    sessionStorage.removeItem(KEY_NAME);
    (byId("key-remember").checked ? localStorage : sessionStorage).setItem(KEY_NAME, key);
    byId("key-input").value = "";
    dialog.close();
    showAuth();
    hideNotice();
    reload();
  });
  byId("key-cancel").addEventListener("click", () => dialog.close());
  byId("key-set").addEventListener("click", () => askForKey(null));
  byId("key-forget").addEventListener("click", () => {
    localStorage.removeItem(KEY_NAME);
    sessionStorage.removeItem(KEY_NAME);
    showAuth();
    reload();
  });
  showAuth();
}

export async function showAuth() {
  const key = api.key();
  byId("key-forget").hidden = !key;
  if (key) {
    byId("auth-state").textContent = `API key ${key.slice(0, 8)}…`;
    return;
  }
  byId("auth-state").textContent = "no API key";
  try {
    const ready = await (await fetch("/readyz")).json();
    if (ready.auth && ready.auth.mode === "anonymous") {
      byId("auth-state").textContent = `anonymous (tenant ${ready.auth.tenant})`;
    }
  } catch (_) {
    // /readyz unreachable or not ready: the /v1 calls will say what is wrong
  }
}

// ------------------------------------------------------------------ small helpers

export function byId(id) {
  return document.getElementById(id);
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name === "style") Object.assign(node.style, value); // CSSOM: allowed by the CSP
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null) node.append(child);
  return node;
}

export function notify(message, kind = "error") {
  const notice = byId("notice");
  notice.textContent = message;
  notice.className = kind;
  notice.hidden = false;
}

export function hideNotice() {
  byId("notice").hidden = true;
}

export function report(error) {
  // a 401 has opened the key dialog already; say so in the notice too
  notify(error instanceof ApiError ? `${error.message} (${error.code})` : String(error));
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

export function percent(fraction) {
  return `${Math.round(100 * (fraction || 0))} %`;
}

export const objectUrls = new Map(); // element -> blob URL, revoked when replaced

// Loads an authenticated image (an <img> cannot send X-API-Key) into img; returns the response.
export async function loadImage(img, path) {
  const response = await api.request(path);
  const url = URL.createObjectURL(await response.blob());
  if (objectUrls.has(img)) URL.revokeObjectURL(objectUrls.get(img));
  objectUrls.set(img, url);
  await new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = () => reject(new Error(`${path} is not an image`));
    img.src = url;
  });
  return response;
}

// Row labels beside a grid image whose rows are `names`, tiles of `tile` px plus 2 px padding.
export function labelRows(container, img, names, tile) {
  const scale = Math.max(1, Math.floor(48 / tile));
  const rowHeight = (tile + 2) * scale;
  img.style.width = `${img.naturalWidth * scale}px`;
  container.replaceChildren(
    ...names.map((name) => el("div", { style: { height: `${rowHeight}px` }, text: name })),
  );
  container.style.paddingTop = `${scale}px`;
}

// A download link: the browser streams it when no key is needed; with a key, the file is
// fetched with the key and saved from memory.
export function setDownload(link, path) {
  link.href = path;
  link.onclick = async (event) => {
    if (!api.key()) return;
    event.preventDefault();
    try {
      const response = await api.request(path);
      const disposition = response.headers.get("content-disposition") || "";
      const match = disposition.match(/filename="?([^";]+)"?/);
      const url = URL.createObjectURL(await response.blob());
      const save = el("a", { href: url, download: match ? match[1] : "download" });
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      report(error);
    }
  };
}

// ------------------------------------------------------------------ training options

export function trainingConfig(fieldset) {
  const config = {};
  const text = fieldset.querySelector("[data-option-json]").value.trim();
  if (text) {
    const extra = JSON.parse(text); // a SyntaxError is shown to the user
    if (typeof extra !== "object" || Array.isArray(extra) || extra === null) {
      throw new Error("More options must be a JSON object, e.g. {\"z_dim\": 32}.");
    }
    Object.assign(config, extra);
  }
  for (const input of fieldset.querySelectorAll("[data-option]")) {
    if (input.value === "") continue;
    config[input.dataset.option] = input.type === "number" ? Number(input.value) : input.value;
  }
  return config;
}

// ------------------------------------------------------------------ the models table

export function modelRow(model, datasetNames, refresh) {
  const progress = model.progress;
  const bar = el("div", { class: "bar" }, el("div", { class: "fill", style: { width: `${100 * progress.fraction}%` } }));
  const actions = el("td", { class: "actions" });
  if (ACTIVE.has(model.status)) {
    actions.append(el("button", { type: "button", class: "cancel", text: "Cancel", onclick: () => act(() => api.send("POST", `/v1/models/${model.id}/cancel`), refresh) }));
  } else {
    actions.append(el("button", { type: "button", class: "delete danger", text: "Delete", onclick: () => confirmThen(`Delete model ${model.id} and its files?`, () => api.send("DELETE", `/v1/models/${model.id}`), refresh) }));
  }
  return el(
    "tr",
    { "data-model-id": model.id, "data-status": model.status },
    el("td", {}, el("a", { href: `/ui/models/${model.id}`, text: model.id.slice(0, 8) })),
    el("td", {}, el("a", { href: `/ui/datasets/${model.dataset_id}`, text: datasetNames.get(model.dataset_id) || model.dataset_id.slice(0, 8) })),
    el("td", { text: model.method }),
    el("td", {}, el("span", { class: `badge ${model.status}`, text: model.status })),
    el("td", {}, bar, el("small", { text: ` ${progress.step} / ${progress.total_steps}` })),
    el("td", { class: "eta", text: etaText(model) }),
    el("td", { text: reportText(model.report) }),
    actions,
  );
}

export function etaText(model) {
  // the whole job: the training left, then the report (the API's estimate)
  if (model.eta_seconds !== undefined && model.eta_seconds !== null) {
    return duration(model.eta_seconds);
  }
  if (model.status === "running" && model.progress.eta_seconds !== null) {
    return duration(model.progress.eta_seconds);
  }
  return model.status === "queued" ? "waiting" : "";
}

export function reportText(state) {
  if (state.status === "running") return `running: ${state.stage || ""} ${percent(state.fraction)}`;
  if (state.status === "failed") return `failed: ${state.error || ""}`;
  return state.status;
}

export function renderModels(models, datasetNames, refresh) {
  const body = byId("models").tBodies[0];
  body.replaceChildren(...models.map((m) => modelRow(m, datasetNames, refresh)));
  byId("models-empty").hidden = models.length > 0;
  const count = byId("models-count");
  if (count) count.textContent = `(${models.length})`;
}

export function isBusy(model) {
  return ACTIVE.has(model.status) || REPORT_ACTIVE.has(model.report.status);
}

export async function act(call, refresh) {
  try {
    await call();
    hideNotice();
  } catch (error) {
    report(error);
  }
  refresh();
}

export function confirmThen(question, call, refresh) {
  if (window.confirm(question)) act(call, refresh);
}

// Calls load() now and again every POLL_MS while it returns true; load errors are shown.
export function poller(load) {
  let timer = null;
  const run = async () => {
    clearTimeout(timer);
    let again = false;
    try {
      again = await load();
    } catch (error) {
      report(error);
    }
    if (again) timer = setTimeout(run, POLL_MS);
  };
  return run;
}
