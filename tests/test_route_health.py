"""The rule that turns probe results into a route status (pure)."""
from __future__ import annotations

from jupyter_bai.engine.health import Probe, next_status
from jupyter_bai.spec.model_definition import HealthCheck
from jupyter_bai.spec.service import RouteStatus as R

CHECK = HealthCheck(path="/health", interval=1, max_retries=2, initial_delay=30)
LOADING = Probe(False, False, "/health answered 503, expected 200", loading=True)
BROKEN = Probe(False, False, "/health answered 500, expected 200")


def test_a_503_while_provisioning_is_still_loading_within_the_grace() -> None:
    assert next_status(R.PROVISIONING, LOADING, 0, age=5, check=CHECK) == (R.PROVISIONING, 0)
    # past the grace it counts, and enough of them take the route out
    assert next_status(R.PROVISIONING, LOADING, 0, age=31, check=CHECK) == (R.PROVISIONING, 1)
    assert next_status(R.PROVISIONING, LOADING, 1, age=32, check=CHECK) == (R.UNHEALTHY, 2)


def test_other_failures_count_at_once_and_a_serving_route_gets_no_grace() -> None:
    assert next_status(R.PROVISIONING, BROKEN, 0, age=5, check=CHECK) == (R.PROVISIONING, 1)
    assert next_status(R.HEALTHY, LOADING, 1, age=5, check=CHECK) == (R.UNHEALTHY, 2)
    assert next_status(R.UNHEALTHY, Probe(True, False, "ok"), 2, age=50, check=CHECK) == (
        R.HEALTHY, 0)
