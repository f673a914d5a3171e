"""``/resources``, ``/images`` and ``/openapi.yaml``: what the node offers and how to call it."""
from __future__ import annotations

import asyncio

from ..spec.models import ImageList, Resources
from .base import OPENAPI_PATH, BaiHandler, api_method

class ResourcesHandler(BaiHandler):
    @api_method("read", operation_id="getResources", tag="resources", response=Resources,
                summary="Node capacity, used and free slots, per-GPU shares, runtimes.",
                returns="The node's resources.", errors=(503,))
    async def get(self) -> None:
        """Example: `%bai resources`, `jupyter bai resources --json`, `Client().resources()`."""
        # Asks the Docker daemon whether it answers (and sweeps when it came back): off the loop.
        self.reply(await asyncio.get_running_loop().run_in_executor(None, self.engine.resources))


class ImagesHandler(BaiHandler):
    @api_method("read", operation_id="listImages", tag="resources", response=ImageList,
                summary="Images sessions can use — `local` and the images on the Docker engine.",
                returns="The images.", errors=(503,))
    async def get(self) -> None:
        """Example: `%bai image ls`, `jupyter bai image ls --json`, `Client().list_images()`.
        When the Docker engine does not answer, only `local` is listed and `notes` says why.
        Images are never pulled here; an image missing at session create is a 400
        `invalid-request` unless pulling is configured (`BaiApp.docker_pull`).
        """
        # A Docker API call (milliseconds on a local socket); keep the loop free anyway.
        self.reply(await asyncio.get_running_loop().run_in_executor(None, self.engine.images))


class OpenAPIHandler(BaiHandler):
    @api_method("read", operation_id="getOpenApiSpec", tag="meta", summary="This document.",
                content="application/yaml", returns="The OpenAPI 3.1 description of this API.")
    async def get(self) -> None:
        """Generated from the handlers' declarations and `jupyter_bai.spec.models`
        (`python -m jupyter_bai.api.openapi`)."""
        self.set_header("Content-Type", "application/yaml")
        self.finish(OPENAPI_PATH.read_text())
