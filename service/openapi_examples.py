"""Examples of the OpenAPI document (service/openapi.py): a message for each error code,
the facts some codes add, and success bodies. Examples only: the tests validate them
against the public schemas, and the codes against what the service raises."""

from __future__ import annotations

from service.ingest import ErrorKind

# An example message for each code, shown in the schema's examples.
EXAMPLE_REQUEST_ID = "5f0c2e9a4b1d4c7e9a0b3c5d7e9f1a2b"

MESSAGES = {
    "untrusted_host": "Host 'evil.example' is not one this service answers to (127.0.0.1, ::1, "
    "localhost); use one of them, or add the name to GANAUG_TRUSTED_HOSTS.",
    "missing_api_key": "This API needs an API key: send 'Authorization: Bearer <key>' or "
    "'X-API-Key: <key>'. An operator creates keys with `ganaug keys create --tenant NAME`.",
    "invalid_api_key": "The API key is unknown or revoked; ask for a new one.",
    "cross_site_request": "Refused a POST sent by a page of another site (cross-site): web "
    "pages cannot use this API across sites. Call it from your own code (curl, a script) "
    "with an API key.",
    "quota_exceeded": "Quota exceeded: jobs (GANAUG_QUOTA_JOBS = 8 queued or running "
    "trainings and reports). The tenant uses 8 and this request needs 1 more: 1 over. Wait "
    "for one to finish, or cancel one.",
    "rate_limited": "Rate limit exceeded: at most 10 archive requests per 1 minute per API key "
    "(GANAUG_RATE_LIMIT_ARCHIVE); this key has used all 10. Retry in 12 s.",
    "internal_error": "Internal error; quote request id 5f0c2e9a to support.",
    "broker_unavailable": "The job queue is unreachable; retry in a minute.",
    "database_unavailable": "The database is unreachable; nothing was changed. Retry in a minute.",
    "not_ready": "Not ready: database unreachable: OperationalError",
    "bad_request": "There was an error parsing the body: send the body this route documents "
    "at /docs (UTF-8 JSON, or a multipart form).",
    "validation_error": "Invalid request: n: Input should be greater than or equal to 1",
    "dataset_not_found": "No dataset with id '0a1b2c3d'.",
    "model_not_found": "No model with id '0a1b2c3d'.",
    "picture_not_found": "The report has no picture 'grids'.",
    "dataset_in_use": "A model of this dataset is queued or training; cancel it first.",
    "model_active": "The model is queued or training; cancel it first.",
    "model_finished": "The model already ended (succeeded).",
    "model_not_ready": "The model is running; samples exist only once it has succeeded.",
    "report_not_ready": "No report yet: the report is queued.",
    "report_in_progress": "A report is already queued or running.",
    "report_outdated": "filter=manifold needs the real class manifold; rebuild the report "
    "with POST /v1/models/{id}/report.",
    "no_recipe": "The model was trained without a held-out set (holdout_fraction 0), so no "
    "recipe was measured; pass per_class, truncation and filter yourself.",
    "no_classifier": "head=critic: this model has no critic classifier; use head=evaluator.",
    "invalid_config": "Invalid training options: steps: Input should be greater than 0",
    "invalid_name": "name holds control characters (such as NUL or a newline): 'a\\x00b'; use "
    "printable text.",
    "invalid_format": "format=png returns one image: pass class and n=1.",
    "invalid_truncation": "truncation must be a number in (0, 10.0] or 'auto'; got 'x'.",
    "invalid_per_class": "total goes with per_class=proportional.",
    "too_many_images_requested": "The samples would hold 2,048 generated images (2 classes), "
    "1,024 over the cap of 1,024 per response (GANAUG_MAX_SAMPLES); lower n or ask for one "
    "class.",
    "unknown_class": "Unknown class 'cat'; use a name or index of: circle, square.",
    "unlabelled_dataset": "Dataset '0f8fad5b' has no labels, which cgan needs; train method "
    "vcagan, which discovers the classes, or upload the images in class folders.",
    "invalid_class_names": "The classes would be named ['a', 'a']; give every class a "
    "distinct, non-empty name.",
    "no_clusters": "Model '7c9e6679' was trained with cgan, whose classes are the dataset's "
    "own; only a vcagan model labels a dataset with the classes it discovered.",
    "filter_exhausted": "class circle: 3 of 16 samples passed filter=confident after 2560 "
    "draws; lower min_confidence.",
    "recipe_conflict": "recipe=recommended sets per_class, truncation and filter; drop those "
    "parameters.",
    "upload_too_large": "The upload exceeds the limit of 536870912 bytes; send a smaller "
    "dataset or raise GANAUG_MAX_UPLOAD_BYTES.",
    ErrorKind.INVALID_OPTION: "image_size 200 is out of range; choose 8 to 128 or leave it unset",
    ErrorKind.UNSUPPORTED_FORMAT: "'data.rar' is not a zip, tar, tar.gz or .npz file; upload a "
    "zip or tar(.gz) of class folders, or an .npz with arrays x and y",
    ErrorKind.CORRUPT_ARCHIVE: "'data.zip' is damaged or truncated (Bad CRC-32); create it again",
    ErrorKind.UNSAFE_PATH: "member '../etc/passwd' has an absolute path, a drive letter or '..'",
    ErrorKind.UNSAFE_MEMBER: "member 'cats/link' is a symbolic link; upload regular files only",
    ErrorKind.TOO_MANY_MEMBERS: "the archive has more than 50000 entries; upload fewer files",
    ErrorKind.ARCHIVE_TOO_LARGE: "the archive expands to more than 2147483648 bytes; upload "
    "fewer or smaller images",
    ErrorKind.COMPRESSION_RATIO: "member 'a/x.png' expands more than 200 times, which looks "
    "like a zip bomb",
    ErrorKind.CORRUPT_IMAGE: "'cats/1.png' could not be decoded as an image; replace it",
    ErrorKind.IMAGE_TOO_LARGE: "'cats/1.png' is too large (20000x20000 pixels); downscale it "
    "before uploading",
    ErrorKind.EMPTY_DATASET: "'data.zip' holds no images",
    ErrorKind.BAD_LAYOUT: "'cat.png' is not inside a class folder",
    ErrorKind.SINGLE_CLASS: "found only class 'cats'; conditional training needs two or more "
    "classes, each with its own folder or label",
    ErrorKind.NPZ_INVALID: "x must be uint8 images of shape (N, H, W) or (N, H, W, C)",
    ErrorKind.NPZ_PICKLE: "array 'y' needs pickle to load, which is refused; save it as numbers",
    ErrorKind.NPZ_LENGTH_MISMATCH: "x has 10 images but y has 9 labels",
    ErrorKind.TOO_MANY_IMAGES: "more than 1024 images in one request; send them in several "
    "requests",
}


