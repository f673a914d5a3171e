"""Model services: the create request, route/service statuses and the runtime variants. Pure.

A variant turns (model definition or not, env, the route's port) into what one route runs: a
shell command line, the port it listens on and its health check. Backend.AI's table (DESIGN.md):
``custom`` (the model folder's ``model-definition.yaml``), ``cmd`` (the image's own command),
``vllm``, ``nim`` and ``notebook``.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InvalidRequest, as_value_error
from .model_definition import HealthCheck, ModelDefinition, PreStartAction
from .mounts import MountSpec, validate_mounts
from .resources import ResourceSlots
from .session import SESSION_NAME_RE, parse_env, spec_error

__all__ = [
    "RouteStatus", "ServiceStatus", "VARIANTS", "ServiceCreate", "RouteLaunch", "plan_route",
    "service_status", "MODEL_MOUNT", "NIM_CACHE", "DOCKER_PORT", "AutoscaleRule",
    "notebook_definition", "NOTEBOOK_RUNTIME", "parse_ttl",
]

MODEL_MOUNT = "/models"
NIM_CACHE = "/opt/nim/.cache"
"""Where NVIDIA's NIM images keep (and look for) their model cache: a ``nim`` route's folder."""
DOCKER_PORT = 8000
"""The port a Docker route listens on inside its container (published on 127.0.0.1)."""
_NAME = re.compile(SESSION_NAME_RE)
VARIANTS = ("custom", "cmd", "vllm", "nim", "notebook")


class RouteStatus(str, Enum):
    PROVISIONING = "PROVISIONING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    TERMINATING = "TERMINATING"
    FAILED_TO_START = "FAILED_TO_START"

    def __str__(self) -> str:
        return self.value


class ServiceStatus(str, Enum):
    PROVISIONING = "PROVISIONING"
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"
    FAILED = "FAILED"
    TERMINATING = "TERMINATING"
    STOPPED = "STOPPED"

    def __str__(self) -> str:
        return self.value


def service_status(routes: list[str], replicas: int, terminating: bool = False) -> ServiceStatus:
    """A service's status from its live routes' statuses."""
    R = RouteStatus
    if terminating:
        return ServiceStatus.TERMINATING
    live = [r for r in routes if r != R.TERMINATING.value]
    healthy = sum(r == R.HEALTHY.value for r in live)
    if replicas == 0 and not live:
        return ServiceStatus.STOPPED
    if healthy and healthy >= replicas:
        return ServiceStatus.HEALTHY
    if healthy:
        return ServiceStatus.DEGRADED
    if live and all(r == R.FAILED_TO_START.value for r in live):
        return ServiceStatus.FAILED
    if any(r == R.PROVISIONING.value for r in live) or not live:
        return ServiceStatus.PROVISIONING
    return ServiceStatus.UNHEALTHY


class ServiceCreate(BaseModel):
    """``service create IMAGE MODEL_FOLDER REPLICAS -t NAME ...`` as the API receives it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the service name; also its endpoint path /services/<name>/")
    image: str = Field(description="container image, or `local`")
    model_folder: str = Field(description="the model vfolder, mounted at /models")
    replicas: int = Field(default=1, ge=0, le=64, description="number of routes")
    public: bool = Field(default=False, description="serve without a token")
    runtime_variant: str = Field(default="custom", description=f"one of {', '.join(VARIANTS)}")
    resources: ResourceSlots = Field(default_factory=ResourceSlots, description="per route")
    env: dict[str, str] = Field(default_factory=dict)
    mounts: list[MountSpec] = Field(default_factory=list, description="extra vfolders")
    model_writable: bool = Field(default=False, description="mount the model folder rw")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"invalid service name '{v}': use 1-64 letters, digits, '.', '_' or '-'"
            )
        return v

    @field_validator("runtime_variant")
    @classmethod
    def _variant(cls, v: str) -> str:
        if v not in VARIANTS:
            raise ValueError(f"unknown runtime variant '{v}' (known: {', '.join(VARIANTS)})")
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return as_value_error(parse_env, v)
        return v

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: ResourceSlots) -> ResourceSlots:
        return as_value_error(ResourceSlots.check_request, v)

    @field_validator("mounts")
    @classmethod
    def _mounts(cls, v: list[MountSpec]) -> list[MountSpec]:
        return as_value_error(validate_mounts, v)

    @classmethod
    def from_json(cls, data: Any) -> ServiceCreate:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error(exc, "service request") from None


