"""What the API answers, as pydantic models: one description for handlers, client, CLI and renderers.

The API handlers validate every JSON answer through these models (``api_method(response=...)``),
:mod:`jupyter_bai.api.openapi` writes ``openapi.yaml`` from them, the client returns them, the
CLI prints them with ``--json`` and :mod:`jupyter_bai.render` draws them.

**Mapping access.** Every model also behaves as a read-only mapping of what the wire carried, so
code written against the old dict answers keeps working: ``info["status"]``, ``info.get("exit_code")``,
``"result" in done``, ``dict(info)``, ``{**info}``, ``json.dumps(to_jsonable(info))`` and
``info == {"id": ..., ...}`` (equal to the JSON object it was parsed from). Attribute access
(``info.status``) is the typed way. Models are immutable in spirit: build a new one with
``model_copy(update=...)`` rather than assigning keys.

Models marked *loose* accept fields they do not name (``additionalProperties: true``), so an
engine that adds a field does not break older clients.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from jupyter_bai.spec.vfolder import FileEntry as _FileEntry
from jupyter_bai.spec.vfolder import VFolderInfo as _VFolderInfo

__all__ = [
    "ApiModel",
    "AskRequest",
    "AssistantAnswer",
    "AssistantChange",
    "AssistantSources",
    "DeleteSourceQuery",
    "DestroyQuery",
    "DownloadQuery",
    "ErrorBody",
    "Event",
    "EventsQuery",
    "ExecMessage",
    "ExecRequest",
    "FileEntry",
    "FileList",
    "FilesQuery",
    "ImageInfo",
    "ImageList",
    "Interrupted",
    "LearnRequest",
    "LogsQuery",
    "LogsText",
    "Metrics",
    "MkdirRequest",
    "MoveRequest",
    "PipelineJobInfo",
    "PipelineJobList",
    "PipelineStatusChange",
    "PipelineTaskInfo",
    "Resources",
    "RmRequest",
    "RunMessage",
    "AutoscaleQuery",
    "AutoscaleRuleInfo",
    "RouteInfo",
    "ScalingDecision",
    "RunRequest",
    "ScaleRequest",
    "ServiceInfo",
    "DeployCheck",
    "DeployInfo",
    "DeployedEndpoint",
    "ServiceVersion",
    "ServiceVersions",
    "ServiceList",
    "ServiceLogsQuery",
    "ServiceToken",
    "SessionInfo",
    "SessionList",
    "SessionsQuery",
    "StreamMessage",
    "TokenRequest",
    "UploadQuery",
    "VFolderInfo",
    "VFolderList",
    "to_jsonable",
]

SessionStatusName = Literal[
    "PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATING", "TERMINATED", "ERROR", "CANCELLED"
]
Decimal = str  # slots travel as decimal strings so fractions stay exact


class ApiModel(BaseModel):
    """Base of every answer: typed attributes plus read-only mapping access (see module doc)."""

    model_config = ConfigDict(use_enum_values=True, populate_by_name=True, protected_namespaces=())

    # -- mapping protocol over the fields the wire carried (set fields and extras)

    def keys(self) -> list[str]:
        """Names of the fields present in the answer (aliases where a field has one)."""
        names = []
        for name in self.model_fields_set:
            field = type(self).model_fields.get(name)
            names.append(field.alias if field is not None and field.alias else name)
        order = {n: i for i, n in enumerate(self._wire_order())}
        extra = list((self.__pydantic_extra__ or {}).keys())
        return sorted(names, key=lambda n: order.get(n, len(order))) + [e for e in extra if e not in names]

    @classmethod
    def _wire_order(cls) -> list[str]:
        return [f.alias or n for n, f in cls.model_fields.items()]

    def _attr(self, key: str) -> str | None:
        fields = type(self).model_fields
        if key in fields:
            return key
        for name, field in fields.items():
            if field.alias == key:
                return name
        return None

    def __getitem__(self, key: str) -> Any:
        attr = self._attr(key)
        if attr is not None:
            return getattr(self, attr)
        extra = self.__pydantic_extra__ or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get``: the value, or ``default`` when absent (or null)."""
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None and default is not None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self[k]) for k in self.keys()]

    def values(self) -> list[Any]:
        return [self[k] for k in self.keys()]

    def to_json(self) -> Any:
        """The JSON object as the API sends it."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BaseModel):
            return super().__eq__(other)
        if isinstance(other, Mapping):
            return bool(self.to_json() == to_jsonable(dict(other)))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


Mapping.register(ApiModel)


class _Loose(ApiModel):
    model_config = ConfigDict(extra="allow")


def to_jsonable(data: Any) -> Any:
    """Models (and containers of them) as plain JSON values; for ``json.dumps``."""
    if isinstance(data, ApiModel):
        return data.to_json()
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True)
    if isinstance(data, Mapping):
        return {str(k): to_jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [to_jsonable(v) for v in data]
    return data


# --------------------------------------------------------------------------- errors


class ErrorBody(ApiModel):
    """Every 4xx/5xx answer: a machine-readable code and one line for people."""

    error: str = Field(
        description="Machine-readable code: invalid-request, insufficient-resources, forbidden, "
        "not-found, conflict, invalid-state, quota-exceeded, runtime-unavailable.",
        examples=["not-found"],
    )
    message: str = Field(description="One line for people.", examples=["no such session 'exp9'"])


# --------------------------------------------------------------------------- node


class NodeGpu(_Loose):
    index: int
    name: str
    memory: int = Field(description="bytes")
    uuid: str | None = None
    source: str = Field(description="`nvml`, or `fake` for configured test GPUs.")


class Node(_Loose):
    hostname: str
    cpu_count: int
    mem_total: int = Field(description="bytes")
    gpus: list[NodeGpu] = Field(default_factory=list)
    mps_available: bool = False


class GpuUsage(_Loose):
    index: int
    name: str
    memory: int
    source: str
    shares_used: Decimal
    shares_free: Decimal
    sessions: list[str] = Field(description="Names of the sessions holding (part of) this GPU.")


class RuntimeInfo(_Loose):
    name: str = Field(examples=["local"])
    available: bool
    sandbox: str | None = Field(default=None, description="`bwrap`, `none` or `docker`.")
    notes: list[str] = Field(default_factory=list, description="What this runtime cannot enforce here, in words.")


class Resources(_Loose):
    """Node capacity, used and free slots (decimal strings; `mem` in bytes), GPUs, runtimes."""

    node: Node
    capacity: dict[str, Decimal]
    used: dict[str, Decimal]
    free: dict[str, Decimal]
    gpus: list[GpuUsage]
    fractional_gpu_limit: str = Field(default="none", description="`enforced (MPS)`, `advisory`, or `none` (no GPU).")
    runtimes: list[RuntimeInfo]
    pending: int = Field(description="Sessions waiting for resources.")


class ImageInfo(ApiModel):
    name: str = Field(description="Reference for `session create` (`repo:tag`).")
    runtime: str = Field(description="`local` or `docker`.")
    id: str | None = None
    size: int | None = Field(default=None, description="Bytes.")
    created: str | None = None
    min_mem: str | None = Field(default=None, description="`ai.backend.resource.min.mem` label.")
    service_ports: str | None = Field(default=None, description="`ai.backend.service-ports` label.")


class ImageList(ApiModel):
    images: list[ImageInfo]
    notes: list[str] = Field(description="Why Docker images are missing (daemon not answering, runtime off).")


class Metrics(_Loose):
    """The engine's metrics snapshot (loose: its fields follow the collector)."""


