"""Every route of ``/bai/api/v1``, listed once (a test checks it against ``openapi.yaml``)."""
from __future__ import annotations

from typing import Any

from .base import API, BaiHandler
from .deploy import DeployCheckHandler, ServiceDeployHandler, ServiceRollbackHandler, ServiceVersionsHandler
from .engines import ActiveEngineHandler, EngineResourcesHandler, EngineSessionsHandler, EnginesHandler
from .events import EventsHandler
from .metrics import MetricsHandler
from .pipelines import (
    PipelineCancelHandler,
    PipelineJobHandler,
    PipelineJobsHandler,
    PipelineRerunHandler,
    PipelineTaskLogsHandler,
)
from .resources import ImagesHandler, OpenAPIHandler, ResourcesHandler
from .services import (
    ServiceAutoscaleHandler,
    ServiceHandler,
    ServiceLogsHandler,
    ServiceScaleHandler,
    ServicesHandler,
    ServiceTokenHandler,
)
from .sessions import (
    SessionExecHandler,
    SessionHandler,
    SessionInterruptHandler,
    SessionLogsHandler,
    SessionRunHandler,
    SessionsHandler,
)
from .vfolders import (
    VFolderDownloadHandler,
    VFolderFilesHandler,
    VFolderHandler,
    VFolderMkdirHandler,
    VFolderMoveHandler,
    VFolderRmHandler,
    VFoldersHandler,
)
from .ws import StreamSocket


NAME = r"(?P<name>[^/]+)"
JOB = r"(?P<job>[^/]+)"
TASK = r"(?P<task>[^/]+)"


def route_table() -> list[tuple[str, type[Any]]]:
    return [
        (rf"{API}/resources", ResourcesHandler),
        (rf"{API}/images", ImagesHandler),
        (rf"{API}/sessions", SessionsHandler),
        (rf"{API}/sessions/{NAME}", SessionHandler),
        (rf"{API}/sessions/{NAME}/logs", SessionLogsHandler),
        (rf"{API}/sessions/{NAME}/exec", SessionExecHandler),
        (rf"{API}/sessions/{NAME}/run", SessionRunHandler),
        (rf"{API}/sessions/{NAME}/interrupt", SessionInterruptHandler),
        (rf"{API}/vfolders", VFoldersHandler),
        (rf"{API}/vfolders/{NAME}", VFolderHandler),
        (rf"{API}/vfolders/{NAME}/files", VFolderFilesHandler),
        (rf"{API}/vfolders/{NAME}/download", VFolderDownloadHandler),
        (rf"{API}/vfolders/{NAME}/mkdir", VFolderMkdirHandler),
        (rf"{API}/vfolders/{NAME}/move", VFolderMoveHandler),
        (rf"{API}/vfolders/{NAME}/rm", VFolderRmHandler),
        (rf"{API}/pipelines/jobs", PipelineJobsHandler),
        (rf"{API}/pipelines/jobs/{JOB}", PipelineJobHandler),
        (rf"{API}/pipelines/jobs/{JOB}/cancel", PipelineCancelHandler),
        (rf"{API}/pipelines/jobs/{JOB}/rerun", PipelineRerunHandler),
        (rf"{API}/pipelines/jobs/{JOB}/tasks/{TASK}/logs", PipelineTaskLogsHandler),
        (rf"{API}/services", ServicesHandler),
        (rf"{API}/services/{NAME}", ServiceHandler),
        (rf"{API}/services/{NAME}/scale", ServiceScaleHandler),
        (rf"{API}/services/{NAME}/token", ServiceTokenHandler),
        (rf"{API}/services/{NAME}/logs", ServiceLogsHandler),
        (rf"{API}/services/{NAME}/autoscale", ServiceAutoscaleHandler),
        (rf"{API}/services/{NAME}/deploy", ServiceDeployHandler),
        (rf"{API}/services/{NAME}/rollback", ServiceRollbackHandler),
        (rf"{API}/services/{NAME}/versions", ServiceVersionsHandler),
        (rf"{API}/deploy/check", DeployCheckHandler),
        (rf"{API}/events", EventsHandler),
        (rf"{API}/ws", StreamSocket),
        (rf"{API}/metrics", MetricsHandler),
        (rf"{API}/engines", EnginesHandler),
        (rf"{API}/engines/active", ActiveEngineHandler),
        (rf"{API}/engines/{NAME}/resources", EngineResourcesHandler),
        (rf"{API}/engines/{NAME}/sessions", EngineSessionsHandler),
        (rf"{API}/openapi.yaml", OpenAPIHandler),
        *assistant_routes(),
    ]


def assistant_routes() -> list[tuple[str, type[BaiHandler]]]:
    from .assistant_handlers import AssistantAskHandler, AssistantSourcesHandler

    return [
        (rf"{API}/assistant/ask", AssistantAskHandler),
        (rf"{API}/assistant/sources", AssistantSourcesHandler),
    ]
