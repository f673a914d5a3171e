"""``/metrics``: the latest live sample and the short history the engine keeps."""
from __future__ import annotations

from .base import BaiHandler, api_method


class MetricsHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        assert self.engine.metrics is not None
        self.reply(await self.engine.metrics.current())