# --------------------------------------------------------------------------- sessions


class MountInfo(ApiModel):
    source: str = Field(description="VFolder name.")
    target: str = Field(description="Path inside the session (default `/home/work/NAME`).")
    perm: Literal["rw", "ro"] = "rw"
    subpath: str | None = Field(default=None, description="A directory inside the folder "
                                "(pipeline tasks' `/pipeline/*` mounts).")


class Allocation(_Loose):
    devices: list[int] = Field(default_factory=list, description="Every GPU index the session touches.")
    whole: list[int] = Field(default_factory=list, description="GPUs held whole (cuda.device).")
    shares: dict[str, Decimal] = Field(
        default_factory=dict, description='Fraction held per GPU index (cuda.shares), e.g. {"0": "0.5"}.'
    )


class StatusChange(ApiModel):
    status: SessionStatusName
    at: str | None = Field(default=None, description="ISO 8601 time.")
    info: str | None = None


class BindInfo(ApiModel):
    source: str = Field(description="Host directory (under the Jupyter server's root_dir).")
    target: str = Field(description="Path inside the session.")
    perm: Literal["rw", "ro"] = "rw"


class SessionInfo(_Loose):
    """A compute session as the engine reports it."""

    id: str
    name: str
    status: SessionStatusName
    status_info: str | None = Field(default=None, description="Why it is in this status (e.g. user-requested).")
    result: Literal["undefined", "success", "failure"] = "undefined"
    exit_code: int | None = None
    image: str
    type: Literal["interactive", "batch", "inference"]
    command: str | None = None
    resources: dict[str, Decimal]
    mounts: list[MountInfo] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="The session's extra environment; values of names containing KEY, TOKEN, SECRET, "
        "PASSWORD, CREDENTIAL or CONNECTION are shown as `***`.",
    )
    idle_timeout: float | None = Field(default=None, description="seconds")
    max_lifetime: float | None = Field(default=None, description="seconds")
    runtime: str | None = Field(default=None, examples=["local"])
    sandbox: str | None = Field(default=None, description="`bwrap`, `none` or `docker`.")
    allocation: Allocation | None = Field(default=None, description="GPUs held (null before scheduling).")
    created_at: str | None = Field(default=None, description="ISO 8601 time.")
    started_at: str | None = None
    terminated_at: str | None = None
    status_history: list[StatusChange] = Field(default_factory=list)
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Free-form tags; kernel sessions carry `kernel-id`, `kernelspec` and `notebook`.",
    )
    binds: list[BindInfo] = Field(
        default_factory=list,
        description="Host directories bound in (only under the Jupyter server's root_dir).",
    )
    ports: dict[str, int] = Field(
        default_factory=dict,
        description="Container port -> host port published on 127.0.0.1 (Docker sessions).",
    )

    @property
    def is_terminal(self) -> bool:
        """True once the session is over for good (TERMINATED, ERROR, CANCELLED)."""
        return self.status in ("TERMINATED", "ERROR", "CANCELLED")


