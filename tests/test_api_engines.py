"""``/bai/api/v1/engines``: list the configured engines, switch the stored default, and read a
cluster's resources and sessions through the driver (the real halfstack), never showing a key."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backendai_cluster import IMAGE, Cluster, destroy_if_there
from engine_proc import Api, EngineProcess, free_port, start_engine
from private_engines import isolate_engines
from jupyter_bai.client import Client, engines

pytestmark = pytest.mark.timeout(900)
CONFIG_SECRET = "cfg-secret-" + uuid.uuid4().hex
STORE_SECRET = "store-secret-" + uuid.uuid4().hex


@dataclass
class Setup:
    engine: EngineProcess
    api: Api
    store: Path
    env: dict[str, str]

    def cli(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jupyter_bai.cli", *argv], input=stdin,
                              capture_output=True, text=True, timeout=300, env={**os.environ, **self.env})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, bwrap: str) -> Iterator[Setup]:
    """An engine whose engine list is private: one engine from `engine add` (the store), one
    from `c.BaiApp.engines` with its secret in an environment variable."""
    base = tmp_path_factory.mktemp("engines-api")
    cfg = base / "cfg"
    cfg.mkdir()
    (cfg / "jupyter_server_config.json").write_text(json.dumps({"BaiApp": {"engines": {
        "cfg": {"backendai": f"http://127.0.0.1:{free_port()}", "access_key": "AKCONFIGEXAMPLE",
                "secret_key_env": "SIDE4_CFG_SECRET"}}}}))
    with pytest.MonkeyPatch.context() as mp:
        env = isolate_engines(mp, cfg, SIDE4_CFG_SECRET=CONFIG_SECRET)
        # Nothing answers on this port: the cluster is "unreachable".
        engines.add_engine("down", f"http://127.0.0.1:{free_port()}", "AKDOWNEXAMPLE", STORE_SECRET)
        eng = start_engine(base / "engine", env)
        try:
            yield Setup(eng, Api(eng), cfg / "bai-engines.json", env)
        finally:
            eng.teardown()


def _no_secrets(resp: httpx.Response, *secrets: str) -> None:
    for secret in (CONFIG_SECRET, STORE_SECRET, "AKDOWNEXAMPLE", "AKCONFIGEXAMPLE", *secrets):
        assert secret not in resp.text, f"{resp.request.url} leaks a key"


def _names(body: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {e["name"]: e for e in body["engines"]}


def test_list_shows_every_source_and_no_key(setup: Setup) -> None:
    r = setup.api.get("/engines")
    assert r.status_code == 200, r.text
    _no_secrets(r)
    body = r.json()
    found = _names(body)
    assert body["active"] == "local" and body["override"] is None
    assert found["local"] == {"name": "local", "kind": "local", "url": None, "source": "builtin",
                              "active": True, "secret_key": "none"}
    assert found["down"]["kind"] == "backendai" and found["down"]["source"] == "store"
    assert found["cfg"]["source"] == "config" and found["cfg"]["secret_key"] == "set"
    assert found["cfg"]["url"].startswith("http://127.0.0.1:") and not found["cfg"]["active"]
    assert set(found["down"]) == {"name", "kind", "url", "source", "active", "secret_key"}


def test_switch_the_default_and_back(setup: Setup) -> None:
    r = setup.api.put("/engines/active", json={"name": "down"})
    assert r.status_code == 200, r.text
    _no_secrets(r)
    assert r.json()["active"] == "down" and _names(r.json())["down"]["active"]
    assert json.loads(setup.store.read_text())["active"] == "down"
    assert setup.store.stat().st_mode & 0o777 == 0o600
    # the CLI (and kernels started from now on) see the new default
    listed = json.loads(setup.cli("engine", "ls", "--json").stdout)
    assert [e["name"] for e in listed if e["active"]] == ["down"]
    assert setup.api.get("/engines").json()["active"] == "down"
    r = setup.api.put("/engines/active", json={"name": "local"})
    assert r.status_code == 200 and r.json()["active"] == "local"
    assert "active" not in json.loads(setup.store.read_text())


def test_unknown_or_malformed_choice_changes_nothing(setup: Setup) -> None:
    before = setup.store.read_text()
    r = setup.api.put("/engines/active", json={"name": "nope"})
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["error"] == "not-found" and "no engine named 'nope'" in body["message"]
    assert "\n" not in body["message"]
    for bad in ({}, {"name": ""}, {"name": 3}, [], {"name": "x" * 300}):
        r = setup.api.put("/engines/active", json=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"] == "invalid-request"
    assert setup.store.read_text() == before
    assert setup.api.get("/engines/nope/resources").status_code == 404
    assert setup.api.get("/engines/nope/sessions").json()["error"] == "not-found"


def test_local_engine_resources_and_sessions(setup: Setup) -> None:
    r = setup.api.get("/engines/local/resources")
    assert r.status_code == 200, r.text
    assert r.json()["capacity"] == setup.api.get("/resources").json()["capacity"]
    name = f"eng{uuid.uuid4().hex[:6]}"
    setup.api.create(name=name, command="sleep 60")
    try:
        names = [s["name"] for s in setup.api.get("/engines/local/sessions").json()["sessions"]]
        assert name in names
    finally:
        setup.api.delete(f"/sessions/{name}", params={"forced": "true"})


def test_unreachable_cluster_is_a_502_one_liner(setup: Setup) -> None:
    for path in ("/engines/down/resources", "/engines/down/sessions"):
        r = setup.api.get(path)
        assert r.status_code == 502, r.text
        _no_secrets(r)
        body = r.json()
        assert body["error"] == "unreachable" and body["message"].startswith("engine down: cannot reach")
        assert "\n" not in body["message"]


# --------------------------------------------------------------------------- the real cluster


def test_cluster_resources_and_sessions_through_the_driver(setup: Setup, backendai: Cluster) -> None:
    tag = uuid.uuid4().hex[:6]
    lab, bad = f"lab{tag}", f"bad{tag}"
    out = setup.cli("engine", "add", lab, "--backendai", backendai.endpoint, "--access-key",
                    backendai.access_key, stdin=backendai.secret_key + "\n")
    assert out.returncode == 0, out.stderr
    out = setup.cli("engine", "add", bad, "--backendai", backendai.endpoint, "--access-key",
                    backendai.access_key, "--no-check", stdin="not-the-secret\n")
    assert out.returncode == 0, out.stderr
    sess = f"side4-{tag}"
    cluster = Client(driver=engines.make_driver(engines.get_engine(lab)))
    try:
        r = setup.api.get(f"/engines/{lab}/resources")
        assert r.status_code == 200, r.text
        _no_secrets(r, backendai.secret_key, backendai.access_key)
        res = r.json()
        assert float(res["capacity"]["cpu"]) >= 1 and {"cpu01-small"} <= {p["name"] for p in res["presets"]}
        assert res["capacity"] != setup.api.get("/resources").json()["capacity"]

        r = setup.api.get(f"/engines/{bad}/resources")
        assert r.status_code == 502 and r.json()["error"] == "unauthorized", r.text
        assert "access key or secret key rejected" in r.json()["message"]
        _no_secrets(r, backendai.secret_key, backendai.access_key)

        cluster.create_session(IMAGE, name=sess, resources=["cpu=1", "mem=512m"])
        r = setup.api.get(f"/engines/{lab}/sessions")
        assert r.status_code == 200, r.text
        _no_secrets(r, backendai.secret_key, backendai.access_key)
        mine = [s for s in r.json()["sessions"] if s["name"] == sess]
        assert len(mine) == 1 and mine[0]["runtime"] == "backendai"
        # and none of the local engine's sessions are in the cluster's list
        local_ids = {s["id"] for s in setup.api.get("/sessions").json()["sessions"]}
        assert not local_ids & {s["id"] for s in r.json()["sessions"]}

        listed = _names(setup.api.get("/engines").json())
        assert listed[lab]["url"] == backendai.endpoint and listed[lab]["source"] == "store"
    finally:
        destroy_if_there(cluster, sess)
        cluster.close()
        setup.cli("engine", "rm", lab)
        setup.cli("engine", "rm", bad)


# --------------------------------------------------------------------------- `resources` says which engine


def _magic_resources(env: dict[str, str], *args: str) -> str:
    """``%bai resources`` in a real IPython shell with ``env``: the HTML a notebook shows."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "jupyter_bai")
        with capture_output() as cap:
            ip.run_line_magic("bai", " ".join([*args, "resources"]))
    assert cap.stderr == "", cap.stderr
    return str(cap.outputs[0].data["text/html"])


