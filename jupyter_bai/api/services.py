"""``/services/*``: model services, their scale, tokens and route logs."""
from __future__ import annotations

from ..engine.services import ServiceManager
from ..spec.errors import BaiError, InvalidRequest
from ..spec.models import (
    AutoscaleQuery, LogsText, ScaleRequest, ServiceInfo, ServiceList, ServiceLogsQuery, ServiceToken, TokenRequest,
)
from ..spec.service import AutoscaleRule, ServiceCreate
from .base import BaiHandler, api_method


class _ServiceHandler(BaiHandler):
    @property
    def services(self) -> ServiceManager:
        services = self.engine.services
        if services is None:
            raise BaiError("model services are not running on this engine")
        return services


class ServicesHandler(_ServiceHandler):
    @api_method("read", operation_id="listServices", tag="services", response=ServiceList,
                summary="List model services.", returns="The services with their routes.")
    async def get(self) -> None:
        """Example: `%bai service ls`, `Client().list_services()`."""
        self.reply({"services": self.services.list()})

    @api_method("write", operation_id="createService", tag="services", request=ServiceCreate,
                response=ServiceInfo, status=201, summary="Create a model service.",
                returns="The new service (PROVISIONING); routes start in the background.",
                errors=(400, 404, 409))
    async def post(self) -> None:
        """Each route is an `inference` session with the model folder at /models. The
        `custom` variant reads `model-definition.yaml` from the folder; a bad file is a 400
        naming the file, line and field. Example:
        `%bai service create local koalpaca 2 -t chat --public`.
        """
        spec = ServiceCreate.from_json(self.body_json())
        self.reply(self.services.create(spec), status=201)


class ServiceHandler(_ServiceHandler):
    @api_method("read", operation_id="getService", tag="services", response=ServiceInfo,
                summary="One service: status, endpoint, routes and their health.",
                returns="The service.", errors=(404,))
    async def get(self, name: str) -> None:
        """Example: `%bai service info chat`."""
        self.reply(self.services.get(name))

    @api_method("write", operation_id="deleteService", tag="services", response=ServiceInfo,
                summary="Remove a service (its routes drain, then stop).",
                returns="The service, now TERMINATING.", errors=(404,))
    async def delete(self, name: str) -> None:
        """Its tokens are revoked at once. Example: `%bai service rm chat`."""
        self.reply(self.services.delete(name))


class ServiceScaleHandler(_ServiceHandler):
    @api_method("write", operation_id="scaleService", tag="services", request=ScaleRequest,
                response=ServiceInfo, summary="Change the number of routes.",
                returns="The service.", errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        """Scale-down takes routes out of the rotation first, then stops them after a drain
        time. Example: `%bai service scale chat 3`."""
        body = ScaleRequest.model_validate(self.body_json())
        self.reply(self.services.scale(name, body.replicas))


class ServiceTokenHandler(_ServiceHandler):
    @api_method("write", operation_id="issueServiceToken", tag="services", request=TokenRequest,
                response=ServiceToken, status=201, summary="Issue a bearer token for a service.",
                returns="The token (shown once) and when it expires.", errors=(400, 404))
    async def post(self, name: str) -> None:
        """Send it as `Authorization: Bearer <token>` to the endpoint; the proxy strips it
        before forwarding. Example: `%bai service token priv --ttl 1d`."""
        body = TokenRequest.model_validate(self.body_json())
        self.reply(self.services.issue_token(name, body.ttl), status=201)


class ServiceLogsHandler(_ServiceHandler):
    @api_method("read", operation_id="getServiceLogs", tag="services", query=ServiceLogsQuery,
                response=LogsText, summary="Every route's log, one after another.",
                returns="`{\"logs\": text}`.", errors=(400, 404))
    async def get(self, name: str) -> None:
        """Example: `%bai service logs chat --tail 20`."""
        self.reply({"logs": self.services.logs(name, tail=self.int_arg("tail"))})


class ServiceAutoscaleHandler(_ServiceHandler):
    @api_method("write", operation_id="addAutoscaleRule", tag="services", request=AutoscaleRule,
                response=ServiceInfo, status=201, summary="Add an autoscaling rule.",
                returns="The service with its rules.", errors=(400, 404))
    async def post(self, name: str) -> None:
        """The engine evaluates rules about every half second; each decision is recorded and
        shown in `service info`. Example: `%bai service autoscale add chat --metric rps
        --comparator gt --threshold 20 --step 1 --cooldown 60 --min 1 --max 4`."""
        rule = AutoscaleRule.from_json(self.body_json())
        self.reply(self.services.add_rule(name, rule), status=201)

    @api_method("write", operation_id="removeAutoscaleRule", tag="services",
                query=AutoscaleQuery, response=ServiceInfo,
                summary="Remove an autoscaling rule.", returns="The service.", errors=(400, 404))
    async def delete(self, name: str) -> None:
        """Example: `%bai service autoscale rm chat RULE_ID`."""
        rule = self.get_argument("rule", "")
        if not rule:
            raise InvalidRequest("missing query parameter 'rule' (the rule id from `service info`)")
        self.reply(self.services.remove_rule(name, rule))

