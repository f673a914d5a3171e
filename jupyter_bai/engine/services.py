"""Model services: replicated routes (inference sessions) kept at the asked count and health.

The store holds services, routes and tokens; a reconcile loop drives them: it creates routes
up to ``replicas``, probes their health (:mod:`.health`), replaces a route whose process died
(the seed: "recover the original state by creating a new inference session, while forwarding
requests to other living sessions"), drains and removes extra ones on scale-down and marks a
route that never came up FAILED_TO_START with its last log lines. The endpoint proxy (its own
process, :mod:`jupyter_bai.proxy`) reads healthy routes and token hashes from the same store.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import socket
import time
import uuid
from typing import Any, Callable

import aiohttp

from ..spec.errors import BaiError, Conflict, InvalidRequest, NotFound
from ..spec.model_definition import DEFINITION_FILES, HealthCheck, ModelDefinition, parse_model_definition
from ..spec.mounts import MountSpec
from ..spec.service import (
    AutoscaleRule, DOCKER_PORT, RouteLaunch, RouteStatus, ServiceCreate, ServiceStatus, parse_ttl, plan_route, service_status,
)
from ..spec.session import SessionSpec, SessionStatus, SessionType
from .config import EngineConfig
from .drain import drained
from .events import EventBus
from .health import next_status, probe
from .metrics import MetricsCollector, mean_gpu_util
from .scheduler import check_can_ever_fit
from .sessions import SessionManager, tail_lines
from .store import Store
from .vfolders import VFolderManager

log = logging.getLogger(__name__)

R = RouteStatus
LOG_TAIL = 20
LIVE = (R.PROVISIONING.value, R.HEALTHY.value, R.UNHEALTHY.value)


def token_hash(token: str) -> str:
    """Tokens are kept only as this hash (the proxy hashes what it is shown and compares)."""
    return hashlib.sha256(token.encode()).hexdigest()


def free_port(avoid: set[int]) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise BaiError("no free port on 127.0.0.1 for a route")


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class ServiceManager:
    def __init__(self, config: EngineConfig, store: Store, events: EventBus,
                 sessions: SessionManager, vfolders: VFolderManager, interval: float = 0.5):
        self.config = config
        self.store = store
        self.events = events
        self.sessions = sessions
        self.vfolders = vfolders
        self.interval = interval
        self._next_probe: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._wakeup = asyncio.Event()
        self.endpoint_base = ""
        self._request_counts: dict[str, tuple[float, int]] = {}
        self._rps: dict[str, float] = {}
        self._proxy_stats: dict[str, Any] = {}
        self.metrics: MetricsCollector | None = None  # the source of gpu_util (set by Engine)
        self._gpu_sample: dict[str, Any] = {}
        self.on_removed: Callable[[str], None] | None = None  # the deploy's folders go too

    # -- reading -----------------------------------------------------------
    def _service_row(self, name: str) -> Any:
        row = self.store.one("SELECT * FROM services WHERE name = ? OR id = ?", (name, name))
        if row is None:
            raise NotFound(f"service '{name}' not found")
        return row

    def row(self, name: str) -> Any:
        """The service's store row (name or id)."""
        return self._service_row(name)

    def _routes(self, service_id: str) -> list[Any]:
        return self.store.query(
            "SELECT r.*, s.name AS session_name, s.status AS session_status FROM service_routes r "
            "LEFT JOIN sessions s ON s.id = r.session_id WHERE r.service_id = ? "
            "ORDER BY r.created_at", (service_id,))

    def _to_json(self, row: Any) -> dict[str, Any]:
        spec = json.loads(row["spec"])
        routes = [
            {"id": r["id"], "status": r["status"], "session_id": r["session_id"],
             "session_name": r["session_name"], "port": r["port"], "status_info": r["status_info"],
             "version": r["version"]}
            for r in self._routes(row["id"])
        ]
        return {
            "id": row["id"], "name": row["name"], "status": row["status"],
            "status_info": row["status_info"],
            "endpoint": f"{self.endpoint_base}/services/{row['name']}/",
            "public": bool(row["public"]), "replicas": row["replicas"],
            "image": spec["image"], "model_folder": spec["model_folder"],
            "runtime_variant": spec["runtime_variant"], "routes": routes,
            "created_at": row["created_at"], "version": row["version"],
            "autoscaling_rules": [
                {"id": r["id"], **json.loads(r["rule"]), "last_fired_at": r["last_fired_at"]}
                for r in self.store.query(
                    "SELECT * FROM service_autoscale_rules WHERE service_id = ? "
                    "ORDER BY created_at", (row["id"],))],
            "scaling_decisions": [
                json.loads(r["decision"]) for r in self.store.query(
                    "SELECT decision FROM service_scaling_decisions WHERE service_id = ? "
                    "ORDER BY seq DESC LIMIT 20", (row["id"],))],
        }

    def get(self, name: str) -> dict[str, Any]:
        return self._to_json(self._service_row(name))

    def list(self) -> list[dict[str, Any]]:
        return [self._to_json(r) for r in self.store.query("SELECT * FROM services ORDER BY created_at")]

    def logs(self, name: str, tail: int | None = None) -> str:
        """Every route's log, each under a ``==> route ID (session NAME) <==`` header."""
        row = self._service_row(name)
        parts = []
        for r in self._routes(row["id"]):
            if r["session_id"] is None:
                continue
            text = self.sessions.logs(r["session_id"], tail=tail)
            parts.append(f"==> route {r['id']} (session {r['session_name']}, {r['status']}) <==\n{text}")
        return "\n".join(parts)

    # -- creating ----------------------------------------------------------
    def _definition(self, spec: ServiceCreate) -> ModelDefinition | None:
        root = self.vfolders.host_path(spec.model_folder)
        for name in DEFINITION_FILES:
            path = root / name
            if path.is_file():
                return parse_model_definition(path.read_text(errors="replace"),
                                              f"{spec.model_folder}/{name}")
        return None

    def _plan(self, spec: ServiceCreate, port: int) -> RouteLaunch:
        """One route's launch plan; a Docker route listens on DOCKER_PORT in its container
        (published on an ephemeral 127.0.0.1 port, :meth:`_record_docker_port`)."""
        runtime = self.sessions.runtime_for(spec.image)
        docker = runtime.name != "local"
        definition = (self._definition(spec) if spec.runtime_variant in ("custom", "notebook")
                      else None)
        image_command = None
        if docker and spec.runtime_variant in ("cmd", "nim"):
            image_command = runtime.image_command(spec.image)
        return plan_route(spec.runtime_variant, port=DOCKER_PORT if docker else port,
                          env=spec.env, definition=definition, docker=docker,
                          replicas=spec.replicas, image_command=image_command)

    def _is_docker(self, spec: ServiceCreate) -> bool:
        return self.sessions.runtime_for(spec.image).name != "local"

    def check_runnable(self, spec: ServiceCreate) -> None:
        """What :meth:`create` checks of the image and variant, before any folder exists.

        A deployed notebook's runner needs this package's Python (FastAPI, uvicorn): it runs
        on the local runtime in this version.
        """
        runtime = self.sessions.runtime_for(spec.image)
        if runtime.name != "local":
            raise InvalidRequest(
                f"a notebook deploy runs on the local runtime in this version; image "
                f"'{spec.image}' is a Docker image (use `local`)")
        self._check_image(spec)
        port = free_port(self._used_ports())
        plan = plan_route(spec.runtime_variant, port=port, env=spec.env, definition=None,
                          docker=False, replicas=spec.replicas)
        self._session_spec(spec.name, spec, plan, "check00")

    def set_version(self, name: str, spec: ServiceCreate, version: int) -> str:
        """Point the service at a deployed version; routes roll over to it (reconcile)."""
        row = self._service_row(name)
        with self.store.tx():
            self.store.execute(
                "UPDATE services SET spec = ?, replicas = ?, public = ?, version = ? WHERE id = ?",
                (json.dumps(spec.model_dump(mode="json")), spec.replicas, int(spec.public),
                 version, row["id"]))
            # a version that failed to start is not retried: the new one gets a clean slate
            self.store.execute("DELETE FROM service_routes WHERE service_id = ? AND status = ?",
                               (row["id"], R.FAILED_TO_START.value))
            self.events.publish("service", row["name"], action="version", version=version)
            self._update_status(self._service_row(row["id"]))
        self._wakeup.set()
        return str(row["id"])

    def _used_ports(self) -> set[int]:
        return {int(r["port"]) for r in self.store.query("SELECT port FROM service_routes")}

    def _session_spec(self, svc_name: str, spec: ServiceCreate, plan: RouteLaunch, rid: str) -> SessionSpec:
        mounts = [MountSpec(source=spec.model_folder, target=plan.model_mount,
                            perm="rw" if spec.model_writable else "ro"), *spec.mounts]
        env = {**spec.env, **plan.env, "BACKEND_MODEL_PATH": plan.model_path, "PORT": str(plan.port)}
        env.setdefault("BACKEND_MODEL_NAME", plan.model_name or svc_name)
        if plan.command is None:
            raise InvalidRequest(
                f"image '{spec.image}' declares no command to run (ENTRYPOINT/CMD) for "
                f"runtime variant '{spec.runtime_variant}'")
        return SessionSpec(
            image=spec.image, name=f"{svc_name[:48]}-r{rid[:6]}", type=SessionType.inference,
            command=plan.command, resources=spec.resources, mounts=mounts, env=env,
            ports=[plan.port] if self._is_docker(spec) else [],
        )

    def create(self, spec: ServiceCreate) -> dict[str, Any]:
        """Check everything a route needs, then record the service; routes follow."""
        self.vfolders.get(spec.model_folder)
        if self.store.one("SELECT 1 FROM services WHERE name = ?", (spec.name,)):
            raise Conflict(f"service '{spec.name}' already exists")
        self._check_image(spec)
        probe_port = free_port(self._used_ports())
        plan = self._plan(spec, probe_port)
        if not self._is_docker(spec) and plan.port != probe_port and port_in_use(plan.port):
            raise InvalidRequest(
                f"port {plan.port} (hard-coded in the model definition) is already in use on "
                "127.0.0.1: free it, or write {port} (or $PORT) in start_command"
            )
        self._session_spec(spec.name, spec, plan, "check00")  # same checks as a route's session
        sid = str(uuid.uuid4())
        status = ServiceStatus.PROVISIONING if spec.replicas else ServiceStatus.STOPPED
        with self.store.tx():
            self.store.execute(
                "INSERT INTO services(id, name, spec, replicas, public, status, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (sid, spec.name, json.dumps(spec.model_dump(mode="json")), spec.replicas,
                 int(spec.public), status.value, time.time()))
            self.events.publish("service", spec.name, action="created", service_status=status.value)
        self._wakeup.set()
        return self.get(sid)

    def _check_image(self, spec: ServiceCreate) -> None:
        """What would refuse every route (unknown image, too big to ever fit), refused now."""
        resources = spec.resources.with_defaults(self.sessions.defaults)
        check_can_ever_fit(resources, self.sessions.capacity)
        self.sessions.runtime_for(spec.image).check(spec.image, resources)

    def scale(self, name: str, replicas: int) -> dict[str, Any]:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or not 0 <= replicas <= 64:
            raise InvalidRequest(f"invalid replica count {replicas!r}: expected 0 to 64")
        row = self._service_row(name)
        if row["terminating"]:
            raise Conflict(f"service '{row['name']}' is being removed")
        self._set_replicas(row, replicas, action="scaled")
        return self.get(row["id"])

    def _set_replicas(self, row: Any, replicas: int, action: str, **extra: Any) -> None:
        spec = ServiceCreate.model_validate(json.loads(row["spec"]))
        if replicas > 1:  # a hard-coded port cannot take more than one local route
            self._plan(spec.model_copy(update={"replicas": replicas}), free_port(self._used_ports()))
        with self.store.tx():
            spec = spec.model_copy(update={"replicas": replicas})
            self.store.execute("UPDATE services SET replicas = ?, spec = ? WHERE id = ?",
                               (replicas, json.dumps(spec.model_dump(mode="json")), row["id"]))
            # routes that failed to start are dropped so the new count is tried afresh
            self.store.execute("DELETE FROM service_routes WHERE service_id = ? AND status = ?",
                               (row["id"], R.FAILED_TO_START.value))
            self.events.publish("service", row["name"], action=action, replicas=replicas, **extra)
        self._wakeup.set()

    # -- autoscaling -------------------------------------------------------
    def add_rule(self, name: str, rule: AutoscaleRule) -> dict[str, Any]:
        row = self._service_row(name)
        rid = uuid.uuid4().hex[:8]
        with self.store.tx():
            self.store.execute(
                "INSERT INTO service_autoscale_rules(id, service_id, rule, created_at) "
                "VALUES (?,?,?,?)", (rid, row["id"], rule.model_dump_json(), time.time()))
            self.events.publish("service", row["name"], action="autoscale-rule-added", rule=rid)
        return self.get(row["id"])

    def remove_rule(self, name: str, rule_id: str) -> dict[str, Any]:
        row = self._service_row(name)
        with self.store.tx():
            gone = self.store.execute(
                "DELETE FROM service_autoscale_rules WHERE service_id = ? AND id = ?",
                (row["id"], rule_id)).rowcount
            if not gone:
                raise NotFound(f"service '{row['name']}' has no autoscaling rule '{rule_id}'")
            self.events.publish("service", row["name"], action="autoscale-rule-removed",
                                rule=rule_id)
        return self.get(row["id"])

    def _read_proxy_stats(self) -> dict[str, Any]:
        try:
            data = json.loads((self.config.state_dir / "proxy-stats.json").read_text())
        except (OSError, ValueError):
            self._proxy_stats = {}
            return {}
        self._proxy_stats = data
        at = float(data.get("at", 0))
        services = data.get("services", {})
        for name, stats in services.items():
            prev = self._request_counts.get(name)
            count = int(stats.get("requests", 0))
            if prev and at > prev[0]:
                self._rps[name] = max(0.0, (count - prev[1]) / (at - prev[0]))
            if not prev or at > prev[0]:
                self._request_counts[name] = (at, count)
        return services

    def _metric(self, rule: AutoscaleRule, row: Any, stats: dict[str, Any]) -> float | None:
        if rule.metric == "rps":
            return self._rps.get(row["name"])
        if rule.metric == "inflight":
            live = sum(r["status"] == R.HEALTHY.value for r in self._routes(row["id"]))
            inflight = stats.get(row["name"], {}).get("inflight")
            return None if inflight is None else inflight / max(1, live)
        # gpu_util: the mean utilisation of the GPUs of the routes' sessions
        sessions = {r["session_id"] for r in self._routes(row["id"])
                    if r["status"] in LIVE and r["session_id"]}
        return mean_gpu_util(self._gpu_sample, sessions)

    async def _sample_gpus(self) -> None:
        """Take the metrics collector's latest sample when a ``gpu_util`` rule needs it (asking
        keeps the sampler running; with no such rule it may sleep)."""
        self._gpu_sample = {}
        if self.metrics is None or not self.store.one(
                "SELECT 1 FROM service_autoscale_rules WHERE rule LIKE '%\"gpu_util\"%'"):
            return
        try:
            self._gpu_sample = (await self.metrics.current())["latest"]
        except Exception:  # noqa: BLE001 - no sample: the rule waits, scaling goes on
            log.exception("sampling GPU utilisation for autoscaling")

    def _autoscale(self, row: Any, stats: dict[str, Any]) -> None:
        now = time.time()
        for r in self.store.query(
                "SELECT * FROM service_autoscale_rules WHERE service_id = ? ORDER BY created_at",
                (row["id"],)):
            rule = AutoscaleRule.model_validate_json(r["rule"])
            if r["last_fired_at"] and now - r["last_fired_at"] < rule.cooldown:
                continue
            value = self._metric(rule, row, stats)
            if value is None or not rule.fires(value):
                continue
            target = rule.target(row["replicas"])
            if target == row["replicas"]:
                continue
            decision = {"at": now, "rule": r["id"], "metric": rule.metric, "value": value,
                        "comparator": rule.comparator, "threshold": rule.threshold,
                        "from": row["replicas"], "to": target}
            with self.store.tx():
                self.store.execute(
                    "UPDATE service_autoscale_rules SET last_fired_at = ? WHERE id = ?",
                    (now, r["id"]))
                self.store.execute(
                    "INSERT INTO service_scaling_decisions(service_id, rule_id, at, decision) "
                    "VALUES (?,?,?,?)", (row["id"], r["id"], now, json.dumps(decision)))
                self._set_replicas(row, target, action="autoscaled", decision=decision)
            return  # one decision per pass; the next sees the new count

    def delete(self, name: str) -> dict[str, Any]:
        row = self._service_row(name)
        with self.store.tx():
            self.store.execute("UPDATE services SET terminating = 1, status = ? WHERE id = ?",
                               (ServiceStatus.TERMINATING.value, row["id"]))
            self.store.execute("DELETE FROM service_tokens WHERE service_id = ?", (row["id"],))
            self.events.publish("service", row["name"], action="deleting",
                                service_status=ServiceStatus.TERMINATING.value)
        self._wakeup.set()
        return self.get(row["id"])

    def issue_token(self, name: str, ttl: str | float = "1d") -> dict[str, Any]:
        row = self._service_row(name)
        seconds = parse_ttl(ttl)
        token = secrets.token_urlsafe(32)
        expires = time.time() + seconds
        with self.store.tx():
            self.store.execute(
                "INSERT INTO service_tokens(id, service_id, token_hash, expires_at, created_at) "
                "VALUES (?,?,?,?,?)", (str(uuid.uuid4()), row["id"], token_hash(token), expires,
                                       time.time()))
            self.events.publish("service", row["name"], action="token-issued", expires_at=expires)
        return {"token": token, "expires_at": expires}

    # -- the reconcile loop ------------------------------------------------
    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http:
            await self._http.close()

    async def _loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service reconcile failed")
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    def _set_route(self, route: Any, svc_name: str, status: RouteStatus, info: str | None = None,
                   failures: int | None = None) -> None:
        with self.store.tx():
            self.store.execute(
                "UPDATE service_routes SET status = ?, status_info = ?, failures = ?, "
                "healthy_at = CASE WHEN ? = 'HEALTHY' THEN ? ELSE healthy_at END WHERE id = ?",
                (status.value, info, route["failures"] if failures is None else failures,
                 status.value, time.time(), route["id"]))
            if status.value != route["status"]:
                self.events.publish("route", route["id"], service=svc_name,
                                    route_status=status.value, info=info)
            self._update_status(self._service_row(route["service_id"]))

    def _failed_route(self, row: Any, rid: str, why: str) -> None:
        """Record a route that could not even be started (in the caller's transaction)."""
        self.store.execute(
            "INSERT INTO service_routes(id, service_id, port, status, status_info, created_at, "
            "version) VALUES (?,?,?,?,?,?,?)",
            (rid, row["id"], 0, R.FAILED_TO_START.value, why, time.time(), row["version"]))
        self.events.publish("route", rid, service=row["name"],
                            route_status=R.FAILED_TO_START.value, info=why)

    def _add_route(self, row: Any, spec: ServiceCreate) -> None:
        rid = str(uuid.uuid4())
        try:
            plan = self._plan(spec, free_port(self._used_ports()))
            session_spec = self._session_spec(row["name"], spec, plan, rid)
        except BaiError as exc:  # e.g. the definition was edited into a bad one
            with self.store.tx():
                self._failed_route(row, rid, str(exc))
            return
        with self.store.tx():
            try:
                info = self.sessions.create(session_spec)
            except BaiError as exc:  # e.g. the image was removed since the service was made
                self._failed_route(row, rid, str(exc))
                return
            self.store.execute(
                "INSERT INTO service_routes(id, service_id, session_id, port, status, created_at, "
                "health, version) VALUES (?,?,?,?,?,?,?,?)",
                (rid, row["id"], info["id"], 0 if self._is_docker(spec) else plan.port,
                 R.PROVISIONING.value, time.time(),
                 json.dumps(plan.health.model_dump() if plan.health else None), row["version"]))
            self.events.publish("route", rid, service=row["name"],
                                route_status=R.PROVISIONING.value, session=info["name"])
            self._update_status(self._service_row(row["id"]))

    def _record_docker_port(self, route: Any) -> Any | None:
        """The 127.0.0.1 port Docker published for the route's container port (the session
        asks for exactly one), kept with the route for the health checker and the proxy."""
        published = self.sessions.get(route["session_id"]).get("ports") or {}
        if not published:
            return None
        port = int(next(iter(published.values())))
        with self.store.tx():
            self.store.execute("UPDATE service_routes SET port = ? WHERE id = ?",
                               (port, route["id"]))
        return next((r for r in self._routes(route["service_id"]) if r["id"] == route["id"]),
                    None)

    @staticmethod
    def _health_of(route: Any) -> HealthCheck | None:
        """The health check the route was started with (the definition may change since)."""
        data = json.loads(route["health"]) if route["health"] else None
        return HealthCheck.model_validate(data) if data else None

    async def reconcile(self) -> None:
        stats = self._read_proxy_stats()
        await self._sample_gpus()
        for row in self.store.query("SELECT * FROM services ORDER BY created_at"):
            await self._reconcile_service(row)
            if not row["terminating"]:
                try:
                    self._autoscale(self._service_row(row["id"]), stats)
                except BaiError as exc:
                    log.info("autoscaling %s: %s", row["name"], exc)

    async def _reconcile_service(self, row: Any) -> None:
        spec = ServiceCreate.model_validate(json.loads(row["spec"]))
        now = time.time()
        routes = self._routes(row["id"])
        due: list[Any] = []
        for route in routes:
            session_status = route["session_status"]
            ended = session_status is not None and SessionStatus(session_status).is_terminal
            if route["status"] == R.TERMINATING.value:
                if route["session_id"] is None or ended:
                    with self.store.tx():
                        self.store.execute("DELETE FROM service_routes WHERE id = ?", (route["id"],))
                        self.events.publish("route", route["id"], service=row["name"],
                                            action="removed")
                elif self._drained(route, now):
                    await self._stop_route(route)
                continue
            if route["status"] == R.FAILED_TO_START.value or route["session_id"] is None:
                continue
            if ended:
                if route["status"] == R.PROVISIONING.value:
                    sess = self.sessions.get(route["session_id"])
                    tail = tail_lines(self.sessions.log_path(route["session_id"]), LOG_TAIL)
                    why = f"{sess.get('status_info') or 'exited'}; last log lines:\n{tail}"
                    self._set_route(route, row["name"], R.FAILED_TO_START, why.strip())
                else:  # it served, then died: replace it while the others keep serving
                    with self.store.tx():
                        self.store.execute("DELETE FROM service_routes WHERE id = ?", (route["id"],))
                        self.events.publish("route", route["id"], service=row["name"],
                                            action="replaced", info="its process exited")
                        self._update_status(self._service_row(row["id"]))
                continue
            if session_status == SessionStatus.RUNNING.value and (
                    self._next_probe.get(route["id"], 0) <= now):
                if not route["port"]:  # a Docker route: its published port is known now
                    route = self._record_docker_port(route)
                if route is not None:
                    due.append(route)
        if due:
            await asyncio.gather(*(self._probe(route, row["name"]) for route in due))
        if row["terminating"]:
            self._terminate_all(row)
            return
        self._fit_replicas(row, spec)
        self._update_status(self._service_row(row["id"]))

    async def _probe(self, route: Any, svc_name: str) -> None:
        check = self._health_of(route)
        assert self._http is not None
        result = await probe(self._http, route["port"], check)
        age = time.time() - route["created_at"]
        status, failures = next_status(R(route["status"]), result, route["failures"], age, check)
        interval = check.interval if check else 10.0
        if status is R.PROVISIONING:
            interval = min(interval, 0.5)  # notice a route coming up quickly
        self._next_probe[route["id"]] = time.time() + interval
        if status is R.UNHEALTHY and route["healthy_at"] is None and age >= (
                check.initial_delay if check else 60.0):
            await self._fail_never_healthy(route, svc_name, result.detail, failures)
            return
        if status.value != route["status"] or failures != route["failures"]:
            info = None if result.ok else result.detail
            self._set_route(route, svc_name, status, info, failures)

    async def _fail_never_healthy(self, route: Any, svc_name: str, detail: str,
                                  failures: int) -> None:
        """A route that never passed its health check, past its grace and out of retries, has
        failed to start: say why (with its last log lines) and stop its session."""
        tail = tail_lines(self.sessions.log_path(route["session_id"]), LOG_TAIL)
        why = (f"health check never passed: {detail} ({failures} probes in a row); "
               f"last log lines:\n{tail}").strip()
        self._set_route(route, svc_name, R.FAILED_TO_START, why, failures)
        await self._stop_route(route)

    async def _stop_route(self, route: Any) -> None:
        if route["session_id"] and route["session_status"] != SessionStatus.TERMINATING.value:
            try:
                await self.sessions.destroy(route["session_id"])
            except BaiError as exc:
                log.info("stopping route %s: %s", route["id"], exc)

    def _drained(self, route: Any, now: float) -> bool:
        """A retired route may stop: nothing in flight on it, or the drain timeout passed."""
        deadline = route["drain_until"] or 0
        since = deadline - self.config.service_drain
        return now >= deadline or drained(self._proxy_stats, route["port"], since, now)

    def _retire(self, route: Any, svc_name: str, why: str) -> None:
        """Leave the rotation now; the session stops once drained (:mod:`.drain`)."""
        with self.store.tx():
            self.store.execute(
                "UPDATE service_routes SET status = ?, status_info = ?, drain_until = ? WHERE id = ?",
                (R.TERMINATING.value, why, time.time() + self.config.service_drain, route["id"]))
            self.events.publish("route", route["id"], service=svc_name,
                                route_status=R.TERMINATING.value, info=why)
            self._update_status(self._service_row(route["service_id"]))

    def _terminate_all(self, row: Any) -> None:
        routes = self._routes(row["id"])
        for route in routes:
            if route["status"] != R.TERMINATING.value:
                self._retire(route, row["name"], "service removed")
        if not routes:
            with self.store.tx():
                for table in ("service_autoscale_rules", "service_scaling_decisions"):
                    self.store.execute(f"DELETE FROM {table} WHERE service_id = ?", (row["id"],))
                self.store.execute("DELETE FROM services WHERE id = ?", (row["id"],))
                self.events.publish("service", row["name"], action="deleted")
            if self.on_removed is not None:
                self.on_removed(row["id"])

    def _roll_over(self, row: Any, spec: ServiceCreate, routes: list[Any]) -> bool:
        """Move routes to the current version one at a time: a new route first, an old one
        leaves once a new one is HEALTHY. A new route that fails or never gets ready stops
        the roll-over and the old ones keep serving. False: nothing left to roll."""
        current = [r for r in routes if r["version"] == row["version"]]
        old = [r for r in routes if r["version"] != row["version"]]
        for route in old:  # an older version's routes that do not serve go now
            if route["status"] == R.FAILED_TO_START.value:
                with self.store.tx():
                    self.store.execute("DELETE FROM service_routes WHERE id = ?", (route["id"],))
                    self.events.publish("route", route["id"], service=row["name"],
                                        action="removed")
            elif route["status"] in (R.PROVISIONING.value, R.UNHEALTHY.value):
                self._retire(route, row["name"], f"version {row['version']} replaces it")
        serving = sorted((r for r in old if r["status"] == R.HEALTHY.value),
                         key=lambda r: r["created_at"])
        if not serving:
            return False
        live = [r for r in current if r["status"] in LIVE]
        healthy = sum(r["status"] == R.HEALTHY.value for r in live)
        stuck = any(r["status"] != R.HEALTHY.value for r in current if r["status"] != R.TERMINATING.value)
        if not stuck and len(live) < row["replicas"]:
            self._add_route(row, spec)
        for route in serving[: max(0, healthy + len(serving) - row["replicas"])]:
            self._retire(route, row["name"], f"version {row['version']} is serving")
        return True

    def _fit_replicas(self, row: Any, spec: ServiceCreate) -> None:
        routes = self._routes(row["id"])
        if self._roll_over(row, spec, routes):
            return
        routes = self._routes(row["id"])
        live = [r for r in routes if r["status"] in LIVE]
        failed = any(r["status"] == R.FAILED_TO_START.value for r in routes)
        for _ in range(row["replicas"] - len(live)):
            if failed:
                break
            self._add_route(row, spec)
        if len(live) > row["replicas"]:
            order = {R.UNHEALTHY.value: 0, R.PROVISIONING.value: 1, R.HEALTHY.value: 2}
            extra = sorted(live, key=lambda r: (order[r["status"]], -r["created_at"]))
            for route in extra[: len(live) - row["replicas"]]:
                self._retire(route, row["name"], "scaled down")

    def _update_status(self, row: Any) -> None:
        """The service's status from its routes (called in the same transaction as a route
        change, so a reader never sees routes and service status disagree)."""
        if row["terminating"]:
            return
        routes = self._routes(row["id"])
        status = service_status([r["status"] for r in routes], row["replicas"])
        info = next((r["status_info"] for r in routes
                     if r["status"] == R.FAILED_TO_START.value), None)
        if status.value != row["status"] or info != row["status_info"]:
            with self.store.tx():
                self.store.execute("UPDATE services SET status = ?, status_info = ? WHERE id = ?",
                                   (status.value, info, row["id"]))
                self.events.publish("service", row["name"], action="status",
                                    service_status=status.value)
