"""`ganaug datasets ...` and `ganaug models ...`: the API's work from the command line, through
`ganaug.client`. Each command takes `--url` (GANAUG_URL) and `--api-key` (GANAUG_API_KEY);
an error prints the service's code and message and exits 1. The everyday ones are also
top-level commands (`add_shortcuts`): `ganaug upload`, `train`, `watch`, `samples`,
`archive`, `report`, `classify`. `ganaug train FILE --out DIR` trains with no server
(ganaug.offline).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from ganaug.client import DEFAULT_URL, KEY_ENV, URL_ENV, ApiError, Client, Download, JobFailed

datasets_app = typer.Typer(help="Upload, list, show and delete datasets.", no_args_is_help=True)
models_app = typer.Typer(
    help="Train models, follow them, and get their images, archives, ONNX files and reports.",
    no_args_is_help=True,
)

Url = Annotated[str, typer.Option("--url", envvar=URL_ENV, help="the service", show_default=True)]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar=KEY_ENV, help="API key (Bearer)", show_default=False),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]
Out = Annotated[Path, typer.Option("--out", "-o", help="file to write")]
Seed = Annotated[int | None, typer.Option(help="random when omitted (printed)")]
Truncation = Annotated[str | None, typer.Option(help="a number, or auto (the report's t*)")]


@contextmanager
def connect(url: str, api_key: str | None, quiet: bool = False) -> Iterator[Client]:
    """A client; the service's refusals and unreachable services end the command (exit 1)."""
    client = Client(url, api_key, progress=not quiet)
    try:
        yield client
    except ApiError as exc:
        typer.echo(f"error: {exc.status} {exc.code}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    except (JobFailed, TimeoutError) as exc:  # Client.wait: failed, cancelled, or too long
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except httpx.TransportError as exc:
        typer.echo(
            f"error: cannot reach the service at {client.url} ({exc}); is `ganaug serve` "
            f"running, and is --url / {URL_ENV} right?",
            err=True,
        )
        raise typer.Exit(1) from None
    finally:
        client.close()


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _download(
    url: str, api_key: str | None, quiet: bool, fetch: Callable[[Client], Download]
) -> None:
    """Run one download (`fetch` with a client) and say what it wrote."""
    with connect(url, api_key, quiet) as api:
        download = fetch(api)
    extra = ""
    if download.seed is not None:
        extra = f" (seed {download.seed}, truncation {download.truncation})"
    typer.echo(f"wrote {download.path} ({download.bytes:,} bytes){extra}")


def _follow(api: Client, model_id: str, report: bool = True, timeout: float | None = None) -> None:
    """Wait for a model with progress bars, then say how it ended (exit 1: it failed)."""
    model = api.wait(model_id, report=report, timeout_s=timeout)
    typer.echo(f"{model['id']} {model['status']}, report {model['report']['status']}")


def _options(config: str | None, steps: int | None, method: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if config:
        try:
            options = json.loads(config)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--config is not JSON: {exc}") from None
        if not isinstance(options, dict):
            raise typer.BadParameter("--config must be a JSON object, e.g. '{\"steps\": 2000}'")
    if steps is not None:
        options["steps"] = steps
    if method is not None:
        options["method"] = method
    return options


Config = Annotated[
    str | None, typer.Option(help="training options as JSON, e.g. '{\"steps\": 2000}'")
]
Steps = Annotated[int | None, typer.Option(help="training steps")]
Method = Annotated[str | None, typer.Option(help="cgan (default), wacgan-gp, acgan, vcagan, ...")]


# --- datasets --------------------------------------------------------------------------------


@datasets_app.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="zip/tar/npz")],
    name: Annotated[str | None, typer.Option(help="a name for the dataset")] = None,
    train: Annotated[bool, typer.Option("--train", help="queue a model on it too")] = False,
    config: Config = None,
    steps: Steps = None,
    method: Method = None,
    image_size: Annotated[int | None, typer.Option(help="square training size, 8-128")] = None,
    ids: Annotated[
        bool, typer.Option("--id", help="print only the dataset id (and the model id)")
    ] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Upload a dataset (class folders in a zip/tar, or an .npz) and print it as JSON;
    --train queues a model too."""
    options = _options(config, steps, method)
    if options and not train:
        raise typer.BadParameter("training options were given without --train")
    with connect(url, api_key) as api:
        dataset = api.upload_dataset(
            file, name=name, train=train, config=options or None, image_size=image_size
        )
    if ids:
        typer.echo(dataset["id"])
        if dataset.get("model"):
            typer.echo(dataset["model"]["id"])
    else:
        _print(dataset)


@datasets_app.command("list")
def list_datasets(
    limit: int = 50, offset: int = 0, url: Url = DEFAULT_URL, api_key: ApiKey = None
) -> None:
    """Your datasets, newest first: id, images, classes, name."""
    with connect(url, api_key) as api:
        page = api.list_datasets(limit=limit, offset=offset)
    for d in page["data"]:
        classes = ", ".join(c["name"] for c in d["classes"]) or "(unlabelled)"
        typer.echo(f"{d['id']}  {d['num_images']:>6} images  {d.get('name') or '-'}  [{classes}]")
    typer.echo(f"{len(page['data'])} of {page['count']}", err=True)


@datasets_app.command("show")
def show_dataset(dataset_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """A dataset as JSON."""
    with connect(url, api_key) as api:
        _print(api.get_dataset(dataset_id))


@datasets_app.command("delete")
def delete_dataset(dataset_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Delete a dataset (refused while one of its models trains)."""
    with connect(url, api_key) as api:
        api.delete_dataset(dataset_id)
    typer.echo(f"deleted dataset {dataset_id}")


