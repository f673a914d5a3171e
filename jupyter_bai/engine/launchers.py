"""Where a pipeline job's tasks run: :class:`ClusterLauncher` starts them as batch sessions on a
Backend.AI cluster, for a job whose pipeline names an ``engine``; the local launcher is the
engine's own session manager, which :class:`~jupyter_bai.engine.pipelines.PipelineManager`
drives directly (its sessions table is the tasks' status).

The job's folder is a vfolder on the cluster (``pipeline-<job id>``, the same layout as on the
local engine). Backend.AI 23.09 mounts a folder with the folder's own permission and one target
per mount reference, so a task session mounts subpaths of it: ``tasks/T/outputs`` at
``/pipeline/outputs``, each dependency ``D``'s outputs at ``/pipeline/inputs/D`` and, through a
second reference to the same directory (``tasks/D/../D/outputs``), at ``/pipeline/inputN``.
Inputs are therefore writable on the cluster (read-only only by convention).

The keypair comes from the engine list (``bai-engines.json``, 0600) each time a launcher is made;
it is never put in argv, logs or the store.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..backendai.registry import get_engine
from ..backendai.rest import BackendAIRest, json_field, one_line, session_body
from ..spec.errors import BaiError, InvalidRequest, NotFound
from ..spec.pipeline import PIPELINE_ROOT

log = logging.getLogger(__name__)

#: Backend.AI's session statuses as this project's (a finished batch is TERMINATED here).
STATUS = {
    "PENDING": "PENDING", "SCHEDULED": "SCHEDULED", "PREPARING": "PREPARING",
    "PULLING": "PREPARING", "RUNNING": "RUNNING", "RESTARTING": "RUNNING",
    "RUNNING_DEGRADED": "RUNNING", "TERMINATING": "TERMINATING", "TERMINATED": "TERMINATED",
    "ERROR": "ERROR", "CANCELLED": "CANCELLED",
}
_FIELDS = "id name status status_info status_data status_history result"
#: Backend.AI 23.09's session statuses before TERMINATING.
_UNFINISHED = "PENDING,SCHEDULED,PULLING,PREPARING,RUNNING,RESTARTING,RUNNING_DEGRADED"


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def task_mounts(folder: str, task: str, depends_on: list[str]) -> tuple[list[str], dict[str, str]]:
    """The job folder's subpaths a task session mounts, and where (see the module doc)."""
    own = f"{folder}/tasks/{task}/outputs"
    mounts, targets = [own], {own: f"{PIPELINE_ROOT}/outputs"}
    for i, dep in enumerate(depends_on, 1):
        by_name, by_position = f"{folder}/tasks/{dep}/outputs", f"{folder}/tasks/{dep}/../{dep}/outputs"
        mounts += [by_name, by_position]
        targets[by_name] = f"{PIPELINE_ROOT}/inputs/{dep}"
        targets[by_position] = f"{PIPELINE_ROOT}/input{i}"
    return mounts, targets


