"""Notebook deploy: a saved notebook (plus listed files) becomes a numbered service version.

Everything is checked first (the notebook parses and has an endpoint, every file exists, the
service could run it); only then is a model folder ``<name>.v<N>`` made and filled with the
notebook, the files, the generated ``model-definition.yaml`` and a copy of the runner
(``.bai/lib/jupyter_bai/serving``), and the service created or pointed at the new version. The
reconcile loop (:mod:`.services`) then rolls routes over one at a time. Any failure before the
service row changes removes the folder again, so a refused deploy leaves nothing behind.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..serving.capture import capture, metadata
from ..spec.deploy import DeployRequest
from ..spec.errors import BaiError, Conflict, InvalidRequest, NotFound
from ..spec.service import NOTEBOOK_RUNTIME, MODEL_MOUNT, ServiceCreate, notebook_definition
from ..spec.vfolder import VFolderCreate
from .config import EngineConfig
from .services import ServiceManager
from .store import Store
from .vfolders import VFolderManager

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent.parent  # jupyter_bai/
RUNTIME_FILES = ("__init__.py", "_version.py", *(f"serving/{p.name}" for p in sorted(
    (PACKAGE / "serving").glob("*.py"))))
TOKEN_TTL = "1d"


def _folder_name(service: str, version: int) -> str:
    suffix = f".v{version}"
    return service[: 64 - len(suffix)] + suffix


class DeployManager:
    def __init__(self, config: EngineConfig, store: Store, services: ServiceManager,
                 vfolders: VFolderManager):
        self.config = config
        self.store = store
        self.services = services
        self.vfolders = vfolders
        self._lock = asyncio.Lock()

    # -- paths under the Jupyter root --------------------------------------
    @property
    def root(self) -> Path:
        return (self.config.bind_root or Path.cwd()).resolve()

    def _resolve(self, path: str, what: str) -> Path:
        try:
            p = Path(path)
            full = (p if p.is_absolute() else self.root / p).resolve()
            inside = full == self.root or self.root in full.parents
            exists = inside and full.exists()
        except (OSError, ValueError) as exc:  # NUL bytes, names too long, loops
            raise InvalidRequest(f"invalid {what} path {path[:200]!r}: {exc}") from None
        if not inside:
            raise InvalidRequest(f"{what} '{path}' is outside the Jupyter root {self.root}")
        if not exists:
            raise NotFound(f"{what} '{path}' does not exist (under {self.root})")
        return full

    def _notebook(self, path: str) -> tuple[Path, str]:
        nb = self._resolve(path, "notebook")
        if not nb.is_file() or nb.suffix != ".ipynb":
            raise InvalidRequest(f"notebook '{path}' is not an .ipynb file")
        try:
            return nb, nb.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InvalidRequest(f"cannot read notebook '{path}': {exc.strerror or exc}") from None

    def check(self, notebook: str) -> dict[str, Any]:
        """What the notebook would serve and its problems (the deploy button's preview)."""
        nb, text = self._notebook(notebook)
        c = capture(text, nb.name)
        return {"notebook": notebook, "hash": c.hash, "problems": c.problems,
                "endpoints": [e.to_json() for e in c.endpoints], "warnings": c.warnings}

    # -- deploy --------------------------------------------------------------
    def _files(self, files: list[str]) -> list[tuple[Path, str]]:
        out: list[tuple[Path, str]] = []
        seen: dict[str, str] = {}
        for f in files:
            src = self._resolve(f, "listed file")
            if not (src.is_file() or src.is_dir()):  # a FIFO would block the pack, a device worse
                raise InvalidRequest(f"listed file '{f}' is not a regular file or a directory")
            name = src.name
            if name in seen:
                raise InvalidRequest(f"listed files '{seen[name]}' and '{f}' would both be "
                                     f"{MODEL_MOUNT}/{name}")
            if name in ("model-definition.yaml", ".bai"):
                raise InvalidRequest(f"listed file '{f}': the name '{name}' is the deploy's own")
            seen[name] = f
            out.append((src, name))
        return out

    @staticmethod
    def _walk(src: Path, name: str) -> Iterator[tuple[Path, str]]:
        if src.is_file():
            yield src, name
            return
        for p in sorted(src.rglob("*")):
            if p.is_file() and not p.is_symlink():
                yield p, f"{name}/{p.relative_to(src).as_posix()}"

    def _pack(self, folder: str, nb: Path, nb_text: str, files: list[tuple[Path, str]],
              definition: dict[str, Any]) -> None:
        up = self.vfolders.upload
        up(folder, nb.name, nb_text.encode())
        for src, name in files:
            for path, rel in self._walk(src, name):
                with open(path, "rb") as fh:
                    up(folder, rel, fh, size_hint=path.stat().st_size)
        up(folder, "model-definition.yaml", yaml.safe_dump(definition, sort_keys=False).encode())
        lib = NOTEBOOK_RUNTIME.removeprefix(MODEL_MOUNT + "/")
        for rel in RUNTIME_FILES:
            up(folder, f"{lib}/jupyter_bai/{rel}", (PACKAGE / rel).read_bytes())

    async def deploy(self, name: str, req: DeployRequest) -> dict[str, Any]:
        """Check, pack (in a thread: listed files may be large), then create or update.

        One deploy at a time, so that two of one name cannot both take the next version.
        """
        async with self._lock:
            return await self._deploy(name, req)

    async def _deploy(self, name: str, req: DeployRequest) -> dict[str, Any]:
        nb, text = self._notebook(req.notebook)
        captured = capture(text, nb.name)
        if captured.problems:
            raise InvalidRequest(f"cannot deploy {nb.name}: " + "; ".join(captured.problems))
        files = self._files(req.files)
        health = metadata(text).get("health_check")
        try:
            definition = notebook_definition(nb.name, health if isinstance(health, dict) else None,
                                             name=name)
        except ValueError as exc:
            raise InvalidRequest(f"{nb.name}: metadata.bai.health_check: {exc}") from None
        existing = self.store.one("SELECT * FROM services WHERE name = ?", (name,))
        if existing is not None:
            if json.loads(existing["spec"]).get("runtime_variant") != "notebook":
                raise Conflict(f"service '{name}' exists and is not a deployed notebook")
            if existing["terminating"]:
                raise Conflict(f"service '{name}' is being removed")
        last = self.store.one(
            "SELECT MAX(v.version) AS v FROM service_versions v JOIN services s "
            "ON s.id = v.service_id WHERE s.name = ?", (name,))
        version = int(last["v"] or 0) + 1 if last else 1
        folder = _folder_name(name, version)
        spec = ServiceCreate.model_validate({
            "name": name, "image": req.image, "model_folder": folder,
            "replicas": req.replicas, "public": req.public, "runtime_variant": "notebook",
            "resources": req.resources,
            "env": {"BAI_NOTEBOOK": nb.name},
        })
        self.services.check_runnable(spec)  # the image and variant, before anything is made
        # Journal first: if the engine dies from here on, its next start removes the folder.
        self.store.execute("INSERT OR REPLACE INTO deploy_pending(folder, created_at) VALUES (?, ?)",
                           (folder, time.time()))
        try:
            self.vfolders.create(VFolderCreate(name=folder, usage_mode="model", permission="ro"))
        except BaseException as exc:
            self._settled(folder)
            if isinstance(exc, Conflict):
                raise Conflict(f"vfolder '{folder}' already exists: deploying '{name}' makes it "
                               f"for version {version}; rename or remove that folder") from None
            raise
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self._pack, folder, nb, text, files,
                definition.model_dump(mode="json", exclude_none=True))
            with self.store.tx():
                if existing is None:
                    self.services.create(spec)
                sid = self.services.set_version(name, spec, version)
                self.store.execute(
                    "INSERT INTO service_versions(service_id, version, hash, notebook, "
                    "model_folder, spec, endpoints, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (sid, version, captured.hash, req.notebook, folder,
                     json.dumps(spec.model_dump(mode="json")),
                     json.dumps([e.to_json() for e in captured.endpoints]), time.time()))
                self._settled(folder)
        except BaseException:
            self._drop_folder(folder)
            self._settled(folder)
            raise
        return self._answer(name, version, captured.hash, req.public,
                            [e.to_json() for e in captured.endpoints])

    def recover(self) -> None:
        """Remove the folders of deploys an engine was killed in the middle of (blocking)."""
        for row in self.store.query("SELECT folder FROM deploy_pending"):
            try:
                self.vfolders.lookup(row["folder"])
            except NotFound:
                pass
            else:
                log.warning("removing %s, left by a deploy the engine stopped in", row["folder"])
                self._drop_folder(row["folder"])
            self._settled(row["folder"])

    def _settled(self, folder: str) -> None:
        """The deploy that made ``folder`` has recorded its version, or removed the folder."""
        self.store.execute("DELETE FROM deploy_pending WHERE folder = ?", (folder,))

    def _drop_folder(self, folder: str) -> None:
        try:
            self.vfolders.delete(folder)
        except BaiError as exc:
            log.warning("removing deploy folder %s: %s", folder, exc)

    def _answer(self, name: str, version: int, hash_: str, public: bool,
                endpoints: list[dict[str, str]]) -> dict[str, Any]:
        token = None if public else self.services.issue_token(name, TOKEN_TTL)["token"]
        return {"service": name, "version": version, "hash": hash_,
                "endpoint": self.services.get(name)["endpoint"], "token": token,
                "endpoints": endpoints}

    # -- versions ------------------------------------------------------------
    def _versions(self, name: str) -> tuple[Any, list[Any]]:
        row = self.services.row(name)
        rows = self.store.query("SELECT * FROM service_versions WHERE service_id = ? "
                                "ORDER BY version", (row["id"],))
        if not rows:
            raise InvalidRequest(f"service '{row['name']}' was not deployed from a notebook")
        return row, rows

    def versions(self, name: str) -> dict[str, Any]:
        row, rows = self._versions(name)
        return {"versions": [
            {"version": v["version"], "hash": v["hash"], "notebook": v["notebook"],
             "created_at": v["created_at"], "current": v["version"] == row["version"]}
            for v in rows]}

    def rollback(self, name: str) -> dict[str, Any]:
        """Back to the version before the current one (routes roll over as for a deploy)."""
        row, rows = self._versions(name)
        earlier = [v for v in rows if v["version"] < row["version"]]
        if not earlier:
            raise InvalidRequest(f"service '{row['name']}' has no version before "
                                 f"{row['version']} to roll back to")
        target = earlier[-1]
        spec = ServiceCreate.model_validate(json.loads(target["spec"]))
        self.vfolders.get(target["model_folder"])
        self.services.set_version(row["name"], spec, target["version"])
        return self._answer(row["name"], target["version"], target["hash"], spec.public,
                            json.loads(target["endpoints"]))

    def forget(self, service_id: str) -> None:
        """The service is gone: its version folders and rows go too."""
        for v in self.store.query("SELECT model_folder FROM service_versions WHERE "
                                  "service_id = ?", (service_id,)):
            try:
                self.vfolders.get(v["model_folder"])
            except NotFound:
                continue
            self._drop_folder(v["model_folder"])
        with self.store.tx():
            self.store.execute("DELETE FROM service_versions WHERE service_id = ?", (service_id,))

