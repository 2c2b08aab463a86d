"""Settings, read once from ENVHUB_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.images import DOCKER_HUB
from shared.domain.outbound import ALLOWLIST_SETTING, Allowlist, ip_literal, split_host
from shared.domain.schedule import DEFAULT_SCAN_SCHEDULE, parse_schedule

EMULATOR_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_emulator(url: str | None) -> bool:
    """Whether a service URL points at an emulator on this machine (keys are accepted only there)."""
    return url is not None and urlparse(url if "://" in url else f"http://{url}").hostname in EMULATOR_HOSTS


class Settings(BaseSettings):
    """Everything envhub can be told at start-up; each adapter is chosen from these once."""

    model_config = SettingsConfigDict(env_prefix="ENVHUB_", extra="ignore")

    data_dir: Path = Path(".envhub")
    curated_dir: Path | None = None
    max_upload_bytes: int = 256 * 1024 * 1024  # a compressed build context
    max_context_bytes: int = 2 * 1024 * 1024 * 1024  # the same, expanded
    max_context_files: int = 50_000
    max_body_bytes: int = 1024 * 1024  # a JSON body of any route but the context upload
    max_json_depth: int = 100  # bracket nesting of those bodies, checked before parsing
    context_gc_hours: float = 24.0  # blobs no manifest names, older than this, are removed (refused uploads)
    log_level: str = "INFO"

    # The store: SQLite under data_dir, or Cosmos DB (containers as infra/ declares them).
    store: Literal["sqlite", "cosmos"] = "sqlite"
    cosmos_endpoint: str | None = None
    cosmos_database: str = "envhub"
    cosmos_key: str | None = None  # an emulator's key; in Azure the identity signs in
    cosmos_create: bool = False  # create the database and containers (emulators only; infra/ does it in Azure)

    # Build contexts: files under data_dir, or Blob Storage.
    contexts: Literal["file", "blob"] = "file"
    blob_account_url: str | None = None
    blob_container: str = "build-contexts"
    # Azure ML's SDK uploads build contexts to the workspace's datastore: a container per workspace in the same
    # account, named `<prefix>-<workspace>-<hash>`. The storage suffix it reports is derived from the account URL.
    datastore_container_prefix: str = Field("uploads", pattern=r"^[a-z0-9]{3,20}$")
    datastore_endpoint: str | None = None

    # The build queue: SQLite under data_dir, or Azure Storage queues.
    queue: Literal["sqlite", "storage"] = "sqlite"
    queue_account_url: str | None = None
    build_queue: str = "build-requests"
    # Work handed in as messages (schemas envhub.registration/1 and envhub.job-submission/1), on the same backend.
    # Whoever may send to these queues acts as a contributor in every workspace the messages name.
    registration_queue: str = "environment-registrations"
    submission_queue: str = "job-submissions"
    max_message_bytes: int = Field(64 * 1024, ge=1024)  # Azure Storage's own limit for a message
    # Webhooks replies may be posted to: comma-separated host[:port] or `*.suffix` (https only; loopback and private
    # addresses only as IP literals written here). Unset: replies go to queues only.
    reply_webhooks: str = ""
    # An emulator's connection string (Azurite) for blobs and queues; in Azure the identity signs in.
    storage_connection_string: str | None = None
    storage_create: bool = False  # create queues and containers (emulators only; infra/ does it in Azure)

    # The workspace's container registry: host[:port]. Unset, `envhub serve` runs a local one.
    registry: str | None = None
    registry_kind: Literal["oci", "acr"] = "oci"
    registry_port: int = 5000
    # Comma-separated registries reached over plain http without TLS: loopback IP literals only (127.0.0.1:5001);
    # the local registry is always one. Anything else is refused at start-up: TLS is verified everywhere else.
    insecure_registries: str = ""
    # Registry lookups: a total deadline each, and a breaker per host that answers 503 at once after this many
    # failures in a row, until the cooldown lets one probe through.
    registry_deadline_seconds: float = Field(3.0, gt=0)
    registry_breaker_failures: int = Field(5, ge=1)
    registry_breaker_cooldown_seconds: float = Field(10.0, gt=0)
    unqualified_registry: str | None = None  # where `FROM name` goes; the local registry when it runs

    # The builder: buildah on this machine, or ACR Tasks (serverless, or a workspace's agent pool).
    builder: Literal["buildah", "acr_tasks"] = "buildah"
    acr_resource_id: str | None = None  # /subscriptions/…/registries/<name>: where ACR Tasks runs
    arm_endpoint: str = "https://management.azure.com"  # tests point it at a recording stand-in
    build_compute: dict[str, str] = {}  # workspace -> agent pool, for network-restricted registries
    build_timeout_seconds: float = 3600.0
    build_parallel: int = 2  # buildah runs at once on this machine; more wait their turn
    build_check_seconds: float = 0.25  # first check of a running build; doubles up to the maximum
    build_check_max_seconds: float = 1.0  # polling buildah is cheap: a finished build is seen within a second
    build_stale_seconds: float = 120.0  # a build untouched this long has lost its messages: recover it

    # The patch watch. PATCH_SCAN_SCHEDULE has no prefix: the Functions timer reads the same app setting.
    patch_scan_schedule: str = Field(DEFAULT_SCAN_SCHEDULE,
                                     validation_alias=AliasChoices("PATCH_SCAN_SCHEDULE", "patch_scan_schedule"))
    scan_queue: str = "scan-requests"  # one message per base repository of a scan
    scan_webhook: str | None = None  # where scan reports go
    scan_webhook_format: Literal["json", "teams"] = "json"
    auto_rebuild: bool = True  # rebuild at once when a mutable base moved
    rebuild_policy: dict[str, bool] = {}  # per workspace, overriding auto_rebuild
    # The registries envhub, its scan and its builds may contact, comma-separated host[:port] or `*.suffix`;
    # unset: mcr.microsoft.com, docker.io, nvcr.io, ghcr.io; `*`: any at a public address. The workspace's own
    # registry (and ENVHUB_UNQUALIFIED_REGISTRY) are always on it. References off it are refused when registered.
    allowed_registries: str | None = None

    # Who may call: bearer tokens envhub issues (stored hashed), or Entra ID through App Service Authentication
    # (X-MS-CLIENT-PRINCIPAL, trusted only in that mode). Roles come from app roles `envhub.admin` and
    # `envhub.<role>@<workspace>`, or from group object ids mapped here to `admin` or `<role>@<workspace>`.
    auth: Literal["tokens", "entra"] = "tokens"
    entra_groups: dict[str, str] = {}

    # Azure ML's SDK (ARM routes under /api/subscriptions/...): the subscription and resource group its MLClient
    # must name (unset: any is accepted and ignored; the workspace is envhub's), and the page size of its lists.
    arm_subscription: str | None = None
    arm_resource_group: str | None = None
    arm_page_size: int = Field(100, ge=1, le=1000)

    worker: bool = True  # drain the build queue inside this process
    emulators: bool = False  # `envhub serve --emulators`: start Azurite and a Cosmos DB server, use them
    # With --emulators and --tls: Azure ML's SDK uploads to https://<account>.blob.<this>, reached through a local
    # HTTPS proxy (HTTPS_PROXY) on this port (0: a free one), which hands them to Azurite.
    local_storage_suffix: str = Field("envhub.test", pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    blob_proxy_port: int = Field(0, ge=0, le=65535)
    queue_visibility_seconds: float = 60.0
    queue_max_attempts: int = 5
    queue_backoff_seconds: float = 2.0

    @field_validator("patch_scan_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        """A malformed schedule stops the start, with the reason (both homes read the same expression)."""
        parse_schedule(value)
        return value

    @model_validator(mode="after")
    def _complete(self) -> Settings:
        """Each Azure adapter needs its endpoint; keys and connection strings only reach emulators."""
        needs = {"cosmos": (self.store == "cosmos", "ENVHUB_COSMOS_ENDPOINT", self.cosmos_endpoint),
                 "blob": (self.contexts == "blob", "ENVHUB_BLOB_ACCOUNT_URL",
                          self.blob_account_url or self.storage_connection_string),
                 "storage": (self.queue == "storage", "ENVHUB_QUEUE_ACCOUNT_URL",
                             self.queue_account_url or self.storage_connection_string),
                 "acr_tasks": (self.builder == "acr_tasks", "ENVHUB_ACR_RESOURCE_ID", self.acr_resource_id)}
        for kind, (chosen, setting, value) in needs.items():
            if chosen and not value:
                raise ValueError(f"'{kind}' needs {setting}")
        if self.cosmos_key and not is_emulator(self.cosmos_endpoint):
            raise ValueError("ENVHUB_COSMOS_KEY is accepted only for an emulator endpoint; in Azure the "
                             "managed identity signs in")
        if self.storage_connection_string and not _connection_string_is_local(self.storage_connection_string):
            raise ValueError("ENVHUB_STORAGE_CONNECTION_STRING is accepted only for an emulator (Azurite); in "
                             "Azure the managed identity signs in")
        return self

    @model_validator(mode="after")
    def _outbound(self) -> Settings:
        """The allowlist is well formed, and plain http (no TLS) is only ever spoken to this machine."""
        bad = self.allowed.entry_problems()
        if bad:
            raise ValueError(f"{ALLOWLIST_SETTING}: {', '.join(bad)} is no host[:port] or *.domain entry")
        local = {self.registry_host.lower()} if self.local_registry else set()
        remote = sorted(h for h in self.insecure if h.lower() not in local and not _loopback_literal(h))
        if remote:
            raise ValueError(f"ENVHUB_INSECURE_REGISTRIES: {', '.join(remote)} would be reached without TLS; only "
                             "the local registry and loopback IP addresses (127.0.0.1:PORT, [::1]:PORT) may be")
        return self

    @property
    def allowed(self) -> Allowlist:
        """Registries envhub and its builds may contact; the workspace's own (and the unqualified one) always."""
        return Allowlist.parse(self.allowed_registries, home=(self.registry_host,), also=(self.unqualified_registry,),
                               default_registry=self.default_registry)

    @property
    def webhooks(self) -> frozenset[str]:
        """The hosts replies may be posted to."""
        return frozenset(entry.strip().lower() for entry in self.reply_webhooks.split(",") if entry.strip())

    @property
    def notifier_kind(self) -> str:
        """`webhook` when a scan webhook is set, else `none`."""
        return "none" if self.scan_webhook is None else "webhook"

    @property
    def local_registry(self) -> bool:
        """Whether envhub runs the registry itself."""
        return self.registry is None

    @property
    def registry_host(self) -> str:
        """The registry's host[:port] as image references name it."""
        return self.registry or f"127.0.0.1:{self.registry_port}"

    @property
    def insecure(self) -> frozenset[str]:
        """Registries spoken to over http: the local one, and any named."""
        named = {h.strip() for h in self.insecure_registries.split(",") if h.strip()}
        return frozenset(named | ({self.registry_host} if self.local_registry else set()))

    @property
    def default_registry(self) -> str:
        """The registry of image names without a host."""
        if self.unqualified_registry:
            return self.unqualified_registry
        return self.registry_host if self.local_registry else DOCKER_HUB


def _loopback_literal(registry: str) -> bool:
    try:
        address = ip_literal(split_host(registry)[0])
    except ValueError:
        return False
    return address is not None and address.is_loopback


def _connection_string_is_local(value: str) -> bool:
    parts = dict(p.split("=", 1) for p in value.split(";") if "=" in p)
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        return True
    endpoints = [v for k, v in parts.items() if k.endswith("Endpoint")]
    return bool(endpoints) and all(is_emulator(v) for v in endpoints)