def test_resources_title_names_the_local_engine(setup: Setup) -> None:
    env = {**setup.env, **setup.engine.env}
    out = subprocess.run([sys.executable, "-m", "jupyter_bai.cli", "resources"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"engine local (local, {setup.engine.url})"
    assert out.stdout.splitlines()[1].startswith("node ")
    html = _magic_resources(env)
    assert f'<p class="bai-resources-title"><b>engine local (local, {setup.engine.url})</b></p>' in html
    out = setup.cli("--engine", "down", "resources")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "cannot reach" in out.stderr


def test_resources_title_names_the_cluster(setup: Setup, backendai: Cluster) -> None:
    name = f"title{uuid.uuid4().hex[:6]}"
    out = setup.cli("engine", "add", name, "--backendai", backendai.endpoint, "--access-key",
                    backendai.access_key, stdin=backendai.secret_key + "\n")
    assert out.returncode == 0, out.stderr
    try:
        text = setup.cli("--engine", name, "resources").stdout
        assert text.splitlines()[0] == f"engine {name} (backendai, {backendai.endpoint})"
        html = _magic_resources({**setup.env, engines.ENV_ENGINE: name})
        assert f"<b>engine {name} (backendai, {backendai.endpoint})</b>" in html and "cpu01-small" in html
        assert backendai.secret_key not in html
    finally:
        setup.cli("engine", "rm", name)
