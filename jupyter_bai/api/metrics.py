"""``/metrics``: the latest live sample and the short history the engine keeps."""
from __future__ import annotations

from ..spec.models import Metrics
from .base import BaiHandler, api_method


class MetricsHandler(BaiHandler):
    @api_method("read", operation_id="getMetrics", tag="resources", response=Metrics,
                summary="Live usage: the newest metrics sample and the short history kept.",
                returns="`{interval, latest, history}`.")
    async def get(self) -> None:
        """Host CPU and memory, per-GPU utilisation and memory (NVML where present; fake GPUs
        report only their allocated shares), and per-session CPU and memory from cgroups, sampled
        about once a second while someone watches. The WebSocket's `metrics` channel streams the
        same samples. Example: `Client().metrics()`.
        """
        assert self.engine.metrics is not None
        self.reply(await self.engine.metrics.current())
