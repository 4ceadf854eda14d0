// The home page (upload, datasets, models) and a dataset's page.

import {
  api,
  errorOf,
  setUpKey,
  byId,
  el,
  notify,
  hideNotice,
  report,
  when,
  loadImage,
  labelRows,
  trainingConfig,
  renderModels,
  isBusy,
  confirmThen,
  poller,
} from "./common.js";

// ------------------------------------------------------------------ the home page

export function homePage() {
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

export function datasetPage() {
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