class SessionList(ApiModel):
    sessions: list[SessionInfo] = Field(description="Newest first.")


class LogsText(ApiModel):
    logs: str


class PipelineTaskInfo(_Loose):
    name: str
    status: Literal["WAITING", "RUNNING", "RETRYING", "SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"]
    status_info: str | None = None
    attempts: int = Field(description="Attempts started so far (retries included).")
    exit_code: int | None = Field(default=None, description="Of the last attempt's command.")
    session_id: str | None = Field(default=None, description="The last attempt's batch session.")
    cached: bool = False
    depends_on: list[str] = Field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    duration: float | None = Field(default=None, description="Seconds, all attempts together.")


class PipelineStatusChange(ApiModel):
    task: str | None = Field(default=None, description="The task; null for the job itself.")
    status: str
    at: str | None = None
    info: str | None = None


class PipelineNotification(ApiModel):
    """One webhook delivery of a job's end (an outbox row: retried until a 2xx)."""

    webhook: str = Field(description="The receiver's scheme and host (its path may be a secret).")
    status: Literal["PENDING", "DELIVERED", "GAVE_UP"]
    attempts: int
    last_error: str | None = None
    dedupe_key: str = Field(description="Sent as the `Idempotency-Key` header on every attempt.")
    delivered_at: str | None = None


