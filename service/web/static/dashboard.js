// The ganaug dashboard: every read and change goes through the /v1 API, same-origin, with
// the API key the user gave (X-API-Key). ES modules, no framework, nothing from another site.
import { datasetPage, homePage } from "./lists.js";
import { modelPage } from "./model.js";

const pages = { home: homePage, dataset: datasetPage, model: modelPage };
pages[document.body.dataset.page]();
