"""Model services on a real Backend.AI 23.09.10 halfstack (``service create|ls|info|scale|token|rm``).

Backend.AI 23.09 creates a service only when the scaling group names an app proxy
(``wsproxy_addr`` and ``wsproxy_api_token``, checked in ``manager/api/service.py:create``); the
app proxy is not part of the halfstack (nor on the package registries). So these tests run in the
two states a cluster without a working app proxy can be in:

* none configured (the halfstack as it starts): ``create`` is refused with one line;
* one configured whose address answers nothing (a socket bound and never listening, held by this
  module; the scaling group is restored afterwards): the manager creates the endpoint, the
  scheduler starts INFERENCE sessions as routes, the kernel runner health-checks the model
  definition's server and routes turn HEALTHY; only the URL and tokens, which the app proxy
  gives, are missing.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backendai_cluster import IMAGE, Cluster
from private_engines import engine_env, without_engine_choice
from jupyter_bai.client import Client
from jupyter_bai.client.backendai import BackendAIConfig, BackendAIDriver
from jupyter_bai.spec.errors import BaiError, InvalidRequest, InvalidState, NotFound
from jupyter_bai.spec.models import RouteInfo, ServiceInfo

pytestmark = pytest.mark.timeout(1200)

SGROUP = "default"
#: The token this module writes with its dead app-proxy address (so a run killed before it
#: restored the scaling group is recognised, and cleaned up, by the next one).
TEST_TOKEN = "jupyter-bai-test-no-app-proxy"
KIT_IMAGE = "lablup/python:3.11-debian12"  # what the kit builds and aliases as IMAGE
SERVING_IMAGE = "lablup/python-serving:3.11-debian12"
MODEL_DEFINITION = """\
models:
  - name: files
    model_path: /models
    service:
      start_command: ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"]
      port: 8000
      health_check:
        path: /model-definition.yaml
        max_retries: 30
        max_wait_time: 5