class ClusterLauncher:
    """One Backend.AI engine's side of the pipeline runner: folders, task sessions, their
    status (polled, kept in :attr:`seen` for the runner's synchronous pass), logs, cancel."""

    def __init__(self, engine: str, *, timeout: float = 30.0) -> None:
        entry = get_engine(engine)
        if entry.kind != "backendai":
            raise InvalidRequest(f"engine {engine!r} is not a Backend.AI cluster; leave "
                                 "`engine` out to run the pipeline on this engine")
        if not entry.secret_key:
            raise InvalidRequest(f"engine {engine!r} has no secret key in the engine list "
                                 "the local engine reads")
        self.name = engine
        self.config = entry.config()
        self.rest = BackendAIRest(self.config, timeout=timeout)
        #: session id -> the last status seen: {status, result, exit_code, status_info, started_at}
        self.seen: dict[str, dict[str, Any]] = {}

    async def aclose(self) -> None:
        await self.rest.aclose()

    # -- checks and the job's folder
    async def check_image(self, image: str) -> None:
        """An image the cluster does not know is refused before anything is made."""
        data = await self.rest.gql("{ images(is_installed: true) { name tag registry aliases } }")
        known = set()
        for img in data.get("images") or []:
            known.add(f"{img['registry']}/{img['name']}:{img['tag']}")
            known.update(img.get("aliases") or [])
        if image not in known:
            raise InvalidRequest(f"unknown image {image!r} on the Backend.AI cluster "
                                 f"{self.rest.where} (engine {self.name!r})")

    async def check_folder(self, name: str) -> None:
        await self.rest.send("GET", f"/folders/{name}")

    async def prepare(self, folder: str, tasks: list[str]) -> None:
        """The job's folder with each task's ``tasks/T/outputs``; removed again on failure."""
        body: dict[str, Any] = {"name": folder, "host": self.config.vfolder_host or None,
                                "usage_mode": "general", "permission": "rw", "cloneable": False}
        if self.config.group:
            body["group"] = self.config.group
        await self.rest.send("POST", "/folders", json_body=body)
        try:
            for task in tasks:
                await self.rest.send("POST", f"/folders/{folder}/mkdir", json_body={
                    "path": f"tasks/{task}/outputs", "parents": True, "exist_ok": True})
        except BaseException:
            await self.drop(folder)
            raise

    async def drop(self, folder: str) -> None:
        try:
            await self.rest.send("DELETE", f"/folders/{folder}")
        except BaiError as err:
            log.warning("could not delete cluster folder %s: %s", folder, err)

    async def clear_outputs(self, folder: str, task: str) -> None:
        """An attempt starts from an empty ``outputs`` (a failed attempt's files go)."""
        path = f"tasks/{task}/outputs"
        await self.rest.send("DELETE", f"/folders/{folder}/delete-files",
                             json_body={"files": [path], "recursive": True})
        await self.rest.send("POST", f"/folders/{folder}/mkdir",
                             json_body={"path": path, "parents": True, "exist_ok": True})

    # -- task sessions
    async def start(self, *, name: str, image: str, command: str, env: Mapping[str, str],
                    mounts: list[str], mount_map: Mapping[str, str],
                    resources: Mapping[str, Any]) -> str:
        """The attempt's batch session, or the one of that name an engine killed after asking
        for it (and before recording it) left behind: adopted, not started twice."""
        sid = await self.find(name)
        if sid is None:
            body = session_body(name=name, image=image, type_="batch", command=command,
                                mounts=mounts, mount_map=mount_map, env=env, resources=resources,
                                group=self.config.group)
            created = await self.rest.send("POST", "/session", json_body=body)
            sid = str(created["sessionId"])
        else:
            log.info("adopting cluster session %s (%s), made before the engine restarted", name, sid)
        self.seen[sid] = {"status": "PENDING", "result": "undefined", "exit_code": None,
                          "status_info": None, "started_at": None}
        return sid

    async def find(self, name: str) -> str | None:
        """The id of this keypair's session named ``name`` that is not over yet, if any."""
        data = await self.rest.gql(
            "query($f: String, $s: String, $a: String) { compute_session_list(limit: 1, "
            "offset: 0, filter: $f, status: $s, access_key: $a) { items { id } } }",
            {"f": f'name == "{name}"', "s": _UNFINISHED, "a": self.config.access_key})
        items = (data.get("compute_session_list") or {}).get("items") or []
        return str(items[0]["id"]) if items else None

    async def refresh(self, sid: str) -> bool:
        """Poll one session into :attr:`seen`; True when its status changed."""
        try:
            data = await self.rest.gql(f"query($id: UUID!) {{ compute_session(id: $id) {{ {_FIELDS} }} }}",
                                       {"id": sid})
        except BaiError as err:
            log.info("polling cluster session %s failed: %s", sid, err)
            return False
        row = data.get("compute_session")
        if not row:
            new: dict[str, Any] = {"status": "CANCELLED", "result": "failure", "exit_code": None,
                                   "status_info": "the cluster has no such session any more",
                                   "started_at": None}
        else:
            result = str(row.get("result") or "").upper()
            status = STATUS.get(str(row.get("status")), "ERROR")
            if result in ("SUCCESS", "FAILURE") and status not in ("TERMINATED", "CANCELLED", "ERROR"):
                # 23.09 keeps a batch that ended before it was marked RUNNING in RUNNING for
                # good (its destroy is refused in that state): the result is what counts.
                await self.destroy(sid)
                status = "TERMINATED"
            info = row.get("status_info")
            history = json_field(row.get("status_history")) or {}
            new = {"status": status,
                   "result": {"SUCCESS": "success", "FAILURE": "failure"}.get(result, "undefined"),
                   # 23.09 keeps only SUCCESS (exit code 0) or FAILURE (the code is not kept)
                   "exit_code": 0 if result == "SUCCESS" else None,
                   "status_info": one_line(info) if info else None,
                   "started_at": _epoch(history.get("RUNNING") if isinstance(history, dict) else None)}
            if status in ("TERMINATED", "CANCELLED", "ERROR") and new["result"] == "undefined":
                new["result"] = "failure"
        old = self.seen.get(sid)
        self.seen[sid] = new
        return old != new

    async def destroy(self, sid: str) -> None:
        try:
            await self.rest.destroy_session(sid)
        except NotFound:
            pass
        except BaiError as err:
            log.info("destroying cluster session %s: %s", sid, err)

    async def logs(self, sid: str) -> str:
        try:
            data = await self.rest.send("GET", f"/session/{sid}/logs")
        except NotFound:
            return ""
        return str(((data or {}).get("result") or {}).get("logs") or "")

    async def poll(self, sids: list[str]) -> bool:
        """Poll the sessions of the running tasks at once (and forget the others); True when
        any changed."""
        for sid in set(self.seen) - set(sids):
            del self.seen[sid]
        changed = await asyncio.gather(*(self.refresh(s) for s in sids))
        return any(changed)
