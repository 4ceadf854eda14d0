"""Serving speed: the gateway against its own work, variants A/B interleaved in one run.

Every figure is a ratio measured in this run, with the load average beside it (the machine
is shared): the request path against the same work in-process, one server variant against
another. The variants are uvicorn processes on one data directory, each measured in turn
round after round, so a change of load hits them all alike:

    main      the code of --main-dir (default /work/main), before this work
    spin      this code with ORT spinning on (GANAUG_ORT_SPINNING=true), batching off
    lean      this code with its defaults (on CPU: no batching)
    batched   this code with dynamic batching on CPU (GANAUG_BATCH_WAIT_MS=2)
    h11       `lean` on asyncio + h11 instead of uvloop + httptools
    logged    `lean` with the access log on (the others run without it)
    ort1      `lean` with one intra-op ORT thread per session (GANAUG_ORT_THREADS=1)
    pool1     `lean` with a pool of one thread (GANAUG_COMPUTE_THREADS=1)

    .venv/bin/python -m benchmarks.serving [--rounds 3] [--seconds 3] [--rss]

`--workers 1,2,2u,2s` compares `ganaug serve --workers N` servers instead (and only
that), interleaved the same way: /healthz, n=1 PNG (keep-alive and new connections) and
grid-64 at 8 clients, grid-64 at 1, with how each multi-process server spread the
requests over its processes (from /metrics). `2u`: each process with one process's
compute pool instead of its share of the cores; `2s`: the ORT threads shared out too.

Model: default options at 28x28, 10 classes, trained 2 steps (speed does not depend on the
weights), built once under benchmarks/out/serving.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.low_data_service import Service, train_gan

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "serving"
CLASSES = [f"c{i}" for i in range(10)]


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def build_model(data_dir: Path, num_classes: int = 10) -> str:
    """A succeeded model in data_dir (trained once, reused by later runs)."""
    marker = data_dir.parent / f"model-{num_classes}.txt"
    if marker.exists():
        return marker.read_text().strip()
    service = Service(data_dir, port=8790)
    try:
        rng = np.random.default_rng(0)
        y = np.repeat(np.arange(num_classes), 20)
        x = rng.integers(0, 256, (len(y), 28, 28), np.uint8)
        config = {"steps": 2, "report": "none"}
        model = train_gan(service, x, y, CLASSES[:num_classes], config)
    finally:
        service.stop()
    marker.write_text(model["id"])
    return model["id"]


@dataclass
class Variant:
    name: str
    port: int
    env: dict[str, str]
    code_dir: Path = ROOT
    args: list[str] = field(default_factory=lambda: ["--no-access-log"])
    command: list[str] | None = None  # instead of uvicorn with `args`
    proc: subprocess.Popen | None = None

    def start(self, data_dir: Path) -> float:
        """Start the server; returns seconds until /healthz answered."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANAUG_")}
        env.update({"GANAUG_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"})
        env.update({"GANAUG_RATE_LIMIT_SAMPLES": "", "GANAUG_RATE_LIMIT_ARCHIVE": "", **self.env})
        env["PYTHONPATH"] = str(self.code_dir)
        log = (OUT / f"{self.name}.log").open("ab")
        started = time.perf_counter()
        command = self.command or [
            sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory",
            "--port", str(self.port), "--log-level", "warning", *self.args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, env=env, cwd=self.code_dir, stdout=log, stderr=subprocess.STDOUT
        )
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.05)
            if self.proc.poll() is not None:
                break
        raise SystemExit(f"{self.name} did not start; see {OUT / self.name}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


async def _one_connection(
    port: int, path: str, deadline: float, latencies: list[float], keep_alive: bool = True
) -> None:
    """Requests one after another on one keep-alive connection, or (`keep_alive` false) each
    on a new connection, as many independent clients would come."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    close = "" if keep_alive else "Connection: close\r\n"
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{close}\r\n".encode()
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if writer.is_closing():  # the last request's, without keep-alive
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{path}: {head[:200]!r}")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not keep_alive:
                writer.close()
    finally:
        writer.close()


def load_test(
    port: int, path: str, clients: int, seconds: float, keep_alive: bool = True
) -> dict[str, float]:
    """req/s and latency percentiles of `clients` connections for `seconds` (each keeps
    its connection, or opens a new one per request)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def run() -> None:
        await asyncio.gather(
            *(_one_connection(port, path, deadline, latencies, keep_alive) for _ in range(clients))
        )

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


def archive_rate(url: str, model_id: str, per_class: int, classes: int = len(CLASSES)) -> float:
    """Synthetic images per second of a streamed archive (include_real=false)."""
    params = {"per_class": per_class, "include_real": "false", "seed": 1}
    started = time.perf_counter()
    size = 0
    with httpx.stream(
        "GET", f"{url}/v1/models/{model_id}/archive", params=params, timeout=600
    ) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            size += len(chunk)
    return per_class * classes / (time.perf_counter() - started)


class InProcess:
    """The same work as the requests, in this process: generation and PNG encoding."""

    def __init__(self, model_dir: Path, png_level: int) -> None:
        from models.sampler import GeneratorSampler

        self.sampler = GeneratorSampler(model_dir)
        self.png_level = png_level
        self.z_dim = self.sampler.manifest.z_dim

    def grid(self, n: int = 64) -> None:
        from models.images import encode_png, image_grid

        rng = np.random.default_rng(0)
        images = self.sampler.generate(np.zeros(n, np.int64), rng.standard_normal((n, self.z_dim)))
        encode_png(image_grid(images, ncols=16), self.png_level)

    def one(self) -> None:
        from models.images import encode_png

        z = np.random.default_rng(0).standard_normal((1, self.z_dim))
        encode_png(self.sampler.generate(np.zeros(1, np.int64), z)[0], self.png_level)

    def archive_rate(self, images: int) -> float:
        from models.images import encode_png

        started = time.perf_counter()
        for start in range(0, images, 128):
            z = np.random.default_rng(start).standard_normal((min(128, images - start), self.z_dim))
            for image in self.sampler.generate(np.zeros(len(z), np.int64), z):
                encode_png(image, self.png_level)
        return images / (time.perf_counter() - started)


def timed(fn, repeats: int) -> float:
    """Median seconds of fn()."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def png_levels(work: InProcess) -> list[str]:
    """Size and encoding time of a 64-image grid and of one image at PNG levels 1, 6, 9."""
    from models.images import encode_png, image_grid

    z = np.random.default_rng(0).standard_normal((64, work.z_dim))
    images = work.sampler.generate(np.arange(64) % 10, z)
    grid = image_grid(images, ncols=16)
    lines = []
    base = {}
    for level in (6, 1, 9, 0):
        t_grid = timed(lambda level=level: encode_png(grid, level), 30)
        t_one = timed(lambda level=level: encode_png(images[0], level), 200)
        size, one = len(encode_png(grid, level)), len(encode_png(images[0], level))
        base.setdefault("t", t_grid)
        base.setdefault("s", size)
        lines.append(
            f"  level {level}: grid {1000 * t_grid:.2f} ms ({base['t'] / t_grid:.2f}x level 6 "
            f"speed), {size} B ({size / base['s']:.2f}x); one image {1e6 * t_one:.0f} us, {one} B"
        )
    return lines


def import_seconds(code_dir: Path) -> float:
    """Seconds to import the app (service.app) in a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import service.app; print(time.perf_counter() - t)"
    )
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=code_dir, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--main-dir", type=Path, default=Path("/work/main"))
    parser.add_argument("--variants", default="main,spin,lean,batched,h11,logged")
    parser.add_argument("--rss", action="store_true", help="peak RSS at per_class 1000 vs 20000")
    parser.add_argument("--cold", action="store_true", help="cold starts with/without warm-up")
    parser.add_argument(
        "--workers", default="", help="only compare serve --workers N, e.g. 1,2,2u,2s"
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data_dir = OUT / "data"
    model_id = build_model(data_dir)
    model_dir = data_dir / "models" / model_id
    print(f"model {model_id}; {load()}; cores {os.cpu_count()}", flush=True)
    if args.workers:
        compare_workers(args.workers.split(","), model_id, data_dir, args)
        return

    imports = {"this": [], "main": []}
    for _ in range(3):
        imports["this"].append(import_seconds(ROOT))
        imports["main"].append(import_seconds(args.main_dir))
    this, before = statistics.median(imports["this"]), statistics.median(imports["main"])
    print(f"import service.app: {this:.2f} s, main {before:.2f} s ({before / this:.2f}x); {load()}")

    work = InProcess(model_dir, png_level=6)
    print("PNG levels (in-process, same images):")
    print("\n".join(png_levels(work)), flush=True)

    all_variants = {
        "main": Variant("main", 8801, {}, code_dir=args.main_dir),
        "spin": Variant("spin", 8802, {"GANAUG_ORT_SPINNING": "true"}),
        "lean": Variant("lean", 8803, {}),
        "batched": Variant("batched", 8804, {"GANAUG_BATCH_WAIT_MS": "2"}),
        "h11": Variant(
            "h11", 8805, {}, args=["--no-access-log", "--loop", "asyncio", "--http", "h11"]
        ),  # fmt: skip
        "logged": Variant("logged", 8806, {}, args=[]),
        "ort1": Variant("ort1", 8807, {"GANAUG_ORT_THREADS": "1"}),
        "pool1": Variant("pool1", 8808, {"GANAUG_COMPUTE_THREADS": "1"}),
    }
    if args.cold:
        cold_starts(data_dir, model_id, args.main_dir)
    variants = [all_variants[name] for name in args.variants.split(",") if name]
    try:
        measure(variants, work, model_id, data_dir, args)
    finally:
        for variant in variants:
            variant.stop()


def measure(variants: list[Variant], work: InProcess, model_id: str, data_dir: Path, args) -> None:
    cold = {}
    for variant in variants:
        variant.start(data_dir)
        grid = f"/v1/models/{model_id}/samples?n=64&class=0&seed=1"
        first = time.perf_counter()
        httpx.get(variant.url + grid, timeout=60).raise_for_status()
        first = time.perf_counter() - first
        warm = timed(lambda u=variant.url + grid: httpx.get(u, timeout=60), 5)
        cold[variant.name] = first / warm
    print("cold first grid / warm grid: " + ", ".join(f"{k} {v:.2f}x" for k, v in cold.items()))

    one = f"/v1/models/{model_id}/samples?n=1&class=3&format=png"
    grid = f"/v1/models/{model_id}/samples?n=64&class=0&seed=1"
    rows: dict[str, list[dict]] = {v.name: [] for v in variants}
    reference: list[dict] = []
    for round_ in range(args.rounds):
        reference.append(
            {
                "grid_ms": 1000 * timed(work.grid, 10),
                "one_ops": 1 / timed(work.one, 200),
                "archive_ips": work.archive_rate(1000),
                "load": os.getloadavg()[0],
            }
        )
        tests = {  # each test runs on every variant in turn: neighbours share the load
            "healthz": lambda v: load_test(v.port, "/healthz", 8, args.seconds)["rps"],
            "one8": lambda v: load_test(v.port, one, 8, args.seconds),
            "one1": lambda v: load_test(v.port, one, 1, args.seconds)["rps"],
            "grid": lambda v: load_test(v.port, grid, 1, args.seconds)["p50_ms"],
            "archive_ips": lambda v: archive_rate(v.url, model_id, 100),
        }
        row_of = {v.name: {"load": os.getloadavg()[0]} for v in variants}
        for key, test in tests.items():
            for variant in variants:
                row_of[variant.name][key] = test(variant)
        for variant in variants:
            row = row_of[variant.name]
            rows[variant.name].append(row)
            print(
                f"round {round_} {variant.name:8s} healthz {row['healthz']:6.0f}/s  n=1 x8 "
                f"{row['one8']['rps']:6.0f}/s p99 {row['one8']['p99_ms']:5.1f} ms  n=1 x1 "
                f"{row['one1']:5.0f}/s  grid p50 {row['grid']:6.1f} ms  archive "
                f"{row['archive_ips']:6.0f} img/s  load {row['load']:.1f}",
                flush=True,
            )
    if reference:
        report(rows, reference, cold)
    for variant in variants:
        variant.stop()
    if args.rss:
        rss(data_dir, args.main_dir)


def median(rows: list[dict], key, sub: str | None = None) -> float:
    return statistics.median(r[key][sub] if sub else r[key] for r in rows)


def report(rows: dict[str, list[dict]], reference: list[dict], cold: dict[str, float]) -> None:
    ref_grid = median(reference, "grid_ms")
    ref_one = median(reference, "one_ops")
    ref_archive = median(reference, "archive_ips")
    print(
        f"\nin-process: grid-64 gen+encode {ref_grid:.1f} ms, n=1 {ref_one:.0f} ops/s, "
        f"archive {ref_archive:.0f} img/s; load {median(reference, 'load'):.1f}"
    )
    print("medians over rounds (ratios within a round's interleaving):")
    for name, r in rows.items():
        print(
            f"  {name:8s} grid p50 / in-process {median(r, 'grid') / ref_grid:.2f}x | "
            f"n=1 x8 / healthz x8 {median(r, 'one8', 'rps') / median(r, 'healthz'):.2f} | "
            f"n=1 x8 {median(r, 'one8', 'rps'):.0f}/s, p99 {median(r, 'one8', 'p99_ms'):.0f} ms | "
            f"archive / in-process {median(r, 'archive_ips') / ref_archive:.2f} | "
            f"cold/warm {cold[name]:.2f}"
        )
    names = list(rows)
    for a, b in [("lean", "spin"), ("batched", "lean"), ("lean", "main"), ("h11", "lean"),
                 ("logged", "lean"), ("ort1", "lean"), ("pool1", "lean")]:  # fmt: skip
        if a in rows and b in rows:
            ratios = [
                x["one8"]["rps"] / y["one8"]["rps"] for x, y in zip(rows[a], rows[b], strict=True)
            ]
            grid = [y["grid"] / x["grid"] for x, y in zip(rows[a], rows[b], strict=True)]
            arch = [
                x["archive_ips"] / y["archive_ips"] for x, y in zip(rows[a], rows[b], strict=True)
            ]
            print(
                f"  {a} vs {b}: n=1 x8 req/s {statistics.median(ratios):.2f}x, grid speed "
                f"{statistics.median(grid):.2f}x, archive {statistics.median(arch):.2f}x"
            )
    del names


def requests_by_process(url: str) -> Counter:
    """Requests each API process answered so far (ganaug_api_process_requests, by pid)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return Counter(
        {
            sample.labels["pid"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "ganaug_api_process_requests"
        }
    )


def compare_workers(names: list[str], model_id: str, data_dir: Path, args) -> None:
    """`ganaug serve --workers N` for each name ("N"; "Nu": each process with one process's
    compute pool, not its share of the cores; "Ns": the ORT threads shared out too), each
    test on every server in turn, round after round; ratios against the first."""
    cores = os.cpu_count() or 1
    servers, counts = [], []
    for index, name in enumerate(names):
        count, port = int(name.rstrip("us")), 8830 + index
        threads = {  # u: one process's pool; s: the ORT threads split too
            "u": {"GANAUG_COMPUTE_THREADS": str(cores)},
            "s": {"GANAUG_ORT_THREADS": str(max(1, min(4, cores // count)))},
        }
        env = {"GANAUG_ACCESS_LOG": "false", **threads.get(name[-1], {})}
        command = [sys.executable, "-m", "ganaug.cli", "serve", "--port", str(port),
                   "--no-worker", "--workers", str(count)]  # fmt: skip
        servers.append(Variant(f"workers{name}", port, env, command=command))
        counts.append(count)
    one = f"/v1/models/{model_id}/samples?n=1&class=3&format=png"
    grid = f"/v1/models/{model_id}/samples?n=64&class=0&seed=1"
    tests = {  # (path, clients, keep-alive)
        "healthz": ("/healthz", 8, True),
        "one8": (one, 8, True),
        "one8new": (one, 8, False),
        "grid8": (grid, 8, True),
        "grid1": (grid, 1, True),
    }
    rows: dict[str, list[dict]] = {server.name: [] for server in servers}
    try:
        for server in servers:
            started = server.start(data_dir)
            print(f"{server.name}: /healthz answered {started:.1f} s after start", flush=True)
        for round_ in range(args.rounds):
            row_of = {server.name: {"load": os.getloadavg()[0]} for server in servers}
            for key, (path, clients, keep_alive) in tests.items():
                for server, count in zip(servers, counts, strict=True):
                    before = requests_by_process(server.url) if count > 1 else Counter()
                    result = load_test(server.port, path, clients, args.seconds, keep_alive)
                    if count > 1:
                        took = requests_by_process(server.url) - before
                        result["spread"] = sorted(took.values(), reverse=True)
                    row_of[server.name][key] = result
            for server in servers:
                row = row_of[server.name]
                rows[server.name].append(row)
                print(
                    f"round {round_} {server.name:9s} healthz x8 {row['healthz']['rps']:6.0f}/s"
                    f"{spread(row['healthz'])}  n=1 x8 {row['one8']['rps']:5.0f}/s p99 "
                    f"{row['one8']['p99_ms']:5.1f} ms{spread(row['one8'])}  n=1 x8 new "
                    f"connections {row['one8new']['rps']:5.0f}/s{spread(row['one8new'])}  grid x8 "
                    f"{row['grid8']['rps']:5.1f}/s{spread(row['grid8'])}  grid x1 p50 "
                    f"{row['grid1']['p50_ms']:6.1f} ms  load {row['load']:.1f}",
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
    base = servers[0].name
    print(f"\nmedians over rounds of each round's ratio against {base}; {load()}")
    for server in servers[1:]:
        mine, theirs = rows[server.name], rows[base]
        print(
            f"  {server.name} vs {base}: healthz x8 req/s "
            f"{paired_ratio(mine, theirs, 'healthz', 'rps'):.2f}x, n=1 x8 req/s "
            f"{paired_ratio(mine, theirs, 'one8', 'rps'):.2f}x, n=1 x8 new connections "
            f"{paired_ratio(mine, theirs, 'one8new', 'rps'):.2f}x, grid x8 req/s "
            f"{paired_ratio(mine, theirs, 'grid8', 'rps'):.2f}x, grid x1 p50 speed "
            f"{1 / paired_ratio(mine, theirs, 'grid1', 'p50_ms'):.2f}x"
        )


def spread(result: dict) -> str:
    """How a multi-process server's processes shared a test's requests, e.g. " [412/388]"."""
    shares = result.get("spread")
    return f" [{'/'.join(f'{n:.0f}' for n in shares)}]" if shares else ""


def paired_ratio(rows: list[dict], reference: list[dict], key: str, sub: str) -> float:
    """The median over rounds of row[key][sub] / the same round's reference[key][sub]."""
    pairs = zip(rows, reference, strict=True)
    return statistics.median(x[key][sub] / y[key][sub] for x, y in pairs)


def cold_starts(data_dir: Path, model_id: str, main_dir: Path, attempts: int = 5) -> None:
    """First grid request of a fresh server against the median of its next 5, alternating
    (a 2x2 of the two start-up warm-ups): this code (routes built, models warmed), this code
    with GANAUG_WARM_MODELS=0 (routes only), main's code (models only) and main's with
    GANAUG_WARM_MODELS=0 (nothing). Each request opens a new connection, as a new user's
    does, from one client made beforehand: httpx.get's own set-up (50-100 ms at load 6-8)
    would add to both sides of the ratio."""
    grid = f"/v1/models/{model_id}/samples?n=64&class=0&seed=1"
    variants = {
        "this": (ROOT, {}),
        "routes only": (ROOT, {"GANAUG_WARM_MODELS": "0"}),
        "models only": (main_dir, {}),
        "nothing": (main_dir, {"GANAUG_WARM_MODELS": "0"}),
    }
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url="http://127.0.0.1:8820", limits=fresh, timeout=60) as client:
        for _ in range(attempts):
            for name, (code_dir, env) in variants.items():
                variant = Variant(name.replace(" ", "-"), 8820, env, code_dir=code_dir)
                variant.start(data_dir)
                try:
                    times = [
                        timed(lambda: client.get(grid).raise_for_status(), 1) for _ in range(6)
                    ]
                finally:
                    variant.stop()
                rest = statistics.median(times[1:])
                ratios[name].append(times[0] / rest)
                print(
                    f"{name:11s}: first {1000 * times[0]:.0f} ms, then {1000 * rest:.0f} ms: "
                    f"{times[0] / rest:.2f}x; {load()}",
                    flush=True,
                )
    for name, values in ratios.items():
        print(
            f"cold/warm {name:11s}: median {statistics.median(values):.2f}x, "
            f"range {min(values):.2f}-{max(values):.2f}x over {len(values)} starts"
        )


def rss(data_dir: Path, main_dir: Path) -> None:
    """Peak RSS of a fresh server after one archive of per_class 1000, then 20000, of a
    2-class model (40,000 synthetic images), for this code and main's."""
    model_id = build_model(data_dir, num_classes=2)
    for code_dir in (ROOT, main_dir):
        for per_class in (1000, 20000):
            limits = {"GANAUG_MAX_ARCHIVE_IMAGES": str(per_class * 2)}
            variant = Variant(f"rss{per_class}", 8810, limits, code_dir=code_dir)
            variant.start(data_dir)
            before = variant.peak_rss_mb()
            try:
                rate = archive_rate(variant.url, model_id, per_class, classes=2)
                print(
                    f"{code_dir}: per_class {per_class}: peak RSS {variant.peak_rss_mb():.0f} MB "
                    f"(after start {before:.0f} MB), {rate:.0f} img/s, {load()}",
                    flush=True,
                )
            finally:
                variant.stop()


if __name__ == "__main__":
    main()
