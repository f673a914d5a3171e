"""The backend seam: what :class:`~jupyter_bai.client.aio.AsyncClient` needs from an engine.

A :class:`Driver` is to the client what jupyter_client's ``KernelProvisionerBase`` is to a
kernel manager: a small ABC the front ends never see. Every method is one primitive operation
of a backend, typed with :mod:`jupyter_bai.spec.models`; everything built on top of them
(waiting for a status, upload plans and progress, recursive downloads, output callbacks,
Ctrl-C, the sync :class:`~jupyter_bai.client.Client`) lives once in the client. So a new
backend (the Backend.AI cluster driver) implements these methods and the CLI, ``%bai``,
kernels and notebooks work over it unchanged.

Implementations here: :class:`HttpDriver` (this engine's REST API, the default) and
:class:`~jupyter_bai.client.inprocess.EngineDriver` (an engine in this process, no HTTP).

Contract:

* Errors are :class:`~jupyter_bai.spec.errors.BaiError` subclasses with one-line messages
  (``NotFound`` for a missing session/folder/file, ``InvalidState``, ``Conflict``, ...).
* Methods returning ``AsyncIterator`` are async generators: the caller iterates them inside
  ``contextlib.aclosing`` so that leaving early closes the stream on the backend.
* Request arguments arrive already checked by the client (``create_session`` gets a
  ``SessionSpec``-shaped JSON object, ``create_vfolder`` a ``VFolderCreate``-shaped one).
* The assistant methods are optional: the defaults raise ``BaiError(code="unsupported")``.
"""
from __future__ import annotations

import abc
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from jupyter_bai.spec.errors import BaiError
from jupyter_bai.spec.models import (
    PipelineJobInfo,
    AssistantChange,
    AssistantSources,
    Event,
    ExecMessage,
    FileEntry,
    ImageList,
    Metrics,
    Resources,
    RunMessage,
    DeployCheck,
    DeployInfo,
    ServiceInfo,
    ServiceToken,
    ServiceVersions,
    SessionInfo,
    VFolderInfo,
)

__all__ = ["Driver", "StatusWaiter", "Unsupported"]

#: ``await waiter(timeout)`` returns when the watched session may have changed, or after timeout.
StatusWaiter = Callable[[float], Awaitable[None]]


class Unsupported(BaiError):
    """The backend has no such operation."""

    status, code = 501, "unsupported"