# The facts some codes add to the error object (service.quotas, service.ratelimit, the
# image caps of service.routes.models), shown in their examples.
DETAILS = {
    "quota_exceeded": {"quota": "jobs", "limit": 8, "used": 8, "requested": 1},
    "rate_limited": {"limit": 10, "window": "1 minute", "retry_after_s": 12},
    "too_many_images_requested": {"limit": 1024, "requested": 2048},
}


CLASSES = [{"index": 0, "name": "circle", "count": 30}, {"index": 1, "name": "square", "count": 30}]
IMAGE = {"height": 16, "width": 16, "channels": 1}
MODEL_EXAMPLE = {
    "id": "7c9e6679742540de944be07fc1f90ae7",
    "dataset_id": "0f8fad5bd9cb469fa16570867728950e",
    "method": "cgan",
    "status": "running",
    "progress": {
        "step": 600,
        "total_steps": 2000,
        "fraction": 0.3,
        "eta_seconds": 140.0,
        "elapsed_seconds": 61.2,
        "losses": {"d": 1.21, "g": 0.93},
    },
    "error": None,
    "classes": CLASSES,
    "image": IMAGE,
    "config": {"method": "cgan", "steps": 2000, "batch_size": 64, "seed": 1},
    "report": {"status": "pending", "stage": None, "fraction": 0.0, "error": None},
    "created_at": "2025-01-01T12:00:00Z",
    "started_at": "2025-01-01T12:00:01Z",
    "finished_at": None,
    "device": {"type": "cuda", "name": "NVIDIA GeForce RTX 4090"},
}
DATASET_EXAMPLE = {
    "id": MODEL_EXAMPLE["dataset_id"],
    "name": "shapes",
    "num_images": 60,
    "labelled": True,
    "classes": CLASSES,
    "image": IMAGE,
    "created_at": "2025-01-01T12:00:00Z",
}
PAGE = {"count": 1, "limit": 50, "offset": 0}
CLUSTERS = [
    {"index": 0, "name": "cluster_0", "count": 34},
    {"index": 1, "name": "cluster_1", "count": 26},
]
LABELLED_EXAMPLE = DATASET_EXAMPLE | {
    "id": "3f2504e04f8941d39a0c0305e82c3301",
    "name": "7c9e6679742540de944be07fc1f90ae7-clusters",
    "classes": CLUSTERS,
}