# --- models ----------------------------------------------------------------------------------


@models_app.command("train")
def train(
    dataset: Annotated[
        str,
        typer.Argument(
            metavar="DATASET", help="an uploaded dataset's id; with --out, a zip/tar/npz file"
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            file_okay=False,
            help="train here, with no server: the model directory to write",
        ),
    ] = None,
    config: Config = None,
    steps: Steps = None,
    method: Method = None,
    image_size: Annotated[
        int | None, typer.Option(help="--out: square training size, 8-128")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="--out: torch device, e.g. cpu; default cuda if any")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow it until the report")] = False,
    quiet: Quiet = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Queue a model on an uploaded dataset and print its id (--wait: then follow it);
    with --out DIR, train on a zip/tar/npz file here instead, with no server."""
    options = _options(config, steps, method)
    if out is not None:
        _train_offline(Path(dataset), out, options, image_size, device, quiet)
        return
    if Path(dataset).is_file():
        raise typer.BadParameter(
            f"'{dataset}' is a file: add --out DIR to train on it here, or upload it first "
            "(`ganaug upload FILE --train`)",
            param_hint="DATASET",
        )
    if image_size is not None or device is not None:
        raise typer.BadParameter("--image-size and --device apply to --out (offline) only")
    with connect(url, api_key, quiet) as api:
        model = api.train(dataset, **options)
        typer.echo(model["id"])
        if wait:
            _follow(api, model["id"])


def _train_offline(
    file: Path,
    out: Path,
    options: dict[str, Any],
    image_size: int | None,
    device: str | None,
    quiet: bool,
) -> None:
    from core.settings import get_settings
    from ganaug.offline import OfflineError, train_offline

    if not file.is_file():
        raise typer.BadParameter(f"no file '{file}' to train on", param_hint="DATASET")
    settings = get_settings()
    try:
        model = train_offline(
            file,
            out,
            options,
            settings=settings,
            image_size=image_size,
            device=device or settings.device,
            progress=not quiet,
        )
    except OfflineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    manifest, device = model.manifest, model.manifest.device
    where = "?" if device is None else device.type + (f" ({device.name})" if device.name else "")
    report = "" if model.report_s is None else f", report in {model.report_s:.0f} s"
    typer.echo(
        f"wrote {out}: {manifest.method}, {manifest.steps_completed} steps in "
        f"{model.elapsed_s:.0f} s on {where}{report}; classes {', '.join(manifest.classes)}"
    )


@models_app.command("list")
def list_models(
    dataset: Annotated[str | None, typer.Option(help="only this dataset's")] = None,
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, ...")] = None,
    limit: int = 50,
    offset: int = 0,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Your models, newest first: id, status, step, report, method, dataset."""
    with connect(url, api_key) as api:
        page = api.list_models(dataset_id=dataset, status=status, limit=limit, offset=offset)
    for m in page["data"]:
        p = m["progress"]
        typer.echo(
            f"{m['id']}  {m['status']:<9}  {p['step']:>6}/{p['total_steps']:<6}  "
            f"report {m['report']['status']:<9}  {m['method']:<10}  dataset {m['dataset_id']}"
        )
    typer.echo(f"{len(page['data'])} of {page['count']}", err=True)


@models_app.command("show")
def show_model(model_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """A model as JSON: status, progress, ETA, classes, options, report status."""
    with connect(url, api_key) as api:
        _print(api.get_model(model_id))


@models_app.command("wait")
def wait(
    model_id: str,
    report: Annotated[bool, typer.Option(help="wait for the quality report too")] = True,
    timeout: Annotated[float | None, typer.Option(help="give up after this many s")] = None,
    quiet: Quiet = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Follow a model with progress bars (ETA for training and report) until it is done;
    exits 1 if it failed or was cancelled."""
    with connect(url, api_key, quiet) as api:
        _follow(api, model_id, report, timeout)


@models_app.command("cancel")
def cancel(model_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Stop a queued or running training."""
    with connect(url, api_key) as api:
        model = api.cancel(model_id)
    typer.echo(f"cancelling {model['id']} (was {model['status']})")


@models_app.command("delete")
def delete_model(model_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Delete a model that has ended, with its files."""
    with connect(url, api_key) as api:
        api.delete_model(model_id)
    typer.echo(f"deleted model {model_id}")


@models_app.command("samples")
def samples(
    model_id: str,
    out: Out = Path("samples.png"),
    class_: Annotated[
        str | None, typer.Option("--class", help="name or index; all if omitted")
    ] = None,
    n: Annotated[int, typer.Option(help="images (per class without --class)")] = 16,
    truncation: Truncation = None,
    filter: Annotated[str | None, typer.Option(help="confident or manifold")] = None,
    seed: Seed = None,
    format: Annotated[str, typer.Option(help="grid, png, zip or npz")] = "grid",
    scale: Annotated[int | None, typer.Option(help="grid: enlarge each tile (1-8)")] = None,
    labels: Annotated[bool, typer.Option("--labels", help="grid: class names per row")] = False,
    quiet: Quiet = True,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Synthetic images: a grid PNG by default."""
    _download(
        url,
        api_key,
        quiet,
        lambda api: api.samples(
            model_id,
            out,
            class_=class_,
            n=n,
            truncation=truncation,
            filter=filter,
            seed=seed,
            format=format,
            scale=scale,
            labels=labels,
        ),
    )


@models_app.command("archive")
def archive(
    model_id: str,
    out: Out = Path("augmented.zip"),
    per_class: Annotated[str | None, typer.Option(help="a number, or proportional")] = None,
    total: Annotated[int | None, typer.Option(help="with --per-class proportional")] = None,
    recipe: Annotated[
        str | None, typer.Option(help="recommended: the report's counts, truncation, filter")
    ] = None,
    truncation: Truncation = None,
    filter: Annotated[str | None, typer.Option(help="confident or manifold")] = None,
    seed: Seed = None,
    include_real: Annotated[bool, typer.Option(help="the real images too")] = True,
    quiet: Quiet = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Download an augmented dataset (zip) with a progress bar."""
    _download(
        url,
        api_key,
        quiet,
        lambda api: api.download_archive(
            model_id,
            out,
            per_class=per_class,
            total=total,
            recipe=recipe,
            truncation=truncation,
            filter=filter,
            seed=seed,
            include_real=include_real,
        ),
    )


@models_app.command("onnx")
def onnx(
    model_id: str,
    out: Out = Path("generator.onnx"),
    quiet: Quiet = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Download the generator as ONNX with a progress bar."""
    _download(url, api_key, quiet, lambda api: api.download_generator(model_id, out))


@models_app.command("classify")
def classify(
    model_id: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="image/zip/tar/npz")],
    head: Annotated[str | None, typer.Option(help="critic or evaluator")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Classify images: one line per image, `name<TAB>top<TAB>confidence`."""
    with connect(url, api_key) as api:
        result = api.classify(model_id, file, head=head)
    for row in result["data"]:
        typer.echo(f"{row['name']}\t{row['top']}\t{row['confidence']:.3f}")
    typer.echo(f"{result['count']} images, head {result['head']}", err=True)


@models_app.command("report")
def report(
    model_id: str,
    compute: Annotated[bool, typer.Option("--compute", help="(re)compute it instead")] = False,
    pictures: Annotated[
        Path | None, typer.Option(help="also save the report's pictures in this folder")
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Print the quality report as JSON (or queue it again with --compute)."""
    with connect(url, api_key, quiet=True) as api:
        if compute:
            model = api.request_report(model_id)
            typer.echo(f"report {model['report']['status']} for {model_id}")
            return
        data = api.report(model_id)
        if pictures is not None:
            pictures.mkdir(parents=True, exist_ok=True)
            for name in data.get("picture_urls", {}):
                api.report_picture(model_id, name, pictures / f"{name}.png")
    _print(data)


def add_shortcuts(app: typer.Typer) -> None:
    """The everyday commands at the top level too (`ganaug upload` = `ganaug datasets
    upload`, `ganaug watch` = `ganaug models wait`, ...): the same functions, registered
    twice."""
    app.command("upload")(upload)
    app.command("train")(train)
    app.command("watch")(wait)
    for command in (samples, archive, report, classify):
        app.command()(command)