class Driver(abc.ABC):
    """One backend of the client (see the module doc for the contract)."""

    #: Shown in ``repr(client)`` and error messages: a URL or a short description.
    where: str = ""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections (and whatever the driver started)."""

    # -- node

    @abc.abstractmethod
    async def resources(self) -> Resources:
        """Capacity, used/free slots, GPUs, runtimes, pending count."""

    @abc.abstractmethod
    async def list_images(self) -> ImageList:
        """Images sessions can use."""

    # -- sessions

    @abc.abstractmethod
    async def create_session(self, request: Mapping[str, Any]) -> SessionInfo:
        """Create a session from a ``SessionSpec``-shaped request; returns at once."""

    @abc.abstractmethod
    async def list_sessions(self, status: str | None) -> list[SessionInfo]:
        """Live and finished sessions, newest first, optionally only ``status`` (comma list)."""

    @abc.abstractmethod
    async def get_session(self, name: str) -> SessionInfo:
        """One session by name or id."""

    def watch_session(self, session_id: str) -> AbstractAsyncContextManager[StatusWaiter | None]:
        """While open, a way to sleep until the session may have changed (``None``: poll).

        A backend that pushes session events (Backend.AI's ``/events/session``) lets the client
        wait for them instead of polling, which also spares a busy manager the queries.
        """
        return nullcontext(None)

    @abc.abstractmethod
    async def destroy_session(self, name: str, forced: bool) -> SessionInfo:
        """Start terminating; returns the session (TERMINATING or TERMINATED)."""

    @abc.abstractmethod
    async def session_logs(self, name: str, tail: int | None) -> str:
        """The combined log so far (its last ``tail`` lines)."""

    @abc.abstractmethod
    def follow_logs(self, name: str) -> AsyncIterator[str]:
        """Log text as it is written, from the start, until the session ends."""

    @abc.abstractmethod
    def exec_stream(
        self, name: str, command: str | list[str], env: Mapping[str, str] | None
    ) -> AsyncIterator[ExecMessage]:
        """Run a command in the session: ``stream`` messages, then ``done`` with ``exit_code``."""

    @abc.abstractmethod
    def run_stream(self, name: str, code: str) -> AsyncIterator[RunMessage]:
        """Run Python in the session's interpreter: ``stream``, optional ``result``, ``done``."""

    @abc.abstractmethod
    async def interrupt(self, name: str) -> bool:
        """Interrupt the running code; True when something was interrupted."""

    # -- vfolders

    @abc.abstractmethod
    async def create_vfolder(self, request: Mapping[str, Any]) -> VFolderInfo:
        """Create a folder from a ``VFolderCreate``-shaped request."""

    @abc.abstractmethod
    async def list_vfolders(self) -> list[VFolderInfo]:
        """All folders with usage."""

    @abc.abstractmethod
    async def get_vfolder(self, name: str) -> VFolderInfo:
        """One folder."""

    @abc.abstractmethod
    async def delete_vfolder(self, name: str) -> None:
        """Delete a folder and its files."""

    @abc.abstractmethod
    async def list_files(self, name: str, path: str) -> list[FileEntry]:
        """Entries of a directory in the folder (``""`` is the root)."""

    @abc.abstractmethod
    async def upload_file(
        self, name: str, path: str, chunks: AsyncIterable[bytes], size: int, *, parents: bool
    ) -> FileEntry:
        """Write ``size`` bytes from ``chunks`` to ``path`` (never holding the file whole)."""

    @abc.abstractmethod
    def download_file(self, name: str, path: str) -> AsyncIterator[bytes]:
        """The file's bytes in chunks; raises before the first chunk when it does not exist."""

    @abc.abstractmethod
    async def mkdir(self, name: str, path: str, parents: bool) -> FileEntry:
        """Create a directory (``parents``: like ``mkdir -p``)."""

    @abc.abstractmethod
    async def move(self, name: str, src: str, dst: str) -> FileEntry:
        """Move or rename inside the folder; returns the entry at ``dst``."""

    @abc.abstractmethod
    async def rm(self, name: str, path: str, recursive: bool) -> None:
        """Remove a file (a directory with ``recursive``)."""

    # -- events

    @abc.abstractmethod
    def events(self, since: int | None) -> AsyncIterator[Event]:
        """Change notifications, replaying those after ``since``; forwards ``resync`` markers."""

    # -- the API assistant (optional)

    def ask_stream(self, request: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        """The assistant's ``sources``, ``delta`` and ``done`` messages."""
        raise Unsupported(f"{self.where or type(self).__name__} has no API assistant")

    async def metrics(self) -> Metrics:
        """The newest usage sample and the short history (``interval``, ``latest``, ``history``)."""
        raise Unsupported(f"{self.where or type(self).__name__} reports no live metrics")

    async def assistant_sources(self) -> AssistantSources:
        raise Unsupported(f"{self.where or type(self).__name__} has no API assistant")

    async def assistant_learn(self, path: str) -> AssistantChange:
        raise Unsupported(f"{self.where or type(self).__name__} has no API assistant")

    async def assistant_forget(self, source: str) -> AssistantChange:
        raise Unsupported(f"{self.where or type(self).__name__} has no API assistant")

    # -- pipelines (optional)

    async def submit_pipeline(self, spec: Mapping[str, Any]) -> PipelineJobInfo:
        """Start a job from a resolved pipeline (``PipelineSpec`` JSON, ``${VAR}`` expanded)."""
        raise Unsupported(f"{self.where or type(self).__name__} runs no pipelines")

    async def list_pipeline_jobs(self) -> list[PipelineJobInfo]:
        raise Unsupported(f"{self.where or type(self).__name__} runs no pipelines")

    async def get_pipeline_job(self, job: str) -> PipelineJobInfo:
        raise Unsupported(f"{self.where or type(self).__name__} runs no pipelines")

    async def cancel_pipeline_job(self, job: str) -> PipelineJobInfo:
        raise Unsupported(f"{self.where or type(self).__name__} runs no pipelines")

    async def rerun_pipeline_job(self, job: str) -> PipelineJobInfo:
        raise Unsupported(f"{self.where or type(self).__name__} runs no pipelines")

    async def pipeline_task_logs(self, job: str, task: str) -> str:
        raise Unsupported(f"{self.where or type(self).__name__} runs no pipelines")
    # -- model services (optional: a backend without them says so)

    async def create_service(self, request: Mapping[str, Any]) -> ServiceInfo:
        """Create a service from a ``ServiceCreate``-shaped request; routes start after."""
        raise Unsupported(f"{self.where or type(self).__name__} has no model services")

    async def list_services(self) -> list[ServiceInfo]:
        raise Unsupported(f"{self.where or type(self).__name__} has no model services")

    async def get_service(self, name: str) -> ServiceInfo:
        raise Unsupported(f"{self.where or type(self).__name__} has no model services")

    async def scale_service(self, name: str, replicas: int) -> ServiceInfo:
        raise Unsupported(f"{self.where or type(self).__name__} has no model services")

    async def delete_service(self, name: str) -> ServiceInfo:
        raise Unsupported(f"{self.where or type(self).__name__} has no model services")

    async def issue_service_token(self, name: str, ttl: str) -> ServiceToken:
        raise Unsupported(f"{self.where or type(self).__name__} has no model services")

    async def service_logs(self, name: str, tail: int | None) -> str:
        raise Unsupported(f"{self.where or type(self).__name__} has no model services")

    async def add_autoscale_rule(self, name: str, rule: Mapping[str, Any]) -> ServiceInfo:
        raise Unsupported(f"{self.where or type(self).__name__} has no model services")

    async def remove_autoscale_rule(self, name: str, rule: str) -> ServiceInfo:
        raise Unsupported(f"{self.where or type(self).__name__} has no model services")

    async def check_deploy(self, notebook: str) -> DeployCheck:
        """What a notebook (path under the server's root_dir) would serve, and its problems."""
        raise Unsupported(f"{self.where or type(self).__name__} has no notebook deploy")

    async def deploy_notebook(self, name: str, request: Mapping[str, Any]) -> DeployInfo:
        """Deploy from a ``DeployRequest``-shaped request (a new numbered version)."""
        raise Unsupported(f"{self.where or type(self).__name__} has no notebook deploy")

    async def rollback_service(self, name: str) -> DeployInfo:
        raise Unsupported(f"{self.where or type(self).__name__} has no notebook deploy")

    async def service_versions(self, name: str) -> ServiceVersions:
        raise Unsupported(f"{self.where or type(self).__name__} has no notebook deploy")