class PipelineJobInfo(_Loose):
    """A pipeline job: one run of a pipeline file, its tasks as they stand."""

    id: str
    name: str = Field(description="The pipeline's name.")
    status: Literal["RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"]
    status_info: str | None = None
    folder: str = Field(description="The vfolder holding every task's outputs (`tasks/T/outputs`).")
    engine: str = Field(default="local", description=(
        "Where its tasks run: `local`, or the Backend.AI engine whose cluster holds the folder."))
    created_at: str | None = None
    finished_at: str | None = None
    tasks: list[PipelineTaskInfo]
    status_history: list[PipelineStatusChange] | None = None
    notifications: list[PipelineNotification] | None = Field(
        default=None, description="Deliveries of the job's end to its `notify` webhooks.")


class PipelineJobList(ApiModel):
    jobs: list[PipelineJobInfo] = Field(description="Newest first.")


class Interrupted(ApiModel):
    interrupted: bool = Field(description="Whether something was running and got interrupted.")


class StreamMessage(ApiModel):
    """Output of an exec/run stream, as it is printed."""

    type: Literal["stream"] = "stream"
    name: Literal["stdout", "stderr"] = "stdout"
    text: str


class ExecDone(ApiModel):
    type: Literal["done"] = "done"
    exit_code: int


class StreamError(_Loose):
    """An engine failure after a stream started (the status line was already 200)."""

    type: Literal["done"] = "done"
    status: Literal["error"] = "error"
    ename: str = Field(description="An error code.")
    evalue: str = ""


class RunResult(ApiModel):
    type: Literal["result"] = "result"
    text: str = Field(description="The repr of the cell's last expression.")


class RunDone(_Loose):
    """The end of a run: ``ok``, or ``error`` with the remote exception (and ``result``, client side)."""

    type: Literal["done"] = "done"
    status: Literal["ok", "error"]
    ename: str | None = Field(default=None, description="Exception class name (status error).")
    evalue: str | None = None
    traceback: list[str] | None = None
    result: str | None = Field(default=None, description="Client side: the repr of the last expression.")


class ExecMessage(_Loose):
    """One NDJSON message of an exec stream: ``stream``, then ``done`` with ``exit_code``
    (or ``done`` with ``status: error`` and ``ename``/``evalue`` when the engine failed)."""

    type: Literal["stream", "done"]
    name: Literal["stdout", "stderr"] | None = None
    text: str | None = None
    exit_code: int | None = None
    status: str | None = None
    ename: str | None = None
    evalue: str | None = None

    json_schema_one_of: ClassVar[tuple[type[ApiModel], ...]] = (StreamMessage, ExecDone, StreamError)


class RunMessage(_Loose):
    """One NDJSON message of a run stream: ``stream`` pieces, an optional ``result``, then ``done``."""

    type: Literal["stream", "result", "done"]
    name: Literal["stdout", "stderr"] | None = None
    text: str | None = None
    status: str | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] | None = None

    json_schema_one_of: ClassVar[tuple[type[ApiModel], ...]] = (StreamMessage, RunResult, RunDone, StreamError)


# --------------------------------------------------------------------------- vfolders


class VFolderInfo(_VFolderInfo, ApiModel):
    """A virtual folder with its current usage."""

    model_config = ConfigDict(title="VFolder")


class FileEntry(_FileEntry, ApiModel):
    """One entry of a folder listing; ``path`` is relative to the folder root."""


class VFolderList(ApiModel):
    vfolders: list[VFolderInfo]


class FileList(ApiModel):
    files: list[FileEntry]


# --------------------------------------------------------------------------- events


class Event(_Loose):
    """One change notification. ``kind`` is ``session``, ``vfolder``, ``resources``,
    ``pipeline-job`` (``name`` is the job id; ``status`` the job's), ``pipeline-task`` (``name``
    is ``JOB/TASK``; with ``job_id``, ``task``, ``status``, ``attempts``, ``exit_code``) … or
    ``resync``: the stream skipped events (the client was too slow or asked for trimmed history);
    reload what you show (``list_sessions()``, ``list_vfolders()``, ``resources()``) and carry on
    from ``seq``."""

    seq: int | str | None = None
    at: float | None = Field(default=None, description="Unix time (seconds).")
    kind: str | None = Field(default=None, examples=["session", "vfolder", "resync"])
    name: str | None = None
    status: str | None = Field(default=None, description="A session's, pipeline job's or task's status.")
    action: str | None = Field(default=None, description="vfolder events: created, deleted, uploaded, ...")
    event: str | None = Field(default=None, description="Client side: the SSE event type.")

    @property
    def is_resync(self) -> bool:
        """True for the ``resync`` marker: events were missed, reload the snapshot."""
        return self.kind == "resync"


