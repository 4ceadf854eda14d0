"""All configuration, read from the environment (prefix GANAUG_) in this one place."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from limits import parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EMBEDDED_BROKER = "filesystem://"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

# A rate limit in the `limits` library's notation ("30/minute", "5/second;100/hour"); "" = none.
RateLimit = Annotated[str, Field(description="e.g. 30/minute; empty: no limit")]


class Settings(BaseSettings):
    """Service settings. Embedded mode (the default) needs no server: SQLite + filesystem broker."""

    model_config = SettingsConfigDict(env_prefix="GANAUG_", env_file=None, extra="ignore")

    data_dir: Path = Field(Path("ganaug-data"), description="datasets, models, broker queue")
    database_url: str = Field("", description="SQLAlchemy URL; empty: SQLite in data_dir")
    broker_url: str = Field(EMBEDDED_BROKER, description="Celery broker; filesystem:// = embedded")
    host: str = "127.0.0.1"
    port: int = 8000
    serve_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="API processes of `ganaug serve` on one port (docs/serving.md); one "
        "training worker whatever the number",
    )

    # who may call: API keys (`ganaug keys`), tenants, trusted hosts
    default_tenant: str = Field("default", description="the tenant of anonymous requests")
    allow_anonymous: bool | None = Field(
        None,
        description="requests without an API key act as default_tenant; None: only when "
        "bound to a loopback address (true is needed to serve anonymously on any other)",
    )
    trusted_hosts: Annotated[list[str], NoDecode] = Field(
        [],
        description="comma-separated host names accepted besides the bind address and "
        "localhost (*.example.com: its subdomains; *: any)",
    )

    # per-tenant quotas (403 quota_exceeded)
    quota_jobs: int = Field(8, ge=1, description="queued + running trainings and reports")
    quota_datasets: int = Field(100, ge=1, description="stored datasets")
    quota_stored_bytes: int = Field(
        20 * 1024**3, ge=1, description="bytes on disk of the tenant's datasets and models"
    )
    quota_training_cost: int = Field(
        400_000_000,
        ge=1,
        description="queued + running trainings' steps x batch_size x (g_channels + d_channels)",
    )

    # per-key rate limits on the expensive routes (429 rate_limited with Retry-After)
    rate_limit_storage_url: str = Field(
        "memory://", description="limits storage: memory:// (one API process) or redis://..."
    )
    rate_limit_datasets: RateLimit = "20/minute"
    rate_limit_training: RateLimit = "20/minute"
    rate_limit_samples: RateLimit = "120/minute"
    rate_limit_archive: RateLimit = "10/minute"
    rate_limit_classify: RateLimit = "60/minute"
    rate_limit_reports: RateLimit = "10/minute"

    # uploads and ingestion limits
    max_upload_bytes: int = Field(512 * 1024**2, gt=0)
    max_archive_members: int = Field(50_000, gt=0)
    max_uncompressed_bytes: int = Field(2 * 1024**3, gt=0)
    max_compression_ratio: float = Field(200.0, gt=1)
    max_image_pixels: int = Field(4096 * 4096, gt=0)
    default_image_size: int = Field(64, ge=8, le=128)

    # sampling limits
    max_samples: int = Field(1024, gt=0, description="images per samples response, all classes")
    max_archive_images: int = Field(
        50_000, gt=0, description="synthetic images per archive, all classes"
    )
    max_truncation: float = Field(10.0, gt=0)

    # serving speed (docs/serving.md; benchmarks/serving.py measures each)
    ort_threads: int = Field(
        0, ge=0, description="ONNX Runtime intra-op threads per generator session; 0: min(4, cores)"
    )
    ort_spinning: bool = Field(
        False, description="let idle ORT threads spin: faster only on an otherwise idle machine"
    )
    compute_threads: int = Field(
        0, ge=0, description="the gateway's pool for generation and encoding; 0: the cores"
    )
    batch_wait_ms: float | None = Field(
        None,
        ge=0,
        description="dynamic batching: gather concurrent small sample requests of one model "
        "at most this long into one ORT call; 0: off; None: 2 ms for generators on CUDA, off "
        "on CPU (where it did not pay: benchmarks/results/serving.md)",
    )
    batch_max_images: int = Field(
        256, ge=1, description="dynamic batching: images per gathered call (larger ones run alone)"
    )
    png_compress_level: int = Field(
        1, ge=0, le=9, description="zlib level of served PNGs (1: fast; 6: zlib's default)"
    )
    access_log: bool = Field(True, description="uvicorn's access log line per request")
    warm_models: int = Field(
        4, ge=0, description="ORT sessions of the newest succeeded models opened at start-up"
    )

    # classification limits (the upload limits above apply too)
    max_classify_images: int = Field(1024, gt=0, description="images per classify request")

    # logs (core/logs.py)
    log_format: Literal["text", "json"] = Field(
        "text", description="text lines, or one JSON object per line"
    )
    log_level: str = Field("INFO", pattern=r"(?i)^(debug|info|warning|error)$")

    # workers
    visibility_timeout_s: int = Field(
        48 * 3600, gt=0, description="Redis hands an unacked task out again after this long"
    )
    worker_concurrency: int = Field(1, ge=1)
    queue: str = Field("training", min_length=1, description="Celery queue of training jobs")
    progress_interval_s: float = Field(
        1.0, gt=0, description="DB progress writes at most this often"
    )
    cancel_poll_s: float = Field(1.0, gt=0, description="how often training checks for cancel")
    device: str | None = Field(None, description="torch device for training; None = auto")
    task_events: bool = Field(
        False,
        description="workers send task events and the API task-sent events, so Flower sees "
        "each task (docker-compose turns this on); not with the embedded filesystem broker, "
        "which has no broadcast",
    )
    train_compile: bool = Field(
        False,
        description="torch.compile the training forwards on CUDA where no double backward "
        'needs them (docs/training.md, "On a GPU"); no effect on a CPU',
    )

    # job leases (docs/architecture.md, "Jobs: leases and resume")
    lease_s: float = Field(
        45.0, gt=0, description="a job whose worker has not renewed its lease this long is lost"
    )
    lease_heartbeat_s: float = Field(10.0, gt=0, description="how often a worker renews a lease")
    lease_sweep_s: float = Field(
        15.0, gt=0, description="how often each worker re-queues jobs whose lease expired"
    )
    checkpoint_interval_s: float = Field(
        60.0,
        gt=0,
        description="training saves a checkpoint at least this often (and every "
        "checkpoint_every steps of its config): the most work a lost worker costs",
    )
    worker_shutdown_grace_s: float = Field(
        30.0, gt=0, description="a stopping worker checkpoints its job, then exits within this"
    )
    worker_restart_delay_s: float = Field(
        2.0,
        gt=0,
        description="an embedded worker that died is restarted this long after, the delay "
        "doubling (up to 60 s) while it keeps dying within a minute of each start",
    )

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.lease_heartbeat_s * 2 > self.lease_s:
            raise ValueError(
                f"lease_heartbeat_s ({self.lease_heartbeat_s}) must be at most half of lease_s "
                f"({self.lease_s}): a lease must survive a missed heartbeat"
            )
        return self

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("trusted_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    @field_validator(
        "rate_limit_datasets",
        "rate_limit_training",
        "rate_limit_samples",
        "rate_limit_archive",
        "rate_limit_classify",
        "rate_limit_reports",
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        if value:
            parse_many(value)  # ValueError names what it could not read
        return value

    @property
    def loopback(self) -> bool:
        """Whether the API is bound to a loopback address only."""
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def anonymous(self) -> bool:
        """Whether requests without an API key are served (as default_tenant)."""
        return self.loopback if self.allow_anonymous is None else self.allow_anonymous

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith(EMBEDDED_BROKER)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with a driver SQLAlchemy can use (psycopg 3 for PostgreSQL)."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'ganaug.db'}"
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"


@lru_cache
def get_settings() -> Settings:
    return Settings()
