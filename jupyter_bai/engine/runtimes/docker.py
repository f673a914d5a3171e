"""The ``docker`` runtime: a compute session is a container, through the ``docker`` SDK.

Any image reference that is not ``local``/``local:...`` selects it. A container gets

* CPU (``nano_cpus``) and memory (``mem_limit``, no extra swap) from the resource slots;
* GPUs as NVIDIA device requests for exactly the allocated devices. Inside, the devices are
  renumbered from 0, so ``CUDA_VISIBLE_DEVICES`` is ``0..n-1`` (the MPS limits already use
  client ordinals); fractional sessions get the MPS pipe directory bound in and the host IPC
  namespace, which MPS clients in containers need;
* the session's scratch ``work/`` at ``/home/work`` (the working directory), its ``run/`` at
  ``/run/bai`` (the agent's socket, as in the bubblewrap sandbox), its ``logs/`` at
  ``/var/log/bai`` and the agent at ``/opt/bai/agent.py`` (read-only);
* vfolders bound at their targets with ``ro``/``rw``;
* the injected ``BACKENDAI_*`` env; ``PATH`` is the image's own unless the session sets one;
* least privilege: every capability dropped, ``no-new-privileges``, a pids limit
  (``session_pids_limit``), a non-root user, Docker's default seccomp profile, and the
  host IPC namespace only for MPS clients (fractional GPUs with MPS: the client talks to
  the host's MPS daemon through shared memory in the host IPC namespace; nothing else
  gets it);
* labels ``ai.backend.bai.*`` naming the engine (a hash of its state dir, and the dir), the
  session id, name and kind, so a restarted engine finds its containers again;
* ``init=True`` (signals reach the command, zombies are reaped);
* the ports an image declares in Backend.AI's ``ai.backend.service-ports`` label, published
  on 127.0.0.1 only (never on all interfaces).

Which user runs the container (``docker_user``): ``auto`` runs as the engine's own uid:gid
when the engine is not root (that user owns the scratch dir and the vfolders, so everything
is writable and nothing runs as root); an engine running as root uses the image's ``USER``
when that is not root, else the session user (``session_user``, 1000:1000). ``image`` is the
same but prefers the image's ``USER`` even under a non-root engine; ``UID[:GID]`` forces one.
Root (0) is never used. When the engine is root and the user is numeric, the session's scratch
dirs and the roots of its read-write vfolders are handed to it.

Supervision needs no thread per container: one watcher thread reads the daemon's event
stream (``die`` events of this engine's containers) and resolves the waiting sessions;
every other daemon call runs in an executor, through ONE shared client.

Logs: the command runs under ``/bin/sh -c 'exec >>/var/log/bai/output.log 2>&1; exec "$@"'``,
so output lands in the session's ``logs/output.log`` whether or not an engine is watching
(``session logs`` works after an engine restart, and the ERROR message of a container that
exits at once carries its last lines). The image therefore needs ``/bin/sh``. Interactive
sessions run the stdlib-only agent with the image's ``python3``; an image without one still
starts (its startup command runs, the container idles): ``session exec`` then goes through
``docker exec``, and ``%%bai run`` says that it needs Python in the image.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import shlex
import shutil
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable

from ...spec.errors import BaiError, InvalidRequest, InvalidState, RuntimeUnavailable
from ...spec.resources import ResourceSlots, format_size, parse_size
from .agent_client import NO_AGENT_MARKER, AgentUnavailable
from .base import LaunchContext, Runtime, RuntimeLost, engine_id
from .docker_events import LABEL, ExitWatcher
from .privilege import SessionUser, hand_over, resolve_session_user

log = logging.getLogger(__name__)

AGENT_FILE = Path(__file__).with_name("agent.py")
AGENT_TARGET = "/opt/bai/agent.py"
RUN_TARGET = "/run/bai"
WORK_TARGET = "/home/work"
LOG_TARGET = "/var/log/bai"
MIN_MEM_LABEL = "ai.backend.resource.min.mem"
MIN_CPU_LABEL = "ai.backend.resource.min.cpu"
PORTS_LABEL = "ai.backend.service-ports"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WRAPPER = f'exec >>{LOG_TARGET}/output.log 2>&1; exec "$@"'
RUN_NEEDS_PYTHON = "'session exec' works (through docker exec); '%%bai run' needs Python in the image"
NO_PYTHON = f"no python3 in this image: {RUN_NEEDS_PYTHON}"
# Interactive main process: the agent when the image has python3, else the startup command
# (in the background) and an idle sleep, with a marker that tells the engine "no agent".
INTERACTIVE = (
    'if command -v python3 >/dev/null 2>&1; then if [ -n "$2" ]; then '
    'exec python3 "$0" --socket "$1" --startup "$2"; fi; exec python3 "$0" --socket "$1"; fi; '
    f'echo "{NO_PYTHON}" >&2; : > "${{1%/*}}/{NO_AGENT_MARKER}"; '
    'if [ -n "$2" ]; then /bin/sh -c "$2" & fi; '
    's=$(command -v sleep || echo /bin/sleep); while :; do "$s" 3600 || exit 127; done'
)


def _explain(exc: BaseException) -> str:
    """One readable line from a docker SDK / requests error."""
    text = getattr(exc, "explanation", None) or str(exc) or exc.__class__.__name__
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " ".join(str(text).split())


def parse_service_ports(label: str | None) -> dict[str, int]:
    """Backend.AI's ``name:protocol:port[,...]`` label → ``{name: port}``."""
    ports: dict[str, int] = {}
    if not label:
        return ports
    for item in label.split(","):
        parts = item.strip().split(":")
        if len(parts) != 3:
            continue
        name, _proto, port = parts
        port = port.strip("[]")
        if port.isdigit():
            ports[name] = int(port)
    return ports


