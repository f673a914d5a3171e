"""Model-definition parsing and each runtime variant's command line and health check."""
from __future__ import annotations

import shlex

import pytest

from jupyter_bai.spec.errors import InvalidRequest
from jupyter_bai.spec.model_definition import parse_model_definition
from jupyter_bai.spec.service import (
    RouteStatus, ServiceCreate, ServiceStatus, notebook_definition, plan_route, service_status,
)

KOALPACA = """\
models:
  - name: "KoAlpaca-5.8B-model"
    model_path: "/models/KoAlpaca-5.8B"
    service:
      pre_start_actions:
        - action: run_command
          args:
            command: ["pip3", "install", "-r", "/models/requirements.txt"]
      start_command:
        - uvicorn
        - --app-dir
        - /models
        - chatbot-api:app
        - --port
        - "8000"
        - --host
        - "0.0.0.0"
      port: 8000
      health_check:
        path: /health
        max_retries: 10
"""


def test_seed_definition_parses_with_backendai_defaults() -> None:
    d = parse_model_definition(KOALPACA)
    model = d.servable()
    assert model.name == "KoAlpaca-5.8B-model"
    hc = model.service.health_check
    assert (hc.path, hc.interval, hc.max_retries, hc.max_wait_time, hc.expected_status_code,
            hc.initial_delay) == ("/health", 10, 10, 15, 200, 60)
    plan = plan_route("custom", port=41000, env={}, definition=d, docker=False)
    assert plan.port == 8000  # one route: the hard-coded port is used as written
    lines = plan.command.splitlines()
    assert lines[0] == "set -e"
    assert lines[1] == "pip3 install -r /models/requirements.txt"
    assert shlex.split(lines[-1]) == ["exec", "uvicorn", "--app-dir", "/models", "chatbot-api:app",
                                      "--port", "8000", "--host", "0.0.0.0"]


def test_kebab_keys_unknown_keys_kept_and_substitutions() -> None:
    text = """\
models:
  - name: m
    model-path: /models/m
    future-key: 1
    service:
      pre-start-actions:
        - action: mkdir
          args: {path: /tmp/x}
        - action: write-tempfile
          ref: cfg
          args: {body: "a: 1"}
        - action: log
          args: {message: starting}
      start-command: "serve {model_path} --port {port} --config {cfg}"
      shell: /bin/sh
      port: 9000
"""
    d = parse_model_definition(text)
    assert d.models[0].model_extra == {"future_key": 1}
    plan = plan_route("custom", port=41001, env={}, definition=d, docker=False, replicas=3)
    assert plan.port == 41001  # {port} in the command: each route takes its assigned port
    assert plan.health is None
    lines = plan.command.splitlines()
    assert "mkdir -p /tmp/x" in lines
    assert any(line.startswith("BAI_REF_cfg=$(mktemp)") for line in lines)
    assert lines[-1] == ("exec /bin/sh -c 'serve /models/m --port 41001 --config ${BAI_REF_cfg}'")


def test_hard_coded_port_with_several_local_routes_says_how_to_fix() -> None:
    d = parse_model_definition(KOALPACA)
    with pytest.raises(InvalidRequest, match=r"hard-codes port 8000.*\{port\} \(or \$PORT\)"):
        plan_route("custom", port=41000, env={}, definition=d, docker=False, replicas=2)
    # in Docker every route has its own network: fine
    assert plan_route("custom", port=1, env={}, definition=d, docker=True, replicas=2).port == 8000


@pytest.mark.parametrize("text, where", [
    ("models:\n  - name: m\n    model_path: /m\n    service:\n      port: 80\n",
     r"model-definition.yaml:4: models\[0\].service.start_command: is missing"),
    ("models:\n  - name: m\n    model_path: /m\n    service:\n      start_command: x\n"
     "      health_check:\n        path: health\n",
     r":7: models\[0\].service.health_check.path: must start with '/'"),
    ("models:\n  - name: m\n    model_path: /m\n    service:\n      start_command: x\n"
     "      pre_start_actions:\n        - action: reboot\n",
     r":7: models\[0\].service.pre_start_actions\[0\].action: unknown action 'reboot'"),
    ("models: [\n", r"model-definition.yaml:2: not valid YAML"),
    ("- 1\n", r"model-definition.yaml:1: expected a mapping"),
    ("models:\n  - name: m\n    model_path: /m\n    service:\n      start_command: x\n"
     "      port: eighty\n", r":6: models\[0\].service.port: "),
])
def test_bad_definitions_name_file_line_and_field(text: str, where: str) -> None:
    with pytest.raises(InvalidRequest, match=where):
        parse_model_definition(text)


def test_custom_without_definition_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest, match="needs model-definition.yaml"):
        plan_route("custom", port=1, env={}, definition=None, docker=False)


def test_cmd_variant() -> None:
    plan = plan_route("cmd", port=41002, env={"CMD": "python -m http.server $PORT"},
                      definition=None, docker=False)
    assert (plan.command, plan.port, plan.health) == ("python -m http.server $PORT", 41002, None)
    docker = plan_route("cmd", port=1, env={}, definition=None, docker=True, image_command="run")
    assert (docker.command, docker.port) == ("run", 8000)
    with pytest.raises(InvalidRequest, match="CMD"):
        plan_route("cmd", port=1, env={}, definition=None, docker=False)


