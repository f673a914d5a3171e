"""``/deploy/check`` and ``/services/{name}/deploy|rollback|versions``: notebook deploy."""
from __future__ import annotations

from ..engine.deploy import DeployManager
from ..spec.deploy import DeployCheckRequest, DeployRequest
from ..spec.errors import BaiError
from ..spec.models import DeployCheck, DeployInfo, ServiceVersions
from .base import BaiHandler, api_method


class _DeployHandler(BaiHandler):
    @property
    def deploys(self) -> DeployManager:
        deploys = self.engine.deploys
        if deploys is None:
            raise BaiError("model services are not running on this engine")
        return deploys


class DeployCheckHandler(_DeployHandler):
    @api_method("read", operation_id="checkDeploy", tag="services", request=DeployCheckRequest,
                response=DeployCheck, summary="What a notebook would serve if deployed.",
                returns="Its content hash, endpoints and problems (empty: deployable).",
                errors=(400, 404))
    async def post(self) -> None:
        """The saved notebook's code cells are read statically (cells tagged `bai-skip`,
        magics and shell escapes left out). Example: `%bai deploy classifier.ipynb --check`."""
        body = DeployCheckRequest.from_json(self.body_json())
        self.reply(self.deploys.check(body.notebook))


class ServiceDeployHandler(_DeployHandler):
    @api_method("write", operation_id="deployNotebook", tag="services", request=DeployRequest,
                response=DeployInfo, status=202, summary="Deploy a notebook as a service.",
                returns="The new version, its endpoint and (private) a token; routes roll "
                        "over in the background (see the service's info).",
                errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        """The notebook and listed files are packed into the model folder `<name>.v<N>` with
        a generated model definition (variant `notebook`). A first deploy creates the
        service; a redeploy replaces routes one at a time, each new one HEALTHY before an old
        one is drained. Nothing is made when a check fails. Example:
        `%bai deploy classifier.ipynb -t clf --replicas 2`."""
        body = DeployRequest.from_json(self.body_json())
        self.reply(await self.deploys.deploy(name, body), status=202)


class ServiceRollbackHandler(_DeployHandler):
    @api_method("write", operation_id="rollbackService", tag="services", response=DeployInfo,
                status=202, summary="Go back to the previous deployed version.",
                returns="The version now current; routes roll over to it.",
                errors=(400, 404))
    async def post(self, name: str) -> None:
        """Example: `%bai service rollback clf`."""
        self.reply(self.deploys.rollback(name), status=202)


class ServiceVersionsHandler(_DeployHandler):
    @api_method("read", operation_id="listServiceVersions", tag="services",
                response=ServiceVersions, summary="A deployed service's numbered versions.",
                returns="Every version with its hash and notebook; `current` marks the one "
                        "served.", errors=(400, 404))
    async def get(self, name: str) -> None:
        """Example: `%bai service versions clf`."""
        self.reply(self.deploys.versions(name))
