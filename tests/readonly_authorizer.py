"""A real jupyter_server Authorizer for tests: allows ``read`` only, and logs every decision.

Configured on a real engine with ``--ServerApp.authorizer_class=readonly_authorizer.ReadOnlyAuthorizer``
(``tests/`` on ``PYTHONPATH``); ``BAI_TEST_AUTHZ_LOG`` names the file each check is appended to.
"""
from __future__ import annotations

import json
import os
from typing import Any

from jupyter_server.auth.authorizer import Authorizer


class ReadOnlyAuthorizer(Authorizer):
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        log = os.environ.get("BAI_TEST_AUTHZ_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"method": handler.request.method, "path": handler.request.path,
                                    "action": action, "resource": resource}) + "\n")
        return action == "read"