"""
# The agent waits max_retries * max_wait_time + 10 s for the kernel runner to start the server,
# and the runner first starts its Jupyter kernel, sshd and ttyd: on a busy machine that takes
# more than 23.09's defaults allow (the route then turns UNHEALTHY with "timeout").


def _tag() -> str:
    return uuid.uuid4().hex[:6]


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 300, every: float = 2) -> Any:
    """``probe()`` until it returns something truthy (a correctness wait, not a speed check)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not reached in {timeout:g}s (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(backendai: Cluster) -> Iterator[Client]:
    c = Client(driver=BackendAIDriver(BackendAIConfig(
        backendai.endpoint, backendai.access_key, backendai.secret_key)))
    yield c
    c.close()


def gql(client: Client, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    driver = client.driver
    assert isinstance(driver, BackendAIDriver)
    return client._submit(driver._gql(query, variables))


def sgroup_settings(client: Client) -> dict[str, Any]:
    row = gql(client, "query($n: String) { scaling_group(name: $n) { wsproxy_addr wsproxy_api_token "
                      "scheduler_opts } }", {"n": SGROUP})["scaling_group"]
    return {**row, "scheduler_opts": json.loads(row["scheduler_opts"])}


def set_sgroup(client: Client, **props: Any) -> None:
    if "scheduler_opts" in props:
        props["scheduler_opts"] = json.dumps(props["scheduler_opts"])
    out = gql(client, "mutation($n: String!, $p: ModifyScalingGroupInput!) { modify_scaling_group("
                      "name: $n, props: $p) { ok msg } }", {"n": SGROUP, "p": props})
    assert out["modify_scaling_group"]["ok"], out


def with_inference(opts: dict[str, Any], allowed: bool) -> dict[str, Any]:
    types = [t for t in opts.get("allowed_session_types") or [] if t != "inference"]
    return {**opts, "allowed_session_types": types + ["inference"] if allowed else types}


@pytest.fixture(scope="module")
def original_sgroup(cluster: Client) -> Iterator[dict[str, Any]]:
    """The scaling group as the halfstack has it: no app proxy, and (23.09's default for a
    scaling group made from fixtures) only interactive and batch sessions. Put back at the end."""
    orig = sgroup_settings(cluster)
    if orig["wsproxy_api_token"] == TEST_TOKEN:  # left over from a killed run of this module
        orig.update(wsproxy_addr=None, wsproxy_api_token=None)
    yield orig
    set_sgroup(cluster, **orig)


@pytest.fixture()
def no_inference(cluster: Client, original_sgroup: dict[str, Any]) -> Iterator[None]:
    before = sgroup_settings(cluster)
    set_sgroup(cluster, wsproxy_addr=None, wsproxy_api_token=None,
               scheduler_opts=with_inference(original_sgroup["scheduler_opts"], False))
    yield
    set_sgroup(cluster, **before)


@pytest.fixture()
def no_app_proxy(cluster: Client, original_sgroup: dict[str, Any]) -> Iterator[None]:
    before = sgroup_settings(cluster)
    set_sgroup(cluster, wsproxy_addr=None, wsproxy_api_token=None,
               scheduler_opts=with_inference(original_sgroup["scheduler_opts"], True))
    yield
    set_sgroup(cluster, **before)


@pytest.fixture(scope="module")
def silent_app_proxy(cluster: Client, original_sgroup: dict[str, Any]) -> Iterator[str]:
    """Inference allowed and an app proxy configured at an address that refuses connections: a
    socket bound to a port and never listening (held for the whole module, so no other program
    takes the port)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    addr = f"http://127.0.0.1:{sock.getsockname()[1]}"
    set_sgroup(cluster, wsproxy_addr=addr, wsproxy_api_token=TEST_TOKEN,
               scheduler_opts=with_inference(original_sgroup["scheduler_opts"], True))
    try:
        yield addr
    finally:
        set_sgroup(cluster, **original_sgroup)
        sock.close()


def serves_models(image: str) -> bool:
    """Backend.AI's kernel runner starts a model service only in an image that has
    ``/etc/backend.ai/service-defs`` (``ai/backend/kernel/base.py``: without it, its
    ``service_parser`` is None and ``start_model_service`` fails its assert)."""
    return subprocess.run(["docker", "run", "--rm", "--entrypoint", "test", image, "-d",
                           "/etc/backend.ai/service-defs"], capture_output=True).returncode == 0


def registered(client: Client, ref: str) -> bool:
    images = gql(client, "{ images { name registry tag } }")["images"]
    return any(f"{i['registry']}/{i['name']}:{i['tag']}" == ref for i in images)


@pytest.fixture(scope="module")
def serving_image(cluster: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image the kernel runner can serve from: the kit's kernel image (it has
    ``/etc/backend.ai/service-defs`` since the kit makes it), or, on a halfstack started by an
    older kit, that image plus the directory, registered the way ``image rescan --local`` does
    (a ``local`` registry in etcd, scanned, then removed again). It stays registered: 23.09's
    ``forget_image`` fails once an endpoint, even a destroyed one, has used it."""
    if serves_models(KIT_IMAGE):
        return IMAGE
    ref = f"index.docker.io/{SERVING_IMAGE}"
    if serves_models(SERVING_IMAGE) and registered(cluster, ref):
        return ref
    ctx = tmp_path_factory.mktemp("serving-image")
    (ctx / "service-defs").mkdir()
    (ctx / "service-defs" / "README").write_text("model services need this directory\n")
    (ctx / "Dockerfile").write_text(f"FROM {KIT_IMAGE}\nCOPY service-defs /etc/backend.ai/service-defs\n")
    subprocess.run(["docker", "build", "-q", "-t", SERVING_IMAGE, str(ctx)], check=True,
                   capture_output=True)
    driver = cluster.driver
    assert isinstance(driver, BackendAIDriver)
    key = "config/docker/registry/local"
    cluster._submit(driver._send("POST", "/config/set", json_body={
        "key": key, "value": {"": "http://localhost", "type": "local"}}))
    try:
        out = gql(cluster, 'mutation { rescan_images(registry: "local") { ok msg } }')
        assert out["rescan_images"]["ok"], out
        wait_for(f"image {ref} registered", lambda: registered(cluster, ref), timeout=120)
    finally:
        cluster._submit(driver._send("POST", "/config/delete", json_body={"key": key, "prefix": True}))
    return ref


@pytest.fixture(scope="module")
def model_folder(cluster: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"bai-svc-model-{_tag()}"
    src = tmp_path_factory.mktemp("model")
    (src / "model-definition.yaml").write_text(MODEL_DEFINITION)
    cluster.create_vfolder(name, usage_mode="model")
    try:
        cluster.upload(name, [src / "model-definition.yaml"])
        yield name
    finally:
        cluster.delete_vfolder(name)


def endpoint_names(client: Client) -> set[str]:
    """Every endpoint the manager has not destroyed (GraphQL, so DESTROYING ones count too)."""
    rows = gql(client, "{ endpoint_list(limit: 100, offset: 0) { items { name lifecycle_stage } } }")
    return {r["name"] for r in rows["endpoint_list"]["items"]}


def session_statuses(client: Client, ids: list[str]) -> dict[str, str]:
    out = {}
    for sid in ids:
        row = gql(client, "query($id: UUID!) { compute_session(id: $id) { status } }", {"id": sid})
        out[sid] = (row.get("compute_session") or {}).get("status", "GONE")
    return out


@pytest.fixture()
def removed(cluster: Client) -> Iterator[list[str]]:
    """Names of services a test made; whatever is left is removed and waited for."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            cluster.delete_service(name)
        except NotFound:
            pass
    wait_for("test services removed", lambda: not (endpoint_names(cluster) & set(names)), timeout=300)


# --------------------------------------------------------------------------- the halfstack as started


def test_without_inference_sessions_create_says_so_and_makes_nothing(
        cluster: Client, model_folder: str, no_inference: None) -> None:
    name = f"svc-{_tag()}"
    with pytest.raises(BaiError) as err:
        cluster.create_service(IMAGE, model_folder, 1, name=name)
    msg = str(err.value)
    assert msg.startswith(f"no scaling group of {cluster.driver.where} accepts model services: an "
                          "administrator must allow the 'inference' session type on one (Backend.AI: ")
    assert "\n" not in msg and err.value.status == 409
    assert name not in endpoint_names(cluster)


# --------------------------------------------------------------------------- no app proxy at all


def test_without_an_app_proxy_create_says_so_and_makes_nothing(
        cluster: Client, model_folder: str, no_app_proxy: None) -> None:
    """``api/service.py:create`` answers 503 "No coordinator configured for this resource group"
    before it makes anything, when the scaling group has no ``wsproxy_addr``."""
    name = f"svc-{_tag()}"
    with pytest.raises(BaiError) as err:
        cluster.create_service(IMAGE, model_folder, 1, name=name)
    msg = str(err.value)
    assert msg.startswith(f"this cluster has no app proxy configured for scaling group '{SGROUP}'; ")
    assert "No coordinator configured for this resource group" in msg and "\n" not in msg
    assert err.value.status == 503
    assert name not in endpoint_names(cluster)
    assert name not in {s.name for s in cluster.list_services()}


# --------------------------------------------------------------------------- app proxy configured, silent


def test_service_lifecycle_create_routes_scale_info_rm(
        cluster: Client, model_folder: str, serving_image: str, silent_app_proxy: str,
        removed: list[str]) -> None:
    name = f"svc-{_tag()}"
    removed.append(name)
    info = cluster.create_service(serving_image, model_folder, 1, name=name, public=False,
                                  resources=["cpu=1", "mem=512m"])
    assert (info.name, info.replicas, info.public, info.model_folder, info.runtime_variant) == (
        name, 1, False, model_folder, "custom")
    assert info.image.endswith(KIT_IMAGE if serving_image == IMAGE else SERVING_IMAGE)
    assert info.status in ("PROVISIONING", "HEALTHY")

    # the scheduler makes a route, its INFERENCE session starts, the kernel runner's health
    # check of the model definition's server marks it HEALTHY
    def healthy(n: int) -> ServiceInfo | None:
        cur = cluster.get_service(name)
        assert not [r for r in cur.routes if r.status == "FAILED_TO_START"], cur.routes
        live = [r for r in cur.routes if r.status != "TERMINATING"]
        return cur if len(live) == n and all(r.status == "HEALTHY" for r in live) else None

    cur = wait_for("one healthy route", lambda: healthy(1), timeout=600)
    route = cur.routes[0]
    assert route.session_id and route.session_name == f"{name}-{route.id}"
    assert route.port > 0  # the agent's host port for the model's inference port
    assert cur.status == "HEALTHY" and cur.endpoint == ""
    assert cur.status_info == (f"this cluster has no app proxy configured for scaling group "
                               f"'{SGROUP}'; the endpoint has no URL")
    logs = cluster.service_logs(name)
    assert logs.startswith(f"==> route {route.id} (session {route.session_name}, HEALTHY) <==\n")
    sess = cluster.get_session(route.session_id)
    assert sess.type == "inference" and sess.status == "RUNNING"
    assert [(m.source, m.target) for m in sess.mounts] == [(model_folder, "/models")]

    # ls and info: the local engine's shapes (same models, same JSON keys)
    listed = {s.name: s for s in cluster.list_services()}
    assert listed[name].id == cur.id and [r.id for r in listed[name].routes] == [route.id]
    as_json = cur.to_json()
    assert set(as_json) == set(ServiceInfo.model_fields)
    assert set(as_json["routes"][0]) == set(RouteInfo.model_fields)

    # a token needs the app proxy: one line, nothing issued
    with pytest.raises(InvalidState) as err:
        cluster.issue_service_token(name, "1h")
    assert str(err.value).startswith(f"this cluster has no app proxy configured for scaling group "
                                     f"'{SGROUP}'; service '{name}' has no URL")

    # scale 1 -> 2 -> 1
    assert cluster.scale_service(name, 2).replicas == 2
    two = wait_for("two healthy routes", lambda: healthy(2), timeout=600)
    first_sessions = [r.session_id for r in two.routes]
    assert cluster.scale_service(name, 1).replicas == 1
    one = wait_for("back to one healthy route", lambda: healthy(1) if len(
        cluster.get_service(name).routes) == 1 else None, timeout=300)
    gone = [s for s in first_sessions if s != one.routes[0].session_id]
    assert len(gone) == 1
    wait_for("the scaled-down route's session terminated",
             lambda: session_statuses(cluster, gone)[gone[0]] in ("TERMINATED", "GONE"))

    # rm: the endpoint goes, and every route session with it
    out = cluster.delete_service(name)
    assert out.name == name and out.status in ("TERMINATING", "STOPPED")
    sids = [r.session_id for r in one.routes if r.session_id]
    wait_for("endpoint destroyed", lambda: name not in endpoint_names(cluster))
    wait_for("route sessions terminated", lambda: all(
        s in ("TERMINATED", "GONE") for s in session_statuses(cluster, sids).values()))
    with pytest.raises(NotFound):
        cluster.get_service(name)


def test_rm_of_a_service_whose_routes_cannot_be_placed(
        cluster: Client, model_folder: str, serving_image: str, silent_app_proxy: str,
        removed: list[str]) -> None:
    """23.09's scheduler never stops a PROVISIONING route; rm stops its pending sessions too."""
    name = f"svc-{_tag()}"
    removed.append(name)
    cluster.create_service(serving_image, model_folder, 1, name=name, resources=["cpu=64"])
    cur = wait_for("the route's session is pending", lambda: (lambda s: s if s.routes and s.routes[0]
                   .session_id and (s.routes[0].status_info or "").startswith("session PENDING")
                   else None)(cluster.get_service(name)), timeout=120)
    assert cur.status == "PROVISIONING"
    sid = cur.routes[0].session_id
    assert sid
    cluster.delete_service(name)
    wait_for("endpoint destroyed", lambda: name not in endpoint_names(cluster))
    assert session_statuses(cluster, [sid])[sid] in ("CANCELLED", "TERMINATED", "GONE")


@pytest.mark.parametrize("case", ["unknown folder", "general folder", "unknown image", "name",
                                  "variant", "replicas"])
def test_bad_service_requests_are_one_line_and_make_nothing(
        cluster: Client, model_folder: str, serving_image: str, silent_app_proxy: str,
        case: str) -> None:
    name = f"svc-{_tag()}"
    folder, image, kwargs = model_folder, serving_image, {}
    general = None
    if case == "unknown folder":
        folder = f"no-such-{_tag()}"
    elif case == "general folder":
        general = folder = f"bai-svc-general-{_tag()}"
        cluster.create_vfolder(general)
    elif case == "unknown image":
        image = f"no-such-image-{_tag()}:1"
    elif case == "name":
        name = "a"
    elif case == "variant":
        kwargs = {"runtime_variant": "vllm"}
    try:
        with pytest.raises(BaiError) as err:
            cluster.create_service(image, folder, 20 if case == "replicas" else 1, name=name, **kwargs)
    finally:
        if general:
            cluster.delete_vfolder(general)
    msg = str(err.value)
    assert "\n" not in msg and msg
    expected = {
        "unknown folder": (NotFound, f"no model folder named '{folder}' on "),
        "general folder": (NotFound, f"no model folder named '{folder}' on "),
        "unknown image": (BaiError, "Backend.AI: "),
        "name": (InvalidRequest, "invalid service name 'a': Backend.AI 23.09 needs 4-24"),
        "variant": (InvalidRequest, "runtime variant 'vllm' is not available on a Backend.AI"),
        "replicas": (BaiError, "Backend.AI: "),
    }[case]
    assert isinstance(err.value, expected[0]) and msg.startswith(expected[1]), msg
    if case == "unknown image":
        assert "image" in msg.lower()
    if case == "replicas":
        assert "Cannot spawn more than" in msg
    assert name not in endpoint_names(cluster)


def test_cli_service_verbs_on_the_cluster(
        cluster: Client, backendai: Cluster, model_folder: str, serving_image: str,
        silent_app_proxy: str, tmp_path: Path, removed: list[str]) -> None:
    """``jupyter bai --engine lab service ...`` with the local engine's JSON shapes."""
    cfg = tmp_path / "cfg"
    env = without_engine_choice({**os.environ, **engine_env(cfg)})

    def cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jupyter_bai.cli", *argv], input=stdin,
                              capture_output=True, text=True, timeout=300, env=env)

    out = cli("engine", "add", "lab", "--backendai", backendai.endpoint, "--access-key",
              backendai.access_key, stdin=backendai.secret_key + "\n")
    assert out.returncode == 0, out.stderr
    name = f"svc-{_tag()}"
    removed.append(name)
    out = cli("--engine", "lab", "service", "create", serving_image, model_folder, "1", "-t", name,
              "--public", "--json")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert set(created) == set(ServiceInfo.model_fields) and created["public"] is True
    out = cli("--engine", "lab", "service", "ls", "--json")
    assert out.returncode == 0, out.stderr
    assert name in {s["name"] for s in json.loads(out.stdout)}
    out = cli("--engine", "lab", "service", "token", name)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: this cluster has no app proxy configured for scaling group")
    out = cli("--engine", "lab", "service", "rm", name)
    assert out.returncode == 0, out.stderr
    wait_for("endpoint destroyed", lambda: name not in endpoint_names(cluster))