# --------------------------------------------------------------------------- assistant


class AssistantSource(_Loose):
    title: str
    ref: str
    kind: str = Field(examples=["operation", "client", "cli", "markdown", "python", "notebook"])
    method: str | None = None
    path: str | None = None
    operation_id: str | None = None
    score: float


class AssistantAnswer(_Loose):
    """An answer with its sources and runnable examples (loose: modes add fields)."""

    answer: str = Field(description="Markdown.")
    sources: list[AssistantSource] = Field(default_factory=list)
    examples: dict[str, Any] = Field(
        default_factory=dict, description="`magic`, `client` and `http` examples of the best operation."
    )
    abstained: bool = Field(default=False, description="True when nothing relevant was found.")
    mode: str | None = Field(default=None, examples=["extractive", "llm", "fallback"])
    note: str | None = Field(default=None, description="Why the LLM was not used (fallback).")


class AssistantSources(_Loose):
    """What the assistant has indexed (loose)."""

    sources: list[dict[str, Any]] = Field(default_factory=list)


class AssistantChange(_Loose):
    """What was learned or forgotten (loose)."""


# --------------------------------------------------------------------------- requests
# Request bodies and query strings of the routes whose parsing lives in the handlers; the
# session and vfolder create bodies are ``SessionSpec`` and ``VFolderCreate`` (spec/).


# The strict request models live beside the rules they check (spec/session.py, spec/vfolder.py,
# spec/assistant.py); the handlers declare them and openapi.yaml is generated from them.
from jupyter_bai.spec.assistant import AskRequest, AskTurn as HistoryTurn, LearnRequest  # noqa: E402,F401
from jupyter_bai.spec.session import ExecRequest, RunRequest  # noqa: E402,F401
from jupyter_bai.spec.vfolder import MkdirRequest, MoveRequest  # noqa: E402,F401
from jupyter_bai.spec.vfolder import RemoveRequest as RmRequest  # noqa: E402,F401


# Query strings (documented as parameters, one per field).


class SessionsQuery(BaseModel):
    status: str | None = Field(
        default=None,
        description="Only sessions in this status; several may be given comma-separated (`RUNNING,PENDING`).",
        examples=["RUNNING"],
    )
    all: bool | None = Field(default=None, description="Accepted for Backend.AI compatibility; finished sessions are always listed.")


class DestroyQuery(BaseModel):
    forced: bool = Field(default=False, description="Kill at once instead of SIGTERM, grace period, SIGKILL.")


class LogsQuery(BaseModel):
    tail: int | None = Field(default=None, ge=0, description="Only the last N lines.")
    follow: bool = Field(default=False, description="Stream the log as text/plain (chunked) until the session ends.")


class FilesQuery(BaseModel):
    path: str = Field(
        default="",
        description="Directory relative to the folder root (default the root). Paths may not escape the folder.",
    )


class UploadQuery(BaseModel):
    path: str = Field(description="Destination file path relative to the folder root.")
    parents: bool = Field(default=False, description="Create missing parent directories.")


class DownloadQuery(BaseModel):
    path: str = Field(description="File path relative to the folder root.")


class EventsQuery(BaseModel):
    since: int | None = Field(default=None, ge=0, description="Replay events with a larger sequence number first.")


class DeleteSourceQuery(BaseModel):
    source: str = Field(description="The learned path, as listed by the sources listing.")


# --------------------------------------------------------------------------- model services

RouteStatusName = Literal["PROVISIONING", "HEALTHY", "UNHEALTHY", "TERMINATING", "FAILED_TO_START"]
ServiceStatusName = Literal[
    "PROVISIONING", "HEALTHY", "DEGRADED", "UNHEALTHY", "FAILED", "TERMINATING", "STOPPED"
]