def parse_ttl(text: str | float | int) -> float:
    """``30m``, ``12h``, ``1d``, ``3600`` (seconds) -> seconds > 0."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    raw = str(text).strip().lower()
    try:
        value = float(raw[:-1]) * units[raw[-1]] if raw and raw[-1] in units else float(raw)
    except ValueError:
        value = -1
    if not value > 0 or value != value:
        raise InvalidRequest(f"invalid ttl '{text}': use seconds or a number with s, m, h, d or w")
    return value


class AutoscaleRule(BaseModel):
    """Backend.AI's autoscaling rule: when METRIC is COMPARATOR THRESHOLD, add STEP routes
    (negative: remove), at most once per COOLDOWN seconds, staying within MIN..MAX."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["inflight", "rps", "gpu_util"] = Field(
        description="in-flight requests per route, requests/s to the service, or mean GPU "
                    "utilisation (%) of its routes")
    comparator: Literal["gt", "lt"]
    threshold: float
    step: int = Field(description="routes to add (negative: to remove) when the rule fires")
    cooldown: float = Field(default=60.0, ge=0, description="seconds between two firings")
    min_replicas: int = Field(default=0, ge=0, le=64)
    max_replicas: int = Field(default=64, ge=0, le=64)

    @field_validator("step")
    @classmethod
    def _step(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must not be 0")
        return v

    @classmethod
    def from_json(cls, data: Any) -> AutoscaleRule:
        try:
            rule = cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error(exc, "autoscaling rule") from None
        if rule.min_replicas > rule.max_replicas:
            raise InvalidRequest(
                f"invalid autoscaling rule: min {rule.min_replicas} > max {rule.max_replicas}")
        return rule

    def fires(self, value: float) -> bool:
        return value > self.threshold if self.comparator == "gt" else value < self.threshold

    def target(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas + self.step))


@dataclass(frozen=True)
class RouteLaunch:
    """What one route runs: its shell command line, port, health check and extra env, and
    where the model folder is mounted (``/models``; a NIM image's cache for ``nim``)."""

    command: str | None
    port: int
    health: HealthCheck | None
    env: dict[str, str] = field(default_factory=dict)
    model_name: str = ""
    model_path: str = MODEL_MOUNT
    model_mount: str = MODEL_MOUNT


