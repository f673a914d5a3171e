"""``/resources``, ``/images`` and ``/openapi.yaml``: what the node offers and how to call it."""
from __future__ import annotations

import asyncio

from .base import OPENAPI_PATH, BaiHandler, api_method

class ResourcesHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        # Asks the Docker daemon whether it answers (and sweeps when it came back): off the loop.
        self.reply(await asyncio.get_running_loop().run_in_executor(None, self.engine.resources))


class ImagesHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        # A Docker API call (milliseconds on a local socket); keep the loop free anyway.
        self.reply(await asyncio.get_running_loop().run_in_executor(None, self.engine.images))


class OpenAPIHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        self.set_header("Content-Type", "application/yaml")
        self.finish(OPENAPI_PATH.read_text())