class RouteInfo(_Loose):
    """One route of a service: an inference session behind the endpoint."""

    id: str
    status: RouteStatusName
    session_id: str | None = Field(default=None, description="null when it could not be created")
    session_name: str | None = None
    port: int = Field(description="where the route listens on 127.0.0.1 (0: never started)")
    status_info: str | None = Field(default=None, description="why (FAILED_TO_START: last log lines)")
    version: int = Field(default=0, description="the deployed version it runs (0: not deployed)")


class AutoscaleRuleInfo(_Loose):
    id: str
    metric: Literal["inflight", "rps", "gpu_util"]
    comparator: Literal["gt", "lt"]
    threshold: float
    step: int
    cooldown: float
    min_replicas: int
    max_replicas: int
    last_fired_at: float | None = None


class ScalingDecision(_Loose):
    at: float
    rule: str
    metric: str
    value: float
    comparator: str
    threshold: float
    from_: int = Field(alias="from")
    to: int


class AutoscaleQuery(BaseModel):
    rule: str = Field(description="the rule's id (from `service info`)")


class ServiceInfo(_Loose):
    """A model service: its routes, their health, and the endpoint that balances over them."""

    id: str
    name: str
    status: ServiceStatusName
    status_info: str | None = None
    endpoint: str = Field(description="`http://127.0.0.1:<port>/services/<name>/`")
    public: bool = Field(description="true: no token needed")
    replicas: int
    image: str
    model_folder: str
    runtime_variant: str
    routes: list[RouteInfo] = Field(default_factory=list)
    created_at: float | None = None
    autoscaling_rules: list[AutoscaleRuleInfo] = Field(default_factory=list)
    scaling_decisions: list[ScalingDecision] = Field(
        default_factory=list, description="the autoscaler's decisions, newest first (last 20)")
    version: int = Field(default=0, description="the current deployed version (0: not deployed)")

    @property
    def is_settled(self) -> bool:
        """Every route HEALTHY, or one failed to start (what ``--wait`` waits for)."""
        statuses = [r.status for r in self.routes if r.status != "TERMINATING"]
        if "FAILED_TO_START" in statuses or self.status == "FAILED":
            return True
        return len(statuses) >= self.replicas and all(s == "HEALTHY" for s in statuses)


class DeployedEndpoint(ApiModel):
    path: str
    method: Literal["GET", "POST"]
    name: str = Field(description="the Python function")


class DeployCheck(ApiModel):
    """What a notebook would serve, and why it cannot be deployed as it is."""

    notebook: str
    hash: str = Field(description="`sha256:<hex>` of the captured code")
    endpoints: list[DeployedEndpoint]
    problems: list[str] = Field(description="empty: deployable")
    warnings: list[str] = Field(default_factory=list, description="skipped magics and shell escapes")


class DeployInfo(ApiModel):
    """A deploy (or rollback) accepted: routes roll over in the background."""

    service: str
    version: int
    hash: str
    endpoint: str = Field(description="`http://127.0.0.1:<port>/services/<name>/`")
    token: str | None = Field(description="a bearer token (1 day) when the service is private")
    endpoints: list[DeployedEndpoint]


class ServiceVersion(ApiModel):
    version: int
    hash: str
    notebook: str
    created_at: float
    current: bool


class ServiceVersions(ApiModel):
    versions: list[ServiceVersion]


class ServiceList(ApiModel):
    services: list[ServiceInfo]


class ServiceToken(ApiModel):
    token: str = Field(description="shown once; the engine keeps only its hash")
    expires_at: float = Field(description="Unix time (seconds)")


class ScaleRequest(BaseModel):
    replicas: int = Field(ge=0, le=64, description="the new number of routes")


class TokenRequest(BaseModel):
    ttl: str = Field(default="1d", description="lifetime: seconds, or 30m, 12h, 1d, 2w")


class ServiceLogsQuery(BaseModel):
    tail: int | None = Field(default=None, description="last N lines of each route's log")
