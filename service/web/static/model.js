// A model's page: progress and ETA, loss curves, samples, the report, downloads.

import {
  ACTIVE,
  api,
  setUpKey,
  byId,
  el,
  report,
  duration,
  when,
  percent,
  loadImage,
  labelRows,
  setDownload,
  etaText,
  reportText,
  isBusy,
  act,
  poller,
} from "./common.js";

// ------------------------------------------------------------------ a model's page

export function modelPage() {
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
