"""``/pipelines/jobs/*``: submit a pipeline (FastTrack) job, follow, cancel and rerun it."""
from __future__ import annotations

from ..engine.pipelines import PipelineManager
from ..spec.errors import RuntimeUnavailable
from ..spec.models import LogsText, PipelineJobInfo, PipelineJobList
from ..spec.pipeline import PipelineSpec
from .base import BaiHandler, api_method


class _PipelineHandler(BaiHandler):
    @property
    def pipelines(self) -> PipelineManager:
        manager = self.engine.pipelines
        if manager is None:
            raise RuntimeUnavailable("the pipeline runner is not running")
        return manager


class PipelineJobsHandler(_PipelineHandler):
    @api_method("read", operation_id="listPipelineJobs", tag="pipelines",
                response=PipelineJobList, summary="List pipeline jobs.",
                returns="The jobs, newest first.")
    async def get(self) -> None:
        """Example: `%bai pipeline jobs`, `jupyter bai pipeline jobs --json`."""
        await self.reply_off_loop(lambda: {"jobs": self.pipelines.list()})

    @api_method("write", operation_id="createPipelineJob", tag="pipelines", request=PipelineSpec,
                response=PipelineJobInfo, status=201, summary="Run a pipeline: start a job.",
                returns="The new job, its tasks WAITING or RUNNING.", errors=(400, 404, 503))
    async def post(self) -> None:
        """The body is the pipeline with `${VAR}`s already expanded (the client does it from
        the submitting environment). A bad pipeline (a cycle, an unknown dependency, an unknown
        image, a task that can never fit) is a 400 and starts nothing. Each task runs as a batch
        session, here or, when the pipeline names a Backend.AI `engine`, on that cluster (the
        job's folder is then a vfolder there); watch `pipeline-job` and `pipeline-task` events on `/events`.
        Example: `%bai pipeline run pipeline.yaml`, `jupyter bai pipeline run FILE --wait`.
        """
        spec = PipelineSpec.from_json(self.body_json())
        self.reply(await self.pipelines.submit_any(spec), status=201)


class PipelineJobHandler(_PipelineHandler):
    @api_method("read", operation_id="getPipelineJob", tag="pipelines", response=PipelineJobInfo,
                summary="One pipeline job with its tasks and status history.",
                returns="The job.", errors=(404,))
    async def get(self, job: str) -> None:
        """Example: `%bai pipeline info JOB`."""
        self.reply(self.pipelines.get(job))


class PipelineCancelHandler(_PipelineHandler):
    @api_method("write", operation_id="cancelPipelineJob", tag="pipelines",
                response=PipelineJobInfo, summary="Cancel a pipeline job.",
                returns="The job, CANCELLING or CANCELLED.", errors=(404, 409))
    async def post(self, job: str) -> None:
        """Running tasks get SIGTERM, a grace period, then SIGKILL; the rest are CANCELLED.
        Example: `%bai pipeline cancel JOB`."""
        self.reply(await self.pipelines.cancel(job))


class PipelineRerunHandler(_PipelineHandler):
    @api_method("write", operation_id="rerunPipelineJob", tag="pipelines",
                response=PipelineJobInfo, summary="Rerun a job from its failed tasks.",
                returns="The job, RUNNING again.", errors=(404, 409))
    async def post(self, job: str) -> None:
        """Tasks that succeeded keep their outputs and are not run again; failed, skipped and
        cancelled ones run again. Example: `%bai pipeline rerun JOB`."""
        self.reply(self.pipelines.rerun(job))


class PipelineTaskLogsHandler(_PipelineHandler):
    @api_method("read", operation_id="getPipelineTaskLogs", tag="pipelines", response=LogsText,
                summary="A pipeline task's output (its last attempt's).",
                returns="`{\"logs\": text}`.", errors=(404,))
    async def get(self, job: str, task: str) -> None:
        """Example: `%bai pipeline logs JOB TASK`."""
        self.reply({"logs": await self.pipelines.task_logs_any(job, task)})
