"""Pipeline jobs: run a :class:`PipelineSpec`'s tasks as batch sessions, in dependency order.

All state is in the store (jobs, task instances, status history); the runner is a loop that
looks at it whenever a session changes, so an engine killed mid-job picks up where it was:
finished tasks stay finished, and a running task follows its session (which the session
manager re-adopts, or ends as lost, which counts as a failed attempt).

Files: each job gets a vfolder ``pipeline-<job id>``; task ``T`` writes to its
``tasks/T/outputs`` directory, mounted rw at ``/pipeline/outputs``; a dependent sees it
read-only at ``/pipeline/inputN`` (N in ``depends_on`` order) and ``/pipeline/inputs/T``.

On a cluster: a pipeline that names an ``engine`` (a Backend.AI engine of the engine list) runs
here all the same (the job rows, retries, events and notifications below), but its folder is a
vfolder on that cluster and each attempt is a batch session there
(:class:`~jupyter_bai.engine.launchers.ClusterLauncher`, polled for status).

Notifications: the transaction that ends a job also writes one ``pipeline_notifications``
row per webhook (an outbox); rows are posted until a receiver answers 2xx, with backoff and
an ``Idempotency-Key`` header, so each is delivered at least once, across engine restarts.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import logging
import secrets
import shlex
import time
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from ..spec.errors import BaiError, InvalidRequest, InvalidState, NotFound
from ..spec.pipeline import PIPELINE_ROOT, JobStatus, PipelineSpec, TaskStatus
from ..spec.session import SessionSpec, SessionStatus, SessionType
from ..spec.vfolder import VFolderCreate
from .events import EventBus
from .launchers import ClusterLauncher, task_mounts
from .scheduler import check_can_ever_fit
from .sessions import SessionManager, _iso
from .store import Store
from .vfolders import VFolderManager

log = logging.getLogger(__name__)

T = TaskStatus
J = JobStatus
NOTEBOOK_RUNNER = (Path(__file__).resolve().parent.parent / "notebook_task.py").read_text()
NOTIFY_BACKOFF = 0.5  # seconds before a failed delivery's first retry; doubles each time
NOTIFY_MAX_BACKOFF = 60.0
NOTIFY_GIVE_UP = 24 * 3600.0  # a receiver down for a day: the delivery is logged and dropped
DEDUPE_HEADER = "Idempotency-Key"
TICK = 0.5  # retries and timeouts are due by the clock, not by an event
CLUSTER_POLL = 1.0  # seconds between polls of a job's running cluster sessions


def notebook_file(notebook: str) -> str:
    """The executed notebook's name in the task's outputs."""
    return PurePosixPath(notebook).name or "notebook.ipynb"


class PipelineManager:
    def __init__(self, store: Store, events: EventBus, sessions: SessionManager,
                 vfolders: VFolderManager, notify_backoff: float = NOTIFY_BACKOFF):
        self.store = store
        self.events = events
        self.sessions = sessions
        self.vfolders = vfolders
        self.notify_backoff = notify_backoff
        self._wake = asyncio.Event()
        self._main: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping: set[str] = set()  # session ids being destroyed by this runner
        self._hashing: set[tuple[str, str]] = set()  # (job, task) cache keys being computed
        self._delivering: set[int] = set()  # notification rows being posted
        self._http: httpx.AsyncClient | None = None
        self._clusters: dict[str, ClusterLauncher] = {}  # by engine name
        self._starting: set[tuple[str, str]] = set()  # (job, task) cluster sessions being made

    # -- engine hooks ------------------------------------------------------
    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=10)
        self._main = [asyncio.create_task(c) for c in (self._loop(), self._listen(), self._tick(),
                                                        self._poll_clusters())]
        self._wake.set()

    async def close(self) -> None:
        for task in [*self._main, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._main, *self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        for launcher in self._clusters.values():
            await launcher.aclose()

    # -- public API --------------------------------------------------------
    def submit(self, spec: PipelineSpec) -> dict[str, Any]:
        """Make the job, its folder and its WAITING tasks; the runner starts them."""
        if spec.engine is not None:
            raise InvalidRequest("a pipeline for a cluster engine is submitted with submit_any")
        for task in spec.tasks:  # unknown image / a task that never fits: refused now
            if task.notebook is not None and task.notebook_content is None:
                raise InvalidRequest(f"task '{task.name}': the notebook's content is missing "
                                     "(submit the pipeline file through the client)")
            self._check(self._session_spec(spec, task.name, "check"))
        job_id = secrets.token_hex(6)
        folder = f"pipeline-{job_id}"
        self.vfolders.create(VFolderCreate(name=folder))
        try:
            for task in spec.tasks:
                self.vfolders.mkdir(folder, f"tasks/{task.name}/outputs", parents=True)
            self._insert_job(job_id, folder, spec)
        except BaseException:
            self.vfolders.delete(folder)
            raise
        self._wake.set()
        return self.get(job_id)

    async def submit_any(self, spec: PipelineSpec) -> dict[str, Any]:
        """:meth:`submit`, or for a pipeline naming a cluster ``engine``: check it against the
        cluster, make the job's folder there, then the job (the folder goes if that fails)."""
        if spec.engine in (None, "local"):
            return self.submit(spec.model_copy(update={"engine": None}))
        launcher = self._cluster(spec.engine)
        for task in spec.tasks:
            if task.notebook is not None:
                raise InvalidRequest(f"task '{task.name}': notebook tasks run on the local engine "
                                     "only (not yet on a Backend.AI cluster)")
            if task.cache:
                raise InvalidRequest(f"task '{task.name}': cache: true needs the local engine "
                                     "(it hashes the inputs on this machine)")
            for mount in [*spec.mounts, *task.mounts]:
                if mount.perm is not None:
                    raise InvalidRequest(
                        f"task '{task.name}': invalid mount {mount}: Backend.AI 23.09 mounts a "
                        "folder with its own permission (create it read-only instead)")
        for image in sorted({t.image or spec.defaults.image for t in spec.tasks}):
            await launcher.check_image(image)
        for source in sorted({m.source for t in spec.tasks for m in [*spec.mounts, *t.mounts]}):
            await launcher.check_folder(source)
        job_id = secrets.token_hex(6)
        folder = f"pipeline-{job_id}"
        await launcher.prepare(folder, [t.name for t in spec.tasks])
        try:
            self._insert_job(job_id, folder, spec)
        except BaseException:
            await launcher.drop(folder)
            raise
        self._wake.set()
        return self.get(job_id)

    def _cluster(self, engine: str) -> ClusterLauncher:
        """The launcher of a cluster engine (keys read from the engine list on first use)."""
        if engine not in self._clusters:
            self._clusters[engine] = ClusterLauncher(engine)
        return self._clusters[engine]

    def _insert_job(self, job_id: str, folder: str, spec: PipelineSpec) -> None:
        """The job and its WAITING tasks, in one transaction."""
        now = time.time()
        seq = int((self.store.one("SELECT MAX(seq) AS s FROM pipeline_jobs") or {"s": 0})["s"]
                  or 0) + 1
        with self.store.tx():
            self.store.execute(
                "INSERT INTO pipeline_jobs(id, seq, name, spec, status, folder, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (job_id, seq, spec.name, spec.model_dump_json(), J.RUNNING.value, folder, now),
            )
            for pos, task in enumerate(spec.tasks):
                self.store.execute(
                    "INSERT INTO pipeline_tasks(job_id, name, position, status) "
                    "VALUES (?,?,?,?)", (job_id, task.name, pos, T.WAITING.value),
                )
                self._history(job_id, task.name, T.WAITING.value, None, now)
            self._history(job_id, None, J.RUNNING.value, None, now)
            self._publish_job(job_id)

    def list(self) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT * FROM pipeline_jobs ORDER BY seq DESC")
        return [self._job_json(r, history=False) for r in rows]

    def get(self, job_id: str) -> dict[str, Any]:
        return self._job_json(self._job_row(job_id))

    def task_logs(self, job_id: str, task: str) -> str:
        row = self._task_row(job_id, task)
        if row["session_id"] is None:
            return ""
        return self.sessions.logs(row["session_id"])

    async def task_logs_any(self, job_id: str, task: str) -> str:
        """:meth:`task_logs`, or a cluster task's from its batch session there."""
        engine = self._engine_of(job_id)
        if engine is None:
            return self.task_logs(job_id, task)
        row = self._task_row(job_id, task)
        if row["session_id"] is None:
            return ""
        return await self._cluster(engine).logs(row["session_id"])

    def _engine_of(self, job_id: str) -> str | None:
        return PipelineSpec.model_validate_json(self._job_row(job_id)["spec"]).engine

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop running tasks (SIGTERM, grace, SIGKILL) and mark the rest CANCELLED."""
        job = self._job_row(job_id)
        if J(job["status"]).is_final:
            raise InvalidState(f"pipeline job {job_id} is already {job['status']}")
        running: list[str] = []
        with self.store.tx():
            self._job_status(job_id, J.CANCELLING, "user-requested")
            for row in self._tasks_of(job_id):
                status = T(row["status"])
                if status in (T.WAITING, T.RETRYING):
                    self._task_status(job_id, row["name"], T.CANCELLED, "job cancelled")
                elif status == T.RUNNING and row["session_id"]:
                    running.append(row["session_id"])
        engine = self._engine_of(job_id)
        if engine is None:
            await asyncio.gather(*(self._destroy(sid) for sid in running))
        else:  # a cluster session still being made is destroyed once it is made: not awaited
            self._stopping.update(running)
            for sid in running:
                self._spawn(self._destroy(sid, engine))
        self._wake.set()
        return self.get(job_id)

    def rerun(self, job_id: str) -> dict[str, Any]:
        """Run the failed, skipped and cancelled tasks again; successful outputs are kept."""
        job = self._job_row(job_id)
        status = J(job["status"])
        if not status.is_final:
            raise InvalidState(f"pipeline job {job_id} is {status.value}; rerun it when it ends")
        if status == J.SUCCEEDED:
            raise InvalidState(f"pipeline job {job_id} succeeded; nothing to rerun")
        remote = PipelineSpec.model_validate_json(job["spec"]).engine is not None
        with self.store.tx():
            for row in self._tasks_of(job_id):
                if T(row["status"]) != T.SUCCEEDED:
                    if not remote:  # a cluster attempt clears its outputs as it starts
                        self._clear_outputs(job["folder"], row["name"])
                    self._task_status(job_id, row["name"], T.WAITING, "rerun", attempts=0,
                                      exit_code=None, session_id=None, timed_out=0, cached=0,
                                      cache_key=None, next_attempt_at=None, finished_at=None)
            self._job_status(job_id, J.RUNNING, "rerun from the failed tasks")
        self._wake.set()
        return self.get(job_id)

    # -- rows and JSON -----------------------------------------------------
    def _job_row(self, job_id: str) -> Any:
        row = self.store.one("SELECT * FROM pipeline_jobs WHERE id = ?", (job_id,))
        if row is None:
            raise NotFound(f"pipeline job '{job_id}' not found")
        return row

    def _task_row(self, job_id: str, task: str) -> Any:
        self._job_row(job_id)
        row = self.store.one("SELECT * FROM pipeline_tasks WHERE job_id = ? AND name = ?",
                             (job_id, task))
        if row is None:
            raise NotFound(f"pipeline job '{job_id}' has no task '{task}'")
        return row

    def _tasks_of(self, job_id: str) -> list[Any]:
        return self.store.query(
            "SELECT * FROM pipeline_tasks WHERE job_id = ? ORDER BY position", (job_id,))

    def _task_json(self, row: Any, spec: PipelineSpec) -> dict[str, Any]:
        started, finished = row["started_at"], row["finished_at"]
        duration = None
        if started is not None:
            duration = round((finished or time.time()) - started, 3)
        info = row["status_info"]
        if row["status"] == T.RUNNING.value and row["session_id"]:
            session = self.store.one("SELECT status FROM sessions WHERE id = ?",
                                     (row["session_id"],))
            if session is not None and session["status"] == SessionStatus.PENDING.value:
                info = f"{info}; queued: waiting for resources"
        return {
            "name": row["name"], "status": row["status"], "status_info": info,
            "attempts": row["attempts"], "exit_code": row["exit_code"],
            "session_id": row["session_id"], "cached": bool(row["cached"]),
            "depends_on": spec.task(row["name"]).depends_on,
            "started_at": _iso(started), "finished_at": _iso(finished), "duration": duration,
        }

    def _job_json(self, row: Any, history: bool = True) -> dict[str, Any]:
        spec = PipelineSpec.model_validate_json(row["spec"])
        data: dict[str, Any] = {
            "id": row["id"], "name": row["name"], "status": row["status"],
            "status_info": row["status_info"], "folder": row["folder"],
            "engine": spec.engine or "local",
            "created_at": _iso(row["created_at"]), "finished_at": _iso(row["finished_at"]),
            "tasks": [self._task_json(t, spec) for t in self._tasks_of(row["id"])],
        }
        if history:
            data["status_history"] = [
                {"task": h["task"], "status": h["status"], "at": _iso(h["at"]), "info": h["info"]}
                for h in self.store.query(
                    "SELECT * FROM pipeline_status_history WHERE job_id = ? ORDER BY at, rowid",
                    (row["id"],))
            ]
            data["notifications"] = [self._notification_json(n) for n in self.store.query(
                "SELECT * FROM pipeline_notifications WHERE job_id = ? ORDER BY id", (row["id"],))]
        return data

    @staticmethod
    def _notification_json(row: Any) -> dict[str, Any]:
        url = httpx.URL(row["url"])
        status = ("DELIVERED" if row["delivered_at"] is not None
                  else "GAVE_UP" if row["gave_up_at"] is not None else "PENDING")
        return {"webhook": f"{url.scheme}://{url.netloc.decode()}", "status": status,
                "attempts": row["attempts"], "last_error": row["last_error"],
                "dedupe_key": row["dedupe_key"], "delivered_at": _iso(row["delivered_at"])}

    # -- status changes (each with its history row and event, in one transaction) --------
    def _history(self, job_id: str, task: str | None, status: str, info: str | None,
                 at: float) -> None:
        self.store.execute(
            "INSERT INTO pipeline_status_history(job_id, task, status, at, info) "
            "VALUES (?,?,?,?,?)", (job_id, task, status, at, info))

    def _publish_job(self, job_id: str) -> None:
        row = self._job_row(job_id)
        self.events.publish("pipeline-job", row["id"], id=row["id"], pipeline=row["name"],
                            status=row["status"], info=row["status_info"])

    def _job_status(self, job_id: str, status: JobStatus, info: str | None) -> None:
        now = time.time()
        with self.store.tx():
            finished = now if status.is_final else None
            self.store.execute(
                "UPDATE pipeline_jobs SET status = ?, status_info = ?, finished_at = ? "
                "WHERE id = ?", (status.value, info, finished, job_id))
            self._history(job_id, None, status.value, info, now)
            self._publish_job(job_id)

    def _task_status(self, job_id: str, task: str, status: TaskStatus, info: str | None,
                     **fields: Any) -> None:
        now = time.time()
        if status == T.RUNNING:
            fields.setdefault("attempt_started_at", now)
        if status.is_final:
            fields.setdefault("finished_at", now)
        sets = ["status = ?", "status_info = ?", *(f"{k} = ?" for k in fields)]
        with self.store.tx():
            self.store.execute(
                f"UPDATE pipeline_tasks SET {', '.join(sets)} WHERE job_id = ? AND name = ?",
                (status.value, info, *fields.values(), job_id, task))
            self._history(job_id, task, status.value, info, now)
            row = self._task_row(job_id, task)
            self.events.publish(
                "pipeline-task", f"{job_id}/{task}", job_id=job_id, task=task,
                status=status.value, info=info, attempts=row["attempts"],
                exit_code=row["exit_code"], session_id=row["session_id"])

    # -- the runner --------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self._wake.set()

    async def _listen(self) -> None:
        async for event in self.events.subscribe(buffer=10_000):
            if event["kind"] in ("session", "resync"):
                self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()  # (no wait_for: on 3.11 it can swallow a cancel)
            self._wake.clear()
            try:
                for job in self.store.query(
                    "SELECT id FROM pipeline_jobs WHERE status IN (?, ?) ORDER BY seq",
                    (J.RUNNING.value, J.CANCELLING.value),
                ):
                    self._advance(job["id"])
                for note in self.store.query(
                    "SELECT id FROM pipeline_notifications WHERE delivered_at IS NULL "
                    "AND gave_up_at IS NULL AND next_at <= ?", (time.time(),)
                ):
                    if note["id"] not in self._delivering:
                        self._delivering.add(note["id"])
                        self._spawn(self._deliver(note["id"]))
            except Exception:  # one bad job must not stop the others
                log.exception("pipeline runner pass failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _advance(self, job_id: str) -> None:
        job = self._job_row(job_id)
        spec = PipelineSpec.model_validate_json(job["spec"])
        cancelling = job["status"] == J.CANCELLING.value
        now = time.time()
        rows = {r["name"]: r for r in self._tasks_of(job_id)}
        for name in spec.order():
            row = rows[name]
            status = T(row["status"])
            task = spec.task(name)
            if status == T.RUNNING:
                self._follow(job_id, spec, row, now, cancelling)
            elif cancelling and status in (T.WAITING, T.RETRYING):
                self._task_status(job_id, name, T.CANCELLED, "job cancelled")
            elif (job_id, name) in self._starting:
                pass  # its cluster session is being made
            elif status == T.WAITING:
                deps = [T(self._task_row(job_id, d)["status"]) for d in task.depends_on]
                bad = [d for d, s in zip(task.depends_on, deps)
                       if s in (T.FAILED, T.SKIPPED, T.CANCELLED)]
                if bad:
                    self._task_status(job_id, name, T.SKIPPED, f"dependency '{bad[0]}' did not "
                                      "succeed")
                elif all(s == T.SUCCEEDED for s in deps):
                    if not task.cache:
                        self._start_attempt(job, spec, name, row["attempts"])
                    elif (job_id, name) in self._hashing:
                        pass  # its cache key is being computed (off the event loop)
                    elif row["cache_key"] is None:
                        self._hashing.add((job_id, name))
                        self._spawn(self._look_up_cache(job, spec, name))
                    else:  # looked up: a miss
                        self._start_attempt(job, spec, name, row["attempts"])
            elif status == T.RETRYING and (row["next_attempt_at"] or 0) <= now:
                if spec.engine is None:
                    self._clear_outputs(job["folder"], name)
                self._start_attempt(job, spec, name, row["attempts"])
        rows = {r["name"]: r for r in self._tasks_of(job_id)}
        statuses = [T(r["status"]) for r in rows.values()]
        if all(s.is_final for s in statuses):
            if cancelling:
                final, info = J.CANCELLED, "cancelled"
            elif all(s == T.SUCCEEDED for s in statuses):
                final, info = J.SUCCEEDED, None
            else:
                failed = [n for n, r in rows.items() if r["status"] == T.FAILED.value]
                final, info = J.FAILED, f"failed: {', '.join(failed)}"
            with self.store.tx():  # the end and its notifications, or neither
                self._job_status(job_id, final, info)
                self._queue_notifications(job_id, spec, final)
            self._wake.set()  # the notifier

    def _follow(self, job_id: str, spec: PipelineSpec, row: Any, now: float,
                cancelling: bool) -> None:
        """A RUNNING task: finish it when its session has ended; enforce its timeout."""
        name, sid = row["name"], row["session_id"]
        if spec.engine is not None:
            try:
                session = self._cluster(spec.engine).seen.get(sid) if sid else None
            except BaiError as err:  # the engine left the engine list meanwhile
                self._task_status(job_id, name, T.FAILED, f"engine {spec.engine!r}: {err.message}")
                return
            if session is None:
                return  # not polled yet (after a restart): the poller wakes the runner
        else:
            session = self.store.one("SELECT status, result, exit_code, status_info, started_at "
                                     "FROM sessions WHERE id = ?", (sid,)) if sid else None
        if session is None:  # the engine died between marking it and making its session
            self._start_attempt(self._job_row(job_id), spec, name, row["attempts"] - 1)
            return
        status = SessionStatus(session["status"])
        if not status.is_terminal:
            # The clock runs from the session's start: time queued for resources is not counted.
            timeout = spec.task(name).timeout or spec.defaults.timeout
            since = session["started_at"]
            if (timeout and since and now - max(since, row["attempt_started_at"] or 0) > timeout
                    and sid not in self._stopping):
                self.store.execute("UPDATE pipeline_tasks SET timed_out = 1 WHERE job_id = ? "
                                   "AND name = ?", (job_id, name))
                self._spawn(self._destroy(sid, spec.engine))
            elif cancelling and sid not in self._stopping:
                self._spawn(self._destroy(sid, spec.engine))
            return
        code = session["exit_code"]
        if cancelling:
            self._task_status(job_id, name, T.CANCELLED, "job cancelled", exit_code=code)
            return
        if session["result"] == "success":
            with self.store.tx():
                self._task_status(job_id, name, T.SUCCEEDED, None, exit_code=code)
                if row["cache_key"]:  # "" when the look-up failed
                    self.store.execute(
                        "INSERT OR REPLACE INTO pipeline_cache(key, job_id, task, created_at) "
                        "VALUES (?,?,?,?)", (row["cache_key"], job_id, name, time.time()))
            return
        task = spec.task(name)
        timeout = task.timeout or spec.defaults.timeout
        why = (f"timed out after {timeout:g}s" if row["timed_out"]
               else session["status_info"] or f"exit code {code}")
        retries = task.retries if task.retries is not None else spec.defaults.retries
        if row["attempts"] <= retries:
            backoff = task.backoff or spec.defaults.backoff
            delay = backoff * 2 ** (row["attempts"] - 1)
            self._task_status(job_id, name, T.RETRYING,
                              f"attempt {row['attempts']} failed ({why}); retry in {delay:g}s",
                              exit_code=code, next_attempt_at=now + delay, timed_out=0)
        else:
            self._task_status(job_id, name, T.FAILED, why, exit_code=code)

    def _check(self, session: SessionSpec) -> None:
        runtime = self.sessions.runtime_for(session.image)
        resources = session.resources.with_defaults(self.sessions.defaults)
        check_can_ever_fit(resources, self.sessions.capacity)
        runtime.check(session.image, resources)
        for mount in session.mounts:
            self.vfolders.get(mount.source)

    def _session_spec(self, spec: PipelineSpec, name: str, job_id: str) -> SessionSpec:
        task = spec.task(name)
        resources = task.resources if task.resources is not None else spec.defaults.resources
        if task.notebook is not None:
            # The runner's source goes in the command: the session's Python has nbclient but
            # may not see this package (an editable install lives outside the sandbox).
            command = " ".join([
                "exec python3 -c", shlex.quote(NOTEBOOK_RUNNER),
                shlex.quote(f"{PIPELINE_ROOT}/outputs/{notebook_file(task.notebook)}"),
                shlex.quote(json.dumps(task.parameters)),
            ])
        else:
            # FastTrack's task scripts are bash ($RANDOM, arrays); sh where an image has none.
            script = shlex.quote(task.command or "")
            command = (f"if command -v bash >/dev/null 2>&1; then exec bash -c {script}; "
                       f"else exec sh -c {script}; fi")
        return SessionSpec(
            image=task.image or spec.defaults.image,
            name=f"pl-{job_id[:12]}-{name}",
            type=SessionType.batch, command=command, resources=resources,
            mounts=[*spec.mounts, *task.mounts], env={**spec.env, **task.env},
        )

    def _start_attempt(self, job: Any, spec: PipelineSpec, name: str, attempts: int) -> None:
        if spec.engine is not None:
            self._starting.add((job["id"], name))
            self._spawn(self._start_on_cluster(job, spec, name, attempts))
            return
        job_id, folder = job["id"], job["folder"]
        task = spec.task(name)
        mounts = [{"source": folder, "subpath": f"tasks/{name}/outputs",
                   "target": f"{PIPELINE_ROOT}/outputs", "perm": "rw"}]
        for i, dep in enumerate(task.depends_on, 1):
            sub = f"tasks/{dep}/outputs"
            mounts.append({"source": folder, "subpath": sub,
                           "target": f"{PIPELINE_ROOT}/input{i}", "perm": "ro"})
            mounts.append({"source": folder, "subpath": sub,
                           "target": f"{PIPELINE_ROOT}/inputs/{dep}", "perm": "ro"})
        if task.notebook is not None:
            if task.notebook_content is None:
                raise InvalidRequest(f"task '{name}': the notebook was not sent with the job")
            self.vfolders.upload(folder, f"tasks/{name}/outputs/{notebook_file(task.notebook)}",
                                 json.dumps(task.notebook_content).encode())
        env = {"BACKENDAI_PIPELINE_JOB_ID": job_id, "BACKENDAI_PIPELINE_TASK_ID": name,
               "BACKENDAI_PIPELINE_NAME": spec.name}
        try:
            with self.store.tx():  # the session and the task's link to it, or neither
                session = self.sessions.create(self._session_spec(spec, name, job_id),
                                               engine_env=env, engine_mounts=mounts)
                first = self._task_row(job_id, name)["started_at"] or time.time()
                self._task_status(job_id, name, T.RUNNING, f"attempt {attempts + 1}",
                                  attempts=attempts + 1, session_id=session["id"],
                                  started_at=first, exit_code=None)
        except Exception as exc:
            log.info("pipeline %s task %s could not start: %s", job_id, name, exc)
            self._task_status(job_id, name, T.FAILED, f"could not start: {exc}",
                              attempts=attempts + 1)

    async def _start_on_cluster(self, job: Any, spec: PipelineSpec, name: str,
                                attempts: int) -> None:
        """An attempt as a batch session on the job's cluster: its outputs emptied, the session
        made, then the task RUNNING with it (or FAILED with the cluster's reason)."""
        job_id, folder = job["id"], job["folder"]
        assert spec.engine is not None
        task = spec.task(name)
        sid: str | None = None
        try:
            launcher = self._cluster(spec.engine)
            await launcher.clear_outputs(folder, name)
            session = self._session_spec(spec, name, job_id)
            mounts, targets = task_mounts(folder, name, task.depends_on)
            for m in [*spec.mounts, *task.mounts]:
                mounts.append(m.source)
                targets[m.source] = m.target
            sid = await launcher.start(
                name=f"{session.name}-{attempts + 1}"[:64], image=session.image,
                command=session.command or "", mounts=mounts, mount_map=targets,
                env={**session.env, "BACKENDAI_PIPELINE_JOB_ID": job_id,
                     "BACKENDAI_PIPELINE_TASK_ID": name, "BACKENDAI_PIPELINE_NAME": spec.name},
                resources={k: v for k, v in session.resources.to_json().items() if v != "0"})
            with self.store.tx():
                row = self._task_row(job_id, name)
                if T(row["status"]) not in (T.WAITING, T.RETRYING):
                    stale = True  # cancelled while the session was being made
                else:
                    stale = False
                    self._task_status(job_id, name, T.RUNNING,
                                      f"attempt {attempts + 1} on {spec.engine}",
                                      attempts=attempts + 1, session_id=sid,
                                      started_at=row["started_at"] or time.time(), exit_code=None)
            if stale:
                await launcher.destroy(sid)
        except Exception as exc:
            log.info("pipeline %s task %s could not start on %s: %s", job_id, name, spec.engine, exc)
            if sid is not None:
                await self._cluster(spec.engine).destroy(sid)
            if T(self._task_row(job_id, name)["status"]) in (T.WAITING, T.RETRYING):
                why = exc.message if isinstance(exc, BaiError) else str(exc)
                self._task_status(job_id, name, T.FAILED, f"could not start: {why}",
                                  attempts=attempts + 1)
        finally:
            self._starting.discard((job_id, name))
            self._wake.set()

    async def _poll_clusters(self) -> None:
        """The status of every running cluster task's session, for the runner's next pass."""
        while True:
            await asyncio.sleep(CLUSTER_POLL)
            try:
                rows = self.store.query(
                    "SELECT json_extract(j.spec, '$.engine') AS engine, t.session_id AS sid "
                    "FROM pipeline_tasks t JOIN pipeline_jobs j ON j.id = t.job_id "
                    "WHERE t.status = ? AND t.session_id IS NOT NULL AND j.status IN (?, ?) "
                    "AND json_extract(j.spec, '$.engine') IS NOT NULL",
                    (T.RUNNING.value, J.RUNNING.value, J.CANCELLING.value))
                by_engine: dict[str, list[str]] = {e: [] for e in self._clusters}
                for r in rows:
                    by_engine.setdefault(r["engine"], []).append(r["sid"])
                changed = await asyncio.gather(
                    *(self._cluster(e).poll(sids) for e, sids in by_engine.items()),
                    return_exceptions=True)
                for engine, result in zip(by_engine, changed):
                    if isinstance(result, BaseException):
                        log.warning("polling engine %s failed: %s", engine, result)
                if any(c is True for c in changed):
                    self._wake.set()
            except Exception:
                log.exception("polling cluster pipeline sessions failed")

    # -- opt-in cache ------------------------------------------------------
    def _cache_key(self, root: Path, spec: PipelineSpec, name: str) -> str:
        """Image, command (or notebook and parameters), env and the hashes of every input.
        Reads every input file: runs in a worker thread, never on the event loop."""
        task = spec.task(name)
        digest = hashlib.sha256(json.dumps({
            "image": task.image or spec.defaults.image, "command": task.command,
            "notebook": task.notebook_content, "parameters": task.parameters,
            "env": {**spec.env, **task.env},
            "mounts": [str(m) for m in [*spec.mounts, *task.mounts]],
        }, sort_keys=True, default=str).encode())
        for dep in task.depends_on:
            digest.update(f"\0input {dep}\0".encode())
            base = root / "tasks" / dep / "outputs"
            for path in sorted(p for p in base.rglob("*") if not p.is_symlink()):
                digest.update(str(path.relative_to(base)).encode() + b"\0")
                if path.is_file():
                    file_digest = hashlib.sha256()
                    with path.open("rb") as f:
                        for chunk in iter(lambda: f.read(1 << 20), b""):
                            file_digest.update(chunk)
                    digest.update(file_digest.digest())
        return digest.hexdigest()

    def _copy_outputs(self, src: Path, dst: Path) -> None:
        """A cache hit's outputs into this task's (a worker thread: it may be large)."""
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
        if self.vfolders.owner is not None:
            for path in [dst, *dst.rglob("*")]:
                os.chown(path, *self.vfolders.owner, follow_symlinks=False)

    async def _look_up_cache(self, job: Any, spec: PipelineSpec, name: str) -> None:
        """For a ``cache: true`` task whose inputs are ready: compute its key and reuse the
        outputs of an earlier identical run, or leave the key for the runner to start it."""
        job_id = job["id"]
        loop = asyncio.get_running_loop()
        try:
            root = self.vfolders.host_path(job["folder"])
            key = await loop.run_in_executor(None, self._cache_key, root, spec, name)
            if T(self._task_row(job_id, name)["status"]) != T.WAITING:
                return  # cancelled meanwhile
            hit = self.store.one(
                "SELECT c.job_id, c.task, j.folder FROM pipeline_cache c JOIN pipeline_jobs j "
                "ON j.id = c.job_id WHERE c.key = ?", (key,))
            if hit is not None:
                try:
                    src = self.vfolders.host_path(hit["folder"]) / "tasks" / hit["task"] / "outputs"
                    if not src.is_dir():
                        raise NotFound(f"{src} is gone")
                    await loop.run_in_executor(
                        None, self._copy_outputs, src, root / "tasks" / name / "outputs")
                except (NotFound, OSError) as exc:
                    log.info("pipeline cache entry %s not usable: %s", key[:12], exc)
                    hit = None
            with self.store.tx():
                if T(self._task_row(job_id, name)["status"]) != T.WAITING:
                    return
                self.store.execute("UPDATE pipeline_tasks SET cache_key = ? "
                                   "WHERE job_id = ? AND name = ?", (key, job_id, name))
                if hit is not None:
                    self._task_status(
                        job_id, name, T.SUCCEEDED,
                        f"cached: outputs of job {hit['job_id']} task {hit['task']}",
                        cached=1, exit_code=0, started_at=time.time())
        except Exception as exc:  # unreadable inputs: the task runs, uncached
            log.warning("pipeline %s task %s: cache look-up failed: %s", job_id, name, exc)
            self.store.execute("UPDATE pipeline_tasks SET cache_key = ? WHERE job_id = ? "
                               "AND name = ? AND status = ?", ("", job_id, name, T.WAITING.value))
        finally:
            self._hashing.discard((job_id, name))
            self._wake.set()

    def _clear_outputs(self, folder: str, name: str) -> None:
        path = f"tasks/{name}/outputs"
        try:
            self.vfolders.remove(folder, path, recursive=True)
        except NotFound:
            pass
        self.vfolders.mkdir(folder, path, parents=True, exist_ok=True)

    async def _destroy(self, sid: str, engine: str | None = None) -> None:
        self._stopping.add(sid)
        try:
            if engine is not None:
                await self._cluster(engine).destroy(sid)
                await self._cluster(engine).refresh(sid)
            else:
                await self.sessions.destroy(sid)
        except (InvalidState, NotFound):
            pass  # it ended by itself meanwhile
        except Exception:
            log.exception("stopping pipeline session %s failed", sid)
        finally:
            self._stopping.discard(sid)
            self._wake.set()

    # -- notifications -------------------------------------------------------
    def summary_text(self, job_id: str) -> str:
        job = self.get(job_id)
        lines = [f"Pipeline job {job['name']} ({job['id']}) {job['status']}"]
        for t in job["tasks"]:
            extra = [f"attempts {t['attempts']}"]
            if t["exit_code"] is not None:
                extra.append(f"exit code {t['exit_code']}")
            if t["duration"] is not None:
                extra.append(f"{t['duration']:.1f}s")
            lines.append(f"• {t['name']}: {t['status']} ({', '.join(extra)})")
        return "\n".join(lines)

    def _queue_notifications(self, job_id: str, spec: PipelineSpec, status: JobStatus) -> None:
        """An outbox row per webhook that asked for this outcome, in the transaction that
        ends the job: a delivery survives the engine being killed before it is sent."""
        outcome = {J.SUCCEEDED: "success", J.FAILED: "failure"}.get(status, "cancelled")
        body = json.dumps({"text": self.summary_text(job_id)})
        now = time.time()
        for n in spec.notify:
            if outcome in n.on:
                self.store.execute(
                    "INSERT INTO pipeline_notifications(job_id, url, body, dedupe_key, next_at, "
                    "created_at) VALUES (?,?,?,?,?,?)",
                    (job_id, n.webhook, body, f"{job_id}-{secrets.token_hex(8)}", now, now))

    async def _deliver(self, note_id: int) -> None:
        """POST one notification; a receiver that is down or answers non-2xx is retried with
        backoff (the same ``Idempotency-Key`` each time, so it can drop duplicates)."""
        try:
            row = self.store.one("SELECT * FROM pipeline_notifications WHERE id = ?", (note_id,))
            if row is None or row["delivered_at"] is not None or self._http is None:
                return
            try:
                resp = await self._http.post(row["url"], content=row["body"], headers={
                    "Content-Type": "application/json", DEDUPE_HEADER: row["dedupe_key"]})
                error = None if resp.is_success else f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            now, attempts = time.time(), row["attempts"] + 1
            if error is None:
                self.store.execute("UPDATE pipeline_notifications SET attempts = ?, "
                                   "delivered_at = ?, last_error = NULL WHERE id = ?",
                                   (attempts, now, note_id))
            elif now - row["created_at"] >= NOTIFY_GIVE_UP:
                log.error("pipeline %s: notification not delivered after %d attempts (%s); "
                          "giving up", row["job_id"], attempts, error)
                self.store.execute("UPDATE pipeline_notifications SET attempts = ?, "
                                   "gave_up_at = ?, last_error = ? WHERE id = ?",
                                   (attempts, now, error, note_id))
            else:
                delay = min(self.notify_backoff * 2 ** (attempts - 1), NOTIFY_MAX_BACKOFF)
                log.warning("pipeline %s: notification attempt %d failed (%s); retry in %gs",
                            row["job_id"], attempts, error, delay)
                self.store.execute("UPDATE pipeline_notifications SET attempts = ?, "
                                   "next_at = ?, last_error = ? WHERE id = ?",
                                   (attempts, now + delay, error, note_id))
        except Exception:
            log.exception("pipeline notification %s failed", note_id)
        finally:
            self._delivering.discard(note_id)