def split_bind(spec: str) -> tuple[str, str, str]:
    """``HOST[:TARGET][:ro|rw]`` → (host, target, mode); read-only unless ``rw`` is given."""
    parts = spec.split(":")
    host = parts[0]
    target = parts[1] if len(parts) > 1 and parts[1] not in ("ro", "rw") else host
    mode = parts[-1] if len(parts) > 1 and parts[-1] in ("ro", "rw") else "ro"
    return host, target, mode


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "",
        user: str = "auto",
        binds: Iterable[str] = (),
        pull: bool = False,
        enabled: bool = True,
        session_user: SessionUser | None = None,
        pids_limit: int = 4096,
    ):
        self.state_dir = Path(state_dir)
        self.engine_id = engine_id(self.state_dir)
        self.host = host or os.environ.get("DOCKER_HOST", "") or "unix:///var/run/docker.sock"
        self.user_setting = user or "auto"
        if self.user_setting not in ("auto", "image"):
            uid = self.user_setting.partition(":")[0]
            if uid in ("0", "root"):
                raise ValueError("docker_user may not be root: sessions never run as root")
        self.session_user = session_user or resolve_session_user("auto")
        self.pids_limit = pids_limit
        self.binds = [split_bind(b) for b in binds]
        self.pull = pull
        self.enabled = enabled
        self.error: str | None = None if enabled else "disabled by configuration (docker=off)"
        self.version: str | None = None
        self._client: Any = None
        self._lock = threading.Lock()
        self._watcher = ExitWatcher(self)
        # container id -> (exit code, OOM-killed, removed): known once its session ended.
        self._exits: dict[str, tuple[int | None, bool, bool]] = {}
        self._was_down = False  # the last ping failed: sweep when it answers again
        self._suspect = False  # a call failed: ping before the next one
        # Set by the engine: ids of sessions that may still own a container (for sweeps).
        self.live_sessions: Callable[[], set[str]] | None = None

    # -- connection ----------------------------------------------------------
    def _connect(self, ping: bool = False) -> Any:
        """The shared client (pinged when new, after trouble, or on ``ping``); else
        RuntimeUnavailable with the reason (one line)."""
        if not self.enabled:
            raise RuntimeUnavailable(f"docker runtime {self.error}")
        try:
            import docker
        except ImportError:
            self.error = "the 'docker' Python package is not installed"
            raise RuntimeUnavailable(f"docker runtime unavailable: {self.error}") from None
        with self._lock:
            if self._client is not None and not (ping or self._was_down or self._suspect):
                return self._client
            try:
                if self._client is None:
                    # One client, one small connection pool, for every session.
                    self._client = docker.DockerClient(
                        base_url=self.host, timeout=60, max_pool_size=8
                    )
                self._client.ping()
                if self.version is None:
                    self.version = self._client.version().get("Version")
            except Exception as exc:  # noqa: BLE001 - any failure means "not usable now"
                self._drop_client()
                self.error = f"docker daemon at {self.host} is not answering: {_explain(exc)}"
                self._was_down = True
                raise RuntimeUnavailable(self.error) from None
            came_back = self._was_down
            self._was_down = self._suspect = False
            self.error = None
            client = self._client
        if came_back and self.live_sessions is not None:
            try:
                self.sweep(self.live_sessions())
            except Exception:
                log.exception("sweep after reconnect failed")
        return client

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001
                pass
        self._client = None

    def _lost(self, exc: BaseException) -> RuntimeUnavailable:
        """A call failed for a reason other than the daemon's answer: is the daemon there?"""
        with self._lock:
            self._suspect = True
        try:
            self._connect()
        except RuntimeUnavailable as down:
            return down
        return RuntimeUnavailable(f"docker call failed: {_explain(exc)}")

    def close(self) -> None:
        """Stop the watcher and close the shared client (engine shutdown)."""  # noqa: D401
        self._watcher.close()
        with self._lock:
            self._drop_client()

    # -- description ---------------------------------------------------------
    def handles(self, image: str) -> bool:
        return not (image == "local" or image.startswith("local:"))

    def availability(self) -> dict[str, Any]:
        try:
            self._connect(ping=True)
        except RuntimeUnavailable:
            pass
        if self.error:
            return {"name": self.name, "available": False, "sandbox": "docker",
                    "host": self.host, "notes": [self.error]}
        return {
            "name": self.name, "available": True, "sandbox": "docker", "host": self.host,
            "version": self.version,
            "notes": [f"cpu and mem enforced by Docker (cgroups); user: {self.user_setting} "
                      f"(never root; session user {self.session_user.spec}); no capabilities, "
                      f"no-new-privileges, pids limit {self.pids_limit}; "
                      f"pull: {'on' if self.pull else 'off'}"],
        }

    def images(self) -> list[dict[str, Any]]:
        client = self._connect()
        out = []
        for img in client.images.list():
            labels = img.labels or {}
            tags = img.tags or [f"<none>@{img.short_id}"]
            for tag in tags:
                out.append({
                    "name": tag,
                    "runtime": self.name,
                    "id": img.short_id.replace("sha256:", ""),
                    "size": int(img.attrs.get("Size") or 0),
                    "created": img.attrs.get("Created"),
                    "min_mem": labels.get(MIN_MEM_LABEL),
                    "service_ports": labels.get(PORTS_LABEL),
                })
        return sorted(out, key=lambda i: i["name"])

    # -- create-time checks --------------------------------------------------
    def _image(self, client: Any, image: str) -> Any:
        import docker

        try:
            return client.images.get(image)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise InvalidRequest(f"image '{image}': {_explain(exc)}") from None

    def image_command(self, image: str) -> str | None:
        """The image's own ENTRYPOINT + CMD as one shell line: what a model service's ``cmd``
        and ``nim`` routes run (a session's command replaces both, see ``container_kwargs``);
        None when the image is missing (``check`` says why) or declares none."""
        img = self._image(self._connect(), image)
        config = (img.attrs.get("Config") or {}) if img is not None else {}
        argv = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        return shlex.join(argv) if argv else None

    def check(self, image: str, resources: ResourceSlots) -> None:
        client = self._connect()
        img = self._image(client, image)
        if img is None:
            if self.pull:
                return  # pulled when the session starts; a failure there is readable
            raise InvalidRequest(
                f"image '{image}' is not present on the Docker engine and pulling is off "
                "(BaiApp.docker_pull); see 'image ls' for the images there"
            )
        labels = img.labels or {}
        if labels.get(MIN_MEM_LABEL):
            try:
                minimum = parse_size(labels[MIN_MEM_LABEL])
            except BaiError:
                minimum = 0
            if int(resources["mem"]) < minimum:
                raise InvalidRequest(
                    f"image '{image}' needs at least mem={format_size(minimum)} "
                    f"({MIN_MEM_LABEL}); asked for mem={format_size(int(resources['mem']))}"
                )
        if labels.get(MIN_CPU_LABEL):
            try:
                min_cpu = Decimal(labels[MIN_CPU_LABEL])
            except Exception:
                min_cpu = Decimal(0)
            if resources["cpu"] < min_cpu:
                raise InvalidRequest(
                    f"image '{image}' needs at least cpu={min_cpu} ({MIN_CPU_LABEL}); "
                    f"asked for cpu={resources['cpu']}"
                )

    # -- launch --------------------------------------------------------------
    def _resolve_user(self, image_user: str) -> str:
        """The container's user: never root (see the module docstring)."""
        setting = self.user_setting
        if setting not in ("auto", "image"):
            return setting
        image_is_root = image_user.split(":")[0] in ("", "0", "root")
        if not image_is_root and (setting == "image" or os.geteuid() == 0):
            return image_user
        return self.session_user.spec

    def _prepare_dirs(self, ctx: LaunchContext, user: str) -> None:
        for sub in ("work", "run", "logs"):
            (ctx.session_dir / sub).mkdir(parents=True, exist_ok=True)
        ctx.state_dir.mkdir(mode=0o700, exist_ok=True)
        for stale in (ctx.exit_path, ctx.state_dir / "oom", ctx.session_dir / "run" / "agent.sock",
                      ctx.session_dir / "run" / NO_AGENT_MARKER):
            stale.unlink(missing_ok=True)
        if ctx.log_path.is_symlink():
            ctx.log_path.unlink()
        ctx.log_path.touch()
        uid_s, _, gid_s = user.partition(":")
        if uid_s.isdigit():
            owner = SessionUser(int(uid_s), int(gid_s) if gid_s.isdigit() else int(uid_s))
            # The log file, not its directory: the engine (root) opens that path later, and a
            # session that could swap it for a symlink would make root write or read through it.
            hand_over([ctx.session_dir / "work", ctx.session_dir / "run", ctx.log_path,
                       *(m.host_path for m in ctx.mounts if not m.readonly)], owner)

    def container_kwargs(
        self, ctx: LaunchContext, image_config: dict[str, Any], image_labels: dict[str, str]
    ) -> dict[str, Any]:
        """Everything ``containers.create`` gets for one session (pure: unit-tested)."""
        from docker.types import DeviceRequest, Mount

        user = self._resolve_user(image_config.get("User") or "")
        env = dict(ctx.env)
        engine_path = os.pathsep.join(
            [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        )
        if env.get("PATH") in (None, engine_path):
            image_env = dict(e.split("=", 1) for e in image_config.get("Env") or [] if "=" in e)
            env["PATH"] = image_env.get("PATH", DEFAULT_PATH)
        # Mounts, not ``volumes``: that is keyed by host path, and one host directory may be
        # bound at two targets (a pipeline task's /pipeline/input1 and /pipeline/inputs/T).
        mounts: list[Mount] = []

        def bind(host: str | Path, target: str, mode: str) -> None:
            mounts.append(Mount(target, str(host), type="bind", read_only=mode == "ro"))

        for host, target, mode in self.binds:
            bind(host, target, mode)
        bind(ctx.session_dir / "work", WORK_TARGET, "rw")
        bind(ctx.session_dir / "run", RUN_TARGET, "rw")
        bind(ctx.session_dir / "logs", LOG_TARGET, "rw")
        bind(AGENT_FILE, AGENT_TARGET, "ro")
        for mount in ctx.mounts:
            bind(mount.host_path, mount.target, "ro" if mount.readonly else "rw")
        for path in ctx.extra_bind_paths:
            bind(path, path, "rw")

        kwargs: dict[str, Any] = {}
        res = ctx.resources
        if res.get("cpu") and Decimal(str(res["cpu"])) > 0:
            kwargs["nano_cpus"] = int(Decimal(str(res["cpu"])) * 1_000_000_000)
        if res.get("mem") and int(Decimal(str(res["mem"]))) > 0:
            mem = int(Decimal(str(res["mem"])))
            kwargs["mem_limit"] = mem
            kwargs["memswap_limit"] = mem  # no swap beyond the limit
        real_gpus = bool(ctx.gpu_devices) and bool(ctx.extra_dev_paths)
        if real_gpus:
            kwargs["device_requests"] = [DeviceRequest(
                driver="nvidia", device_ids=[str(d) for d in ctx.gpu_devices],
                capabilities=[["gpu", "utility", "compute"]],
            )]
            # The container sees only its devices, numbered from 0.
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(ctx.gpu_devices)))
            env["BACKENDAI_HOST_CUDA_DEVICES"] = ",".join(str(d) for d in ctx.gpu_devices)
        if "CUDA_MPS_PIPE_DIRECTORY" in env:
            # Only MPS needs it: its clients reach the host's MPS daemon through shared memory
            # in the host IPC namespace. Every other container keeps a private one.
            kwargs["ipc_mode"] = "host"

        ports: dict[str, tuple[str, None]] = {}
        if ctx.interactive:
            for port in parse_service_ports(image_labels.get(PORTS_LABEL)).values():
                ports[f"{port}/tcp"] = ("127.0.0.1", None)  # loopback only, ephemeral host port
        for port in ctx.ports:  # asked for by the session (a kernel's ZMQ ports)
            ports[f"{port}/tcp"] = ("127.0.0.1", None)

        if ctx.interactive:
            command = ["/bin/sh", "-c", INTERACTIVE, AGENT_TARGET, f"{RUN_TARGET}/agent.sock",
                       ctx.command or ""]
        else:
            command = ["/bin/sh", "-c", ctx.command or "true"]
        labels = {
            LABEL + "engine": self.engine_id,
            LABEL + "state-dir": str(self.state_dir.resolve()),
            LABEL + "session-id": ctx.session_id,
            LABEL + "session-name": ctx.session_name,
            LABEL + "kind": "interactive" if ctx.interactive else "batch",
        }
        return {
            "image": ctx.image,
            "entrypoint": ["/bin/sh", "-c", WRAPPER, "bai-session"],
            "command": command,
            "name": f"bai-{ctx.session_name[:40]}-{ctx.session_id[:8]}",
            "hostname": ctx.session_name[:63],
            "environment": env,
            "working_dir": WORK_TARGET,
            "user": user,
            "mounts": mounts,
            "labels": labels,
            "init": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": self.pids_limit,
            "ports": ports,
            "detach": True,
            "stdin_open": False,
            "tty": False,
            **kwargs,
        }

    def start(self, ctx: LaunchContext) -> dict[str, Any]:
        import docker

        client = self._connect()
        img = self._image(client, ctx.image)
        if img is None:
            if not self.pull:
                raise InvalidRequest(f"image '{ctx.image}' is not present on the Docker engine")
            try:
                img = client.images.pull(ctx.image)
            except Exception as exc:  # noqa: BLE001
                raise RuntimeError(f"could not pull image '{ctx.image}': {_explain(exc)}") from None
        kwargs = self.container_kwargs(ctx, img.attrs.get("Config") or {}, img.labels or {})
        self._prepare_dirs(ctx, kwargs["user"])
        try:
            container = client.containers.create(**kwargs)
        except docker.errors.APIError as exc:
            raise RuntimeError(f"docker could not create the container: {_explain(exc)}") from None
        try:
            container.start()
        except docker.errors.APIError as exc:
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001
                pass
            raise RuntimeError(f"docker could not start the container: {_explain(exc)}") from None
        handle: dict[str, Any] = {"container": container.id, "name": kwargs["name"],
                                  "sandbox": "docker", "state_dir": str(ctx.state_dir)}
        if kwargs["ports"]:
            container.reload()
            handle["ports"] = self._published(container)
        return handle

    @staticmethod
    def _published(container: Any) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, binds in (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
            for b in binds or []:
                if b.get("HostIp") in ("127.0.0.1", ""):
                    out[key.split("/")[0]] = int(b["HostPort"])
        return out

    # -- supervision ---------------------------------------------------------
    def _container(self, handle: dict[str, Any] | None, ctx: LaunchContext | None = None) -> Any:
        """The container, None when it is gone; RuntimeUnavailable when the daemon is."""
        import docker

        client = self._connect()
        try:
            if handle and handle.get("container"):
                try:
                    return client.containers.get(handle["container"])
                except docker.errors.NotFound:
                    return None
            if ctx is not None:
                found = client.containers.list(all=True, filters={"label": [
                    f"{LABEL}engine={self.engine_id}", f"{LABEL}session-id={ctx.session_id}"]})
                return found[0] if found else None
        except docker.errors.APIError:
            raise
        except Exception as exc:  # noqa: BLE001 - the connection, not the daemon's answer
            raise self._lost(exc) from None
        return None

    def is_alive(self, handle: dict[str, Any]) -> bool:
        try:
            c = self._container(handle)
        except RuntimeUnavailable:
            return False
        return c is not None and c.attrs["State"].get("Running", False)

    def adopt(self, ctx: LaunchContext, handle: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            container = self._container(handle, ctx)
        except RuntimeUnavailable:
            return None
        if container is None or not container.attrs["State"].get("Running"):
            return None
        new = dict(handle or {})
        new.update(container=container.id, name=container.name, sandbox="docker",
                   state_dir=str(ctx.state_dir))
        if container.attrs.get("NetworkSettings", {}).get("Ports"):
            new["ports"] = self._published(container)
        return new

    def exit_code(self, ctx: LaunchContext, handle: dict[str, Any]) -> int | None:
        known = self._exits.get(str(handle.get("container")))
        if known is not None:  # recorded by wait(): no daemon call on the event loop
            return known[0]
        try:
            return int(ctx.exit_path.read_text().strip())
        except (OSError, ValueError):
            pass
        try:
            container = self._container(handle, ctx)
        except RuntimeUnavailable:
            return None
        if container is None:
            return None
        state = container.attrs["State"]
        if state.get("Running") or state.get("Status") in ("created", "restarting"):
            return None
        return int(state.get("ExitCode", -1))

    def exit_reason(self, ctx: LaunchContext, handle: dict[str, Any] | None) -> str | None:
        known = self._exits.get(str((handle or {}).get("container")))
        if known is not None:
            oom = known[1]
        elif (ctx.state_dir / "oom").exists():
            oom = True
        else:
            try:
                container = self._container(handle, ctx)
            except RuntimeUnavailable:
                return None
            oom = container is not None and bool(container.attrs["State"].get("OOMKilled"))
        if oom:
            mem = ctx.mem
            shown = f"={format_size(mem)}" if mem else ""
            return f"out of memory: the session used all of its mem{shown}"
        return None

    async def wait(self, handle: dict[str, Any]) -> None:
        """Return once the container ended, its exit recorded and the container removed.

        The watcher thread (one for all containers) resolves the future on the ``die``
        event; RuntimeLost when the daemon goes away meanwhile.
        """
        loop = asyncio.get_running_loop()
        cid = str(handle["container"])
        done: asyncio.Future[BaseException | None] = loop.create_future()
        self._watcher.watch(cid, loop, done)
        try:
            try:
                container = await loop.run_in_executor(None, self._container, handle)
            except RuntimeUnavailable as exc:
                raise RuntimeLost(f"docker daemon went away: {exc}") from None
            if container is None or not container.attrs["State"].get("Running"):
                self._watcher.resolve(cid, None)  # ended before the watcher listened
            err = await done
        finally:
            self._watcher.forget(cid, done)
        if err is not None:
            raise RuntimeLost(f"docker daemon went away: {err}") from None
        await loop.run_in_executor(None, self._settle, handle)

    def _settle(self, handle: dict[str, Any]) -> None:
        """Record how the container ended (also on disk, for an engine restarted meanwhile)
        and remove it, so that the session's end touches the daemon only here, off the loop."""
        import docker

        cid = str(handle["container"])
        try:
            container = self._container(handle)
        except RuntimeUnavailable:
            return  # cleanup() retries; the sweep after reconnect removes it otherwise
        if container is None:
            self._exits[cid] = (None, False, True)
            return
        state = container.attrs["State"]
        if state.get("Running"):
            return
        code, oom = int(state.get("ExitCode", -1)), bool(state.get("OOMKilled"))
        state_dir = Path(handle.get("state_dir") or "")
        if handle.get("state_dir") and state_dir.is_dir():
            (state_dir / "exit").write_text(f"{code}\n")
            if oom:
                (state_dir / "oom").write_text("1\n")
        removed = True
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except Exception:  # noqa: BLE001
            log.exception("could not remove the container %s", container.name)
            removed = False
        self._exits[cid] = (code, oom, removed)

    async def stop(self, handle: dict[str, Any], grace: float) -> None:
        import docker

        def stop() -> None:
            try:
                container = self._container(handle)
            except RuntimeUnavailable:
                return
            if container is None:
                return
            try:
                container.stop(timeout=max(0, math.ceil(grace)))
            except docker.errors.NotFound:
                pass

        await asyncio.get_running_loop().run_in_executor(None, stop)

    def agent_socket(self, ctx: LaunchContext) -> str:
        return str(ctx.session_dir / "run" / "agent.sock")

    async def agent_request(self, ctx: LaunchContext, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The agent's protocol; on an image without Python, ``exec`` through ``docker exec``."""
        marker = ctx.session_dir / "run" / NO_AGENT_MARKER
        if not marker.exists():
            async for msg in super().agent_request(ctx, request):
                yield msg
            return
        if request.get("op") != "exec":
            raise InvalidState(
                f"session '{ctx.session_name}' has no python3 in its image: {RUN_NEEDS_PYTHON}")
        async for msg in self._docker_exec(ctx, request):
            yield msg

    async def _docker_exec(self, ctx: LaunchContext, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        command = request.get("command")
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command or [])
        if not argv:
            yield {"type": "done", "exit_code": 2}
            return

        def put(item: dict[str, Any] | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            try:
                container = self._container(None, ctx)
                if container is None:
                    raise AgentUnavailable("the session's container is gone")
                api = self._connect().api
                exec_id = api.exec_create(
                    container.id, argv, user=container.attrs["Config"].get("User") or "",
                    workdir=request.get("cwd") or WORK_TARGET,
                    environment={str(k): str(v) for k, v in (request.get("env") or {}).items()},
                )["Id"]
                for out, err in api.exec_start(exec_id, stream=True, demux=True):
                    for name, data in (("stdout", out), ("stderr", err)):
                        if data:
                            put({"type": "stream", "name": name,
                                 "text": data.decode("utf-8", "replace")})
                code = api.exec_inspect(exec_id).get("ExitCode")
                put({"type": "done", "exit_code": code if code is not None else -1})
            except BaseException as exc:  # noqa: BLE001 - handed to the event loop
                put(exc)
            put(None)

        loop.run_in_executor(None, run)
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, AgentUnavailable):
                raise item
            if isinstance(item, BaseException):
                raise AgentUnavailable(f"docker exec failed: {_explain(item)}")
            yield item

    def cleanup(self, ctx: LaunchContext, handle: dict[str, Any] | None) -> None:
        known = self._exits.pop(str((handle or {}).get("container")), None)
        if known is None or not known[2]:
            # Only when wait() did not settle it (a failed start): one daemon call.
            try:
                container = self._container(handle, ctx)
                if container is not None:
                    container.remove(force=True, v=True)
            except RuntimeUnavailable:
                log.warning("container of %s left behind: daemon unreachable (swept later)",
                            ctx.session_name)
            except Exception:  # noqa: BLE001
                log.exception("could not remove the container of %s", ctx.session_name)
        shutil.rmtree(ctx.session_dir / "work", ignore_errors=True)

    # -- orphans -------------------------------------------------------------
    def sweep(self, live: set[str]) -> list[str]:
        """Remove this engine's containers whose session is no longer live; their names."""
        client = self._connect()
        removed = []
        mine = {"label": f"{LABEL}engine={self.engine_id}"}
        for c in client.containers.list(all=True, filters=mine, sparse=True):
            labels = c.attrs.get("Labels") or {}
            if labels.get(LABEL + "session-id") not in live:
                name = (c.attrs.get("Names") or [c.id])[0].lstrip("/")
                try:
                    c.remove(force=True, v=True)
                    removed.append(name)
                except Exception:  # noqa: BLE001
                    log.exception("could not remove orphaned container %s", name)
        if removed:
            log.info("removed orphaned containers: %s", ", ".join(removed))
        return removed