def test_vllm_variant_options_from_env() -> None:
    env = {"BACKEND_MODEL_NAME": "vllm-model", "VLLM_TP_SIZE": "2", "VLLM_QUANTIZATION": "awq",
           "VLLM_EXTRA_ARGS": "--max-model-len 4096 --enforce-eager"}
    plan = plan_route("vllm", port=1, env=env, definition=None, docker=True)
    assert shlex.split(plan.command) == [
        "vllm", "serve", "/models", "--host", "0.0.0.0", "--port", "8000",
        "--served-model-name", "vllm-model", "--tensor-parallel-size", "2",
        "--quantization", "awq", "--max-model-len", "4096", "--enforce-eager"]
    assert (plan.port, plan.health.path) == (8000, "/health")
    local = plan_route("vllm", port=41003, env={}, definition=None, docker=False)
    assert shlex.split(local.command)[-2:] == ["--port", "41003"] and local.port == 41003


def test_nim_variant_needs_docker_and_key() -> None:
    with pytest.raises(InvalidRequest, match="needs a Docker image"):
        plan_route("nim", port=1, env={"NGC_API_KEY": "k"}, definition=None, docker=False)
    with pytest.raises(InvalidRequest, match="NGC_API_KEY"):
        plan_route("nim", port=1, env={}, definition=None, docker=True)
    plan = plan_route("nim", port=1, env={"NGC_API_KEY": "k"}, definition=None, docker=True,
                      image_command=None)
    assert plan.port == 8000 and plan.health.path == "/v1/health/ready"
    assert plan.env["NIM_CACHE_PATH"] == plan.env["HF_HOME"] == "/opt/nim/.cache"
    assert plan.model_mount == plan.model_path == "/opt/nim/.cache"  # the folder is NIM's cache
    assert "NGC_API_KEY" not in (plan.command or "") and "k" not in plan.env.values()


def test_notebook_variant_runs_the_runner_on_the_assigned_port() -> None:
    plan = plan_route("notebook", port=41004, env={"BAI_NOTEBOOK": "app.ipynb"},
                      definition=None, docker=False, replicas=2)
    assert plan.command == ("set -e\nexec env PYTHONPATH=/models/.bai/lib python3 -m "
                            "jupyter_bai.serving /models/app.ipynb --port 41004")
    assert plan.health.path == "/health" and plan.port == 41004
    # the notebook's metadata.bai.health_check overrides the defaults, never the path
    definition = notebook_definition("app.ipynb", {"initial_delay": 5, "path": "/x"})
    plan = plan_route("notebook", port=7, env={}, definition=definition, docker=False)
    assert plan.health.initial_delay == 5 and plan.health.path == "/health"
    assert "/models/app.ipynb --port 7" in (plan.command or "")


def test_service_request_rejects_bad_input() -> None:
    with pytest.raises(InvalidRequest, match="unknown runtime variant 'tgi'"):
        ServiceCreate.from_json({"name": "s", "image": "local", "model_folder": "m",
                                 "runtime_variant": "tgi"})
    with pytest.raises(InvalidRequest, match="replicas"):
        ServiceCreate.from_json({"name": "s", "image": "local", "model_folder": "m",
                                 "replicas": -1})
    ok = ServiceCreate.from_json({"name": "s", "image": "local", "model_folder": "m",
                                  "env": ["A=1"]})
    assert ok.env == {"A": "1"} and ok.runtime_variant == "custom" and not ok.public


def test_service_status_from_routes() -> None:
    H, P, F, U = (RouteStatus.HEALTHY.value, RouteStatus.PROVISIONING.value,
                  RouteStatus.FAILED_TO_START.value, RouteStatus.UNHEALTHY.value)
    assert service_status([H, H], 2) is ServiceStatus.HEALTHY
    assert service_status([H, P], 2) is ServiceStatus.DEGRADED
    assert service_status([P, P], 2) is ServiceStatus.PROVISIONING
    assert service_status([F, F], 2) is ServiceStatus.FAILED
    assert service_status([U], 1) is ServiceStatus.UNHEALTHY
    assert service_status([], 0) is ServiceStatus.STOPPED


def test_autoscale_rule_fires_and_stays_within_bounds() -> None:
    from jupyter_bai.spec.service import AutoscaleRule

    out = AutoscaleRule.from_json({"metric": "inflight", "comparator": "gt", "threshold": 4,
                                   "step": 2, "min_replicas": 1, "max_replicas": 3})
    assert out.fires(5) and not out.fires(4)
    assert out.target(1) == 3 and out.target(2) == 3
    scale_in = AutoscaleRule.from_json({"metric": "rps", "comparator": "lt", "threshold": 1,
                                        "step": -1, "min_replicas": 1})
    assert scale_in.fires(0.5) and scale_in.target(1) == 1 and scale_in.target(3) == 2
    with pytest.raises(InvalidRequest, match="autoscaling rule: comparator"):
        AutoscaleRule.from_json({"metric": "rps", "comparator": "ge", "threshold": 1, "step": 1})
