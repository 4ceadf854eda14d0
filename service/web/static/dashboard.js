// The ganaug dashboard: every read and change goes through the /v1 API, same-origin, with
// the API key the user gave (X-API-Key). No framework and nothing from another site.
"use strict";

const KEY_NAME = "ganaug.apiKey";
const ACTIVE = new Set(["queued", "running"]);
const REPORT_ACTIVE = new Set(["pending", "queued", "running"]);
const POLL_MS = 1500;

// ------------------------------------------------------------------ the API and its key

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const api = {
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

async function errorOf(response) {
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

function askForKey(reason) {
  const dialog = byId("key-dialog");
  if (reason) byId("key-reason").textContent = reason;
  if (!dialog.open) dialog.showModal();
  byId("key-input").focus();
}

function setUpKey(reload) {
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

async function showAuth() {
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

function byId(id) {
  return document.getElementById(id);
}

function el(tag, attributes = {}, ...children) {
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

function notify(message, kind = "error") {
  const notice = byId("notice");
  notice.textContent = message;
  notice.className = kind;
  notice.hidden = false;
}

function hideNotice() {
  byId("notice").hidden = true;
}

function report(error) {
  // a 401 has opened the key dialog already; say so in the notice too
  notify(error instanceof ApiError ? `${error.message} (${error.code})` : String(error));
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function percent(fraction) {
  return `${Math.round(100 * (fraction || 0))} %`;
}

const objectUrls = new Map(); // element -> blob URL, revoked when replaced

// Loads an authenticated image (an <img> cannot send X-API-Key) into img; returns the response.
async function loadImage(img, path) {
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
function labelRows(container, img, names, tile) {
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
function setDownload(link, path) {
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

function trainingConfig(fieldset) {
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

function modelRow(model, datasetNames, refresh) {
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

function etaText(model) {
  if (model.status === "running" && model.progress.eta_seconds !== null) {
    return duration(model.progress.eta_seconds);
  }
  if (model.report.eta_seconds !== undefined && model.report.eta_seconds !== null) {
    return `report: ${duration(model.report.eta_seconds)}`;
  }
  return model.status === "queued" ? "waiting" : "";
}

function reportText(state) {
  if (state.status === "running") return `running: ${state.stage || ""} ${percent(state.fraction)}`;
  if (state.status === "failed") return `failed: ${state.error || ""}`;
  return state.status;
}

function renderModels(models, datasetNames, refresh) {
  const body = byId("models").tBodies[0];
  body.replaceChildren(...models.map((m) => modelRow(m, datasetNames, refresh)));
  byId("models-empty").hidden = models.length > 0;
  const count = byId("models-count");
  if (count) count.textContent = `(${models.length})`;
}

function isBusy(model) {
  return ACTIVE.has(model.status) || REPORT_ACTIVE.has(model.report.status);
}

async function act(call, refresh) {
  try {
    await call();
    hideNotice();
  } catch (error) {
    report(error);
  }
  refresh();
}

function confirmThen(question, call, refresh) {
  if (window.confirm(question)) act(call, refresh);
}

// Calls load() now and again every POLL_MS while it returns true; load errors are shown.
function poller(load) {
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

// ------------------------------------------------------------------ the home page

function homePage() {
  const refresh = poller(async () => {
    const [datasets, models] = await Promise.all([
      api.json("/v1/datasets?limit=200"),
      api.json("/v1/models?limit=200"),
    ]);
    renderDatasets(datasets.data, refresh);
    const names = new Map(datasets.data.map((d) => [d.id, d.name]));
    renderModels(models.data, names, refresh);
    return models.data.some(isBusy);
  });
  setUpUpload(refresh);
  setUpKey(() => {
    forgetThumbnails(); // they were another key's
    shownDatasets = "";
    refresh();
  });
  refresh();
}

// Dataset thumbnails, fetched once per dataset and key: id -> Promise of a blob URL.
const thumbnails = new Map();

function thumbnail(id) {
  if (!thumbnails.has(id)) {
    const url = api
      .request(`/v1/datasets/${id}/examples.png?per_class=4`)
      .then((response) => response.blob())
      .then((blob) => URL.createObjectURL(blob));
    url.catch(() => thumbnails.delete(id));
    thumbnails.set(id, url);
  }
  return thumbnails.get(id);
}

function forgetThumbnails() {
  for (const url of thumbnails.values()) url.then(URL.revokeObjectURL, () => {});
  thumbnails.clear();
}

let shownDatasets = "";

function renderDatasets(datasets, refresh) {
  const listed = JSON.stringify(datasets);
  if (listed === shownDatasets) return; // unchanged: keep the rows (and their thumbnails)
  shownDatasets = listed;
  const body = byId("datasets").tBodies[0];
  const rows = datasets.map((d) => {
    const img = el("img", { class: "thumb", alt: `examples of ${d.name}` });
    thumbnail(d.id).then((url) => (img.src = url), () => img.remove());
    const classes = d.labelled
      ? d.classes.map((c) => `${c.name} ${c.count}`).join(" · ")
      : "unlabelled";
    return el(
      "tr",
      { "data-dataset-id": d.id },
      el("td", {}, el("a", { href: `/ui/datasets/${d.id}`, text: d.name })),
      el("td", { text: String(d.num_images) }),
      el("td", { class: "classes", text: classes }),
      el("td", {}, img),
      el("td", { text: when(d.created_at) }),
      el("td", { class: "actions" }, el("button", { type: "button", class: "delete danger", text: "Delete", onclick: () => confirmThen(`Delete dataset ${d.name} and its models?`, () => api.send("DELETE", `/v1/datasets/${d.id}`), refresh) })),
    );
  });
  body.replaceChildren(...rows);
  byId("datasets-empty").hidden = datasets.length > 0;
  byId("datasets-count").textContent = `(${datasets.length})`;
}

function setUpUpload(refresh) {
  const form = byId("upload-form");
  const zone = byId("drop-zone");
  const input = byId("upload-file");
  let file = null;
  const choose = (chosen) => {
    file = chosen;
    byId("upload-chosen").textContent = file ? `${file.name} (${(file.size / 1024).toFixed(1)} KiB)` : "No file chosen.";
  };
  input.addEventListener("change", () => choose(input.files[0] || null));
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) choose(event.dataTransfer.files[0]);
  });
  byId("upload-train").addEventListener("change", (event) => {
    byId("train-options").disabled = !event.target.checked;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file) {
      notify("Choose or drop a dataset file first.");
      return;
    }
    const data = new FormData();
    data.append("file", file, file.name);
    const name = byId("upload-name").value.trim();
    if (name) data.append("name", name);
    const size = byId("upload-size").value;
    if (size) data.append("image_size", size);
    if (byId("upload-train").checked) {
      data.append("train", "true");
      try {
        data.append("config", JSON.stringify(trainingConfig(byId("train-options"))));
      } catch (error) {
        notify(`Training options: ${error.message}`);
        return;
      }
    }
    byId("upload-submit").disabled = true;
    try {
      const dataset = await upload(data);
      const trained = dataset.model ? `; model ${dataset.model.id.slice(0, 8)} ${dataset.model.status}` : "";
      byId("upload-status").textContent = `Stored ${dataset.name}: ${dataset.num_images} images, ${dataset.classes.length} classes${trained}.`;
      hideNotice();
      form.reset();
      byId("train-options").disabled = false;
      choose(null);
    } catch (error) {
      byId("upload-status").textContent = "";
      report(error);
    } finally {
      byId("upload-submit").disabled = false;
      byId("upload-progress").hidden = true;
    }
    refresh();
  });
}

// POST /v1/datasets with upload progress (fetch cannot report it, XMLHttpRequest can).
function upload(data) {
  const bar = byId("upload-progress");
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/datasets");
    const key = api.key();
    if (key) request.setRequestHeader("X-API-Key", key);
    bar.hidden = false;
    bar.value = 0;
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) bar.value = event.loaded / event.total;
    };
    request.onerror = () => reject(new Error("The upload failed: the service did not answer."));
    request.onload = async () => {
      const response = new Response(request.response, {
        status: request.status,
        statusText: request.statusText,
        headers: { "content-type": request.getResponseHeader("content-type") || "" },
      });
      if (response.ok) resolve(await response.json());
      else reject(await errorOf(response));
    };
    request.send(data);
  });
}

// ------------------------------------------------------------------ a dataset's page

function datasetPage() {
  const id = document.body.dataset.datasetId;
  let drawn = false;
  const refresh = poller(async () => {
    const [dataset, models] = await Promise.all([
      api.json(`/v1/datasets/${id}`),
      api.json(`/v1/models?limit=200&dataset_id=${encodeURIComponent(id)}`),
    ]);
    if (!drawn) {
      drawDataset(dataset);
      drawn = true;
    }
    renderModels(models.data, new Map([[dataset.id, dataset.name]]), refresh);
    return models.data.some(isBusy);
  });
  byId("dataset-delete").addEventListener("click", () => {
    if (!window.confirm("Delete this dataset, its files and its models?")) return;
    api.send("DELETE", `/v1/datasets/${id}`).then(() => location.assign("/ui/"), report);
  });
  byId("train-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const config = trainingConfig(byId("train-options"));
      const model = await api.send("POST", "/v1/models", { dataset_id: id, ...config });
      notify(`Model ${model.id.slice(0, 8)} ${model.status}.`, "info");
    } catch (error) {
      report(error);
    }
    refresh();
  });
  setUpKey(() => {
    drawn = false;
    refresh();
  });
  refresh();
}

function drawDataset(dataset) {
  document.title = `${dataset.name} · ganaug`;
  byId("dataset-name").textContent = dataset.name;
  const image = dataset.image;
  byId("dataset-summary").textContent =
    `${dataset.num_images} images of ${image.height}×${image.width}, ${image.channels === 1 ? "grey" : "colour"}` +
    `${dataset.labelled ? `, ${dataset.classes.length} classes` : ", unlabelled"}; uploaded ${when(dataset.created_at)}.`;
  const most = Math.max(1, ...dataset.classes.map((c) => c.count || 0));
  byId("classes").tBodies[0].replaceChildren(
    ...dataset.classes.map((c) =>
      el(
        "tr",
        {},
        el("td", { text: String(c.index) }),
        el("td", { text: c.name }),
        el("td", { text: String(c.count) }),
        el("td", { class: "wide" }, el("div", { class: "bar" }, el("div", { class: "fill", style: { width: `${(100 * c.count) / most}%` } }))),
      ),
    ),
  );
  const img = byId("examples");
  loadImage(img, `/v1/datasets/${dataset.id}/examples.png?per_class=8`)
    .then(() => {
      const names = dataset.labelled ? dataset.classes.map((c) => c.name) : ["images"];
      labelRows(byId("examples-labels"), img, names, image.height);
    })
    .catch(report);
}

// ------------------------------------------------------------------ a model's page

function modelPage() {
  const id = document.body.dataset.modelId;
  const state = { model: null, samplesReady: false, reportShown: false };
  const refresh = poller(async () => {
    const model = await api.json(`/v1/models/${id}`);
    state.model = model;
    drawModel(model, refresh);
    drawLosses(await api.json(`/v1/models/${id}/stats?max_points=400`));
    if (model.status === "succeeded" && !state.samplesReady) {
      state.samplesReady = true;
      setUpSamples(model);
    }
    if (model.report.status === "succeeded" && !state.reportShown) {
      state.reportShown = true;
      drawReport(model);
    }
    return isBusy(model);
  });
  byId("model-cancel").addEventListener("click", () => act(() => api.send("POST", `/v1/models/${id}/cancel`), refresh));
  byId("model-delete").addEventListener("click", () => {
    if (!window.confirm(`Delete model ${id} and its files?`)) return;
    api.send("DELETE", `/v1/models/${id}`).then(() => location.assign("/ui/"), report);
  });
  setUpKey(() => {
    state.samplesReady = state.reportShown = false;
    refresh();
  });
  refresh();
}

function drawModel(model, refresh) {
  const status = byId("model-status");
  status.textContent = model.status;
  status.className = `badge ${model.status}`;
  const image = model.image;
  byId("model-summary").replaceChildren(
    `${model.method} on `,
    el("a", { href: `/ui/datasets/${model.dataset_id}`, text: `dataset ${model.dataset_id.slice(0, 8)}` }),
    `, ${model.classes.length} classes, ${image.height}×${image.width}×${image.channels}; ` +
      `created ${when(model.created_at)}` +
      (model.finished_at ? `, ended ${when(model.finished_at)}` : ""),
  );
  byId("model-error").hidden = !model.error;
  byId("model-error").textContent = model.error || "";
  const p = model.progress;
  byId("model-bar").style.width = `${100 * p.fraction}%`;
  const eta = etaText(model);
  byId("model-progress").textContent =
    `step ${p.step} / ${p.total_steps} (${percent(p.fraction)})` +
    (p.elapsed_seconds ? `, ${duration(p.elapsed_seconds)} elapsed` : "") +
    (eta ? `, ETA ${eta}` : "");
  byId("model-report-status").textContent = `Quality report: ${reportText(model.report)}`;
  byId("model-cancel").hidden = !ACTIVE.has(model.status);
  byId("model-delete").hidden = ACTIVE.has(model.status);
  const ready = model.status === "succeeded";
  byId("downloads").hidden = !ready;
  if (ready) {
    const reportReady = model.report.status === "succeeded";
    setDownload(byId("download-onnx"), `/v1/models/${model.id}/generator.onnx`);
    setDownload(byId("download-archive"), `/v1/models/${model.id}/archive?per_class=100`);
    const recommended = byId("download-recommended");
    recommended.hidden = !reportReady;
    if (reportReady) setDownload(recommended, `/v1/models/${model.id}/archive?recipe=recommended`);
    byId("recommended-note").textContent = reportReady
      ? "The recommended recipe uses the counts, truncation and filter the quality report measured best."
      : "The recommended recipe needs the quality report.";
  }
}

const CURVE_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

function drawLosses(stats) {
  const chart = byId("loss-chart");
  const lines = stats.data;
  if (!lines.length) return;
  const names = [...new Set(lines.flatMap((line) => Object.keys(line.losses)))];
  const W = 640, H = 240, left = 48, right = 150, top = 10, bottom = 28;
  const steps = lines.map((l) => l.step);
  const values = lines.flatMap((l) => Object.values(l.losses).filter((v) => v !== null));
  const x0 = Math.min(...steps), x1 = Math.max(...steps, x0 + 1);
  let y0 = Math.min(...values), y1 = Math.max(...values);
  if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
  const x = (s) => left + ((s - x0) / (x1 - x0)) * (W - left - right);
  const y = (v) => top + (1 - (v - y0) / (y1 - y0)) * (H - top - bottom);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `training losses: ${names.join(", ")}`);
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { x1: left, y1: H - bottom, x2: W - right, y2: H - bottom, class: "axis" });
  add("line", { x1: left, y1: top, x2: left, y2: H - bottom, class: "axis" });
  for (const v of [y0, (y0 + y1) / 2, y1]) {
    add("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, v.toPrecision(3));
  }
  add("text", { x: left, y: H - 8, class: "tick" }, `step ${x0}`);
  add("text", { x: W - right, y: H - 8, "text-anchor": "end", class: "tick" }, `${x1}`);
  names.forEach((name, i) => {
    const colour = CURVE_COLOURS[i % CURVE_COLOURS.length];
    const points = lines
      .filter((l) => l.losses[name] !== null && l.losses[name] !== undefined)
      .map((l) => `${x(l.step).toFixed(1)},${y(l.losses[name]).toFixed(1)}`);
    add("polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 1.5, "data-loss": name });
    add("rect", { x: W - right + 10, y: top + i * 16, width: 10, height: 10, fill: colour });
    add("text", { x: W - right + 26, y: top + i * 16 + 9, class: "legend" }, name);
  });
  chart.replaceChildren(svg, el("p", { class: "muted", text: `${stats.count} reports; the last at step ${steps[steps.length - 1]}.` }));
}

function setUpSamples(model) {
  byId("samples").hidden = false;
  const select = byId("samples-class");
  select.replaceChildren(el("option", { value: "", text: "all classes" }), ...model.classes.map((c) => el("option", { value: c.name, text: c.name })));
  const seed = byId("samples-seed");
  seed.value = String(Math.floor(Math.random() * 100000));
  const controls = ["samples-class", "samples-n", "truncation-mode", "truncation", "samples-seed"];
  let timer = null;
  let latest = 0;
  const load = async () => {
    const ticket = ++latest;
    const mode = byId("truncation-mode").value;
    const slider = byId("truncation");
    slider.disabled = mode !== "value";
    byId("truncation-value").textContent = mode === "value" ? Number(slider.value).toFixed(2) : mode;
    const n = Math.min(16, Math.max(1, Number(byId("samples-n").value) || 8));
    const params = new URLSearchParams({ n: String(n), seed: seed.value || "0" });
    if (select.value) params.set("class", select.value);
    if (mode === "value") params.set("truncation", slider.value);
    if (mode === "auto") params.set("truncation", "auto");
    const path = `/v1/models/${model.id}/samples?${params}`;
    const img = byId("samples-img");
    img.dataset.loading = "true";
    try {
      const response = await loadImage(img, path);
      if (ticket !== latest) return;
      img.dataset.src = path;
      const names = select.value ? [select.value] : model.classes.map((c) => c.name);
      labelRows(byId("samples-labels"), img, names, model.image.height);
      byId("samples-caption").textContent =
        `seed ${response.headers.get("x-seed")}, truncation ${response.headers.get("x-truncation")}`;
    } catch (error) {
      report(error);
    } finally {
      if (ticket === latest) delete img.dataset.loading;
    }
  };
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(load, 120);
  };
  for (const id of controls) byId(id).addEventListener("input", soon);
  byId("samples-reseed").addEventListener("click", () => {
    seed.value = String(Math.floor(Math.random() * 100000));
    load();
  });
  byId("samples-form").addEventListener("submit", (event) => event.preventDefault());
  load();
}

async function drawReport(model) {
  let body;
  try {
    body = await api.json(`/v1/models/${model.id}/report`);
  } catch (error) {
    report(error);
    return;
  }
  byId("report").hidden = false;
  byId("truncation-mode").querySelector("option[value=auto]").disabled = false;
  const verdict = byId("report-verdict");
  verdict.textContent = body.synthetic_helped
    ? "Verdict: synthetic images helped a classifier on held-out data; the recommended recipe adds them."
    : "Verdict: no recipe beat real data alone by more than its noise; the recommended recipe adds no synthetic images.";
  verdict.className = `verdict ${body.synthetic_helped ? "good" : "neutral"}`;
  byId("report-notes").replaceChildren(...(body.notes || []).map((note) => el("li", { text: note })));
  const rows = [["t* (best truncation)", body.t_star === null ? "none" : body.t_star]];
  for (const [name, value] of Object.entries(body.metrics || {})) {
    if (typeof value === "number") rows.push([name, value]);
  }
  byId("report-metrics").tBodies[0].replaceChildren(
    ...rows.map(([name, value]) => el("tr", {}, el("th", { text: name }), el("td", { text: typeof value === "number" ? String(Number(value.toPrecision(4))) : String(value) }))),
  );
  const pictures = byId("report-pictures");
  pictures.replaceChildren();
  for (const [name, path] of Object.entries(body.picture_urls || {})) {
    const img = el("img", { alt: name, "data-picture": name });
    pictures.append(el("figure", {}, img, el("figcaption", { text: name.replaceAll("_", " ") })));
    loadImage(img, path).catch(report);
  }
}

// ------------------------------------------------------------------ start

document.addEventListener("DOMContentLoaded", () => {
  const pages = { home: homePage, dataset: datasetPage, model: modelPage };
  pages[document.body.dataset.page]();
});