def _subst(text: str, values: dict[str, str]) -> str:
    """``{model_path}``/``{port}`` (and ``ref``s) replaced; other braces left alone."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def _action_lines(action: PreStartAction, values: dict[str, str]) -> list[str]:
    """One pre-start action as shell lines (``set -e`` makes a failing one stop the route)."""
    args = {k.replace("-", "_"): v for k, v in action.args.items()}
    q = shlex.quote

    def arg(name: str, default: Any = None) -> Any:
        value = args.get(name, default)
        if value is None:
            raise InvalidRequest(f"pre-start action '{action.action}' needs args.{name}")
        return _subst(value, values) if isinstance(value, str) else value

    kind = action.action
    if kind == "run_command":
        command = arg("command")
        if isinstance(command, list):
            return [" ".join(q(_subst(str(c), values)) for c in command)]
        return [command]
    if kind == "mkdir":
        return [f"mkdir -p {q(arg('path'))}"]
    if kind == "log":
        return [f"echo {q('[pre-start] ' + str(arg('message', args.get('body'))))}"]
    mode = str(args.get("mode", "644"))
    if kind == "write_file":
        target = q(arg("filename"))
        redirect = ">>" if args.get("append") else ">"
        return [f"printf %s {q(str(arg('body')))} {redirect} {target}", f"chmod {q(mode)} {target}"]
    # write_tempfile: its path is kept in $BAI_REF_<ref> and substituted for {ref} later.
    var = f"BAI_REF_{re.sub(r'[^A-Za-z0-9_]', '_', action.ref or 'tempfile')}"
    if action.ref:
        values[action.ref] = "${%s}" % var
    return [f"{var}=$(mktemp)", f"printf %s {q(str(arg('body')))} > \"${{{var}}}\"",
            f"chmod {q(mode)} \"${{{var}}}\""]


def _uses_assigned_port(command: str | list[str]) -> bool:
    text = command if isinstance(command, str) else " ".join(command)
    return bool(re.search(r"\{port\}|\$PORT\b|\$\{PORT\}", text))


def _custom(definition: ModelDefinition | None, port: int, replicas: int) -> RouteLaunch:
    if definition is None:
        raise InvalidRequest(
            "runtime variant 'custom' needs model-definition.yaml in the model folder "
            "(or pick --runtime-variant cmd|vllm|nim)"
        )
    model = definition.servable()
    svc = model.service
    assert svc is not None
    values = {"model_path": model.model_path, "port": str(port)}
    lines = ["set -e"]
    for action in svc.pre_start_actions:
        lines += _action_lines(action, values)
    if isinstance(svc.start_command, list):
        start = " ".join(shlex.quote(_subst(str(c), values)) for c in svc.start_command)
    else:
        start = f"{shlex.quote(svc.shell)} -c {shlex.quote(_subst(svc.start_command, values))}"
    lines.append(f"exec {start}")
    listen = port if _uses_assigned_port(svc.start_command) or not svc.port else svc.port
    if listen != port and replicas > 1:
        raise InvalidRequest(
            f"model-definition.yaml hard-codes port {svc.port}, but {replicas} local routes cannot "
            "all listen on it: write {port} (or $PORT) in start_command where the port goes, "
            "and each route takes the port it is assigned"
        )
    return RouteLaunch(
        command="\n".join(lines), port=listen, health=svc.health_check,
        model_name=model.name, model_path=model.model_path,
    )


NOTEBOOK_RUNTIME = f"{MODEL_MOUNT}/.bai/lib"
"""Where a deploy puts its copy of ``jupyter_bai.serving`` (a route's Python may not see the
engine's editable install, and the runner's version stays with the deployed version)."""

NOTEBOOK_HEALTH = {"path": "/health", "interval": 2.0, "max_retries": 3, "initial_delay": 300.0}


def notebook_definition(notebook: str, health: dict[str, Any] | None = None,
                        name: str = "notebook") -> ModelDefinition:
    """The model definition of a deployed notebook: the runner on the assigned port, readiness
    on ``/health`` (``health`` overrides the defaults: the notebook's ``metadata.bai.health_check``)."""
    check = HealthCheck.model_validate({**NOTEBOOK_HEALTH, **(health or {}), "path": "/health"})
    return ModelDefinition.model_validate({"models": [{
        "name": name, "model_path": MODEL_MOUNT,
        "service": {
            "start_command": ["env", f"PYTHONPATH={NOTEBOOK_RUNTIME}", "python3", "-m",
                              "jupyter_bai.serving", f"{MODEL_MOUNT}/{notebook}", "--port", "{port}"],
            "health_check": check.model_dump(),
        },
    }]})


def plan_route(
    variant: str, *, port: int, env: dict[str, str], definition: ModelDefinition | None,
    docker: bool, replicas: int = 1, image_command: str | None = None,
) -> RouteLaunch:
    """The launch plan of one route (``port``: the one assigned to it on the local runtime,
    where every route shares the host's network; a Docker route listens on 8000 unless its
    model definition says otherwise, and the caller passes 8000 as ``port`` for it)."""
    if variant == "custom":
        return _custom(definition, port, 1 if docker else replicas)
    name = env.get("BACKEND_MODEL_NAME", "")
    if variant == "cmd":
        # The image's own command (Backend.AI: CMD in the image); no health check.
        command = image_command or env.get("CMD")
        if not command:
            raise InvalidRequest(
                "runtime variant 'cmd' runs the image's own command: set it with -e CMD='...'"
            )
        return RouteLaunch(command=command, port=DOCKER_PORT if docker else port, health=None,
                           model_name=name)
    if variant == "vllm":
        listen = DOCKER_PORT if docker else port
        argv = ["vllm", "serve", MODEL_MOUNT, "--host", "0.0.0.0", "--port", str(listen)]
        if name:
            argv += ["--served-model-name", name]
        if env.get("VLLM_TP_SIZE"):
            argv += ["--tensor-parallel-size", env["VLLM_TP_SIZE"]]
        if env.get("VLLM_QUANTIZATION"):
            argv += ["--quantization", env["VLLM_QUANTIZATION"]]
        command = " ".join(shlex.quote(a) for a in argv)
        if env.get("VLLM_EXTRA_ARGS"):
            command += " " + " ".join(shlex.quote(a) for a in shlex.split(env["VLLM_EXTRA_ARGS"]))
        return RouteLaunch(command=command, port=listen, health=HealthCheck(path="/health"),
                           model_name=name)
    if variant == "nim":
        if not docker:
            raise InvalidRequest("runtime variant 'nim' needs a Docker image (NVIDIA's NIM image)")
        if not env.get("NGC_API_KEY"):
            raise InvalidRequest("runtime variant 'nim' needs -e NGC_API_KEY=<your NGC key>")
        # The key reaches the container as env (never argv); the model folder is NIM's cache.
        return RouteLaunch(command=image_command, port=DOCKER_PORT,
                           health=HealthCheck(path="/v1/health/ready"),
                           env={"HF_HOME": NIM_CACHE, "NIM_CACHE_PATH": NIM_CACHE},
                           model_name=name, model_path=NIM_CACHE, model_mount=NIM_CACHE)
    if variant == "notebook":
        # the definition the deploy wrote next to the notebook; without one, the defaults
        return _custom(definition or notebook_definition(env.get("BAI_NOTEBOOK", "service.ipynb")),
                       port, 1 if docker else replicas)
    raise InvalidRequest(f"unknown runtime variant '{variant}' (known: {', '.join(VARIANTS)})")
