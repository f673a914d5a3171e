"""Notebook deploy end to end: a real engine, bubblewrap routes running the notebook runner,
the endpoint proxy, the CLI and the client; rolling redeploys under load."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from deploy_notebooks import classifier
from engine_proc import Api, EngineProcess, start_engine
from jupyter_bai.client import Client
from jupyter_bai.spec.errors import BaiError
from test_services import Load, _remove

REPO = Path(__file__).parent.parent
RES = ["-r", "cpu=0.5", "-r", "mem=512m"]
RESOURCES = {"cpu": "0.5", "mem": "512m"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Jupyter root_dir: where the notebooks and their files live."""
    path = tmp_path_factory.mktemp("root")
    (path / "model.json").write_text(json.dumps({"labels": ["alpha", "beta", "gamma"]}))
    return path


@pytest.fixture(scope="module")
def deng(tmp_path_factory: pytest.TempPathFactory, root: Path, bwrap: str) -> Iterator[EngineProcess]:
    eng = start_engine(tmp_path_factory.mktemp("deploy-engine"),
                       extra_argv=[f"--ServerApp.root_dir={root}"])
    yield eng
    eng.teardown()


@pytest.fixture()
def api(deng: EngineProcess) -> Api:
    return Api(deng)


@pytest.fixture()
def client(deng: EngineProcess) -> Iterator[Client]:
    c = Client(url=deng.url, token=deng.token)
    yield c
    c.close()


@pytest.fixture()
def bai(deng: EngineProcess, root: Path) -> Any:
    env = {**os.environ, **deng.env, "PYTHONPATH": str(REPO)}

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "jupyter_bai.cli", *args], env=env,
                              cwd=root, capture_output=True, text=True, timeout=300)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    return call


def _deploy_folders(api: Api) -> list[str]:
    return sorted(f["name"] for f in api.get("/vfolders").json()["vfolders"] if ".v" in f["name"])


def _versions_of_routes(api: Api, name: str) -> list[tuple[int, str]]:
    """The routes in the rotation (draining ones have left it)."""
    return sorted((r["version"], r["status"]) for r in api.get(f"/services/{name}").json()["routes"]
                  if r["status"] != "TERMINATING")


def test_the_example_deploys_and_rolls_over_without_a_failed_request(
        api: Api, client: Client, bai: Any, root: Path) -> None:
    classifier(root / "classifier.ipynb", version="v1")
    # the command line: two private replicas, the model file packed next to it
    proc = bai("deploy", "classifier.ipynb", "-t", "clf", "--replicas", "2", *RES,
               "--files", "model.json", "--wait", "--json")
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)
    assert first["service"] == "clf" and first["version"] == 1 and first["token"]
    assert first["hash"].startswith("sha256:")
    assert first["endpoint"].endswith("/services/clf/")
    try:
        url, auth = first["endpoint"], {"Authorization": f"Bearer {first['token']}"}
        info = api.get("/services/clf").json()
        assert info["runtime_variant"] == "notebook" and info["version"] == 1
        assert [r["status"] for r in info["routes"]] == ["HEALTHY", "HEALTHY"]
        assert len({r["port"] for r in info["routes"]}) == 2

        # private: no token, no answer; with the token, the answer
        assert httpx.post(url + "predict", json={"text": "beta"}).status_code == 401
        r = httpx.post(url + "predict", json={"text": "beta beta", "top_k": 2}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"labels": ["beta", "alpha"], "version": "v1", "warm": True}
        bad = httpx.post(url + "predict", json={"top_k": 2}, headers=auth)
        assert bad.status_code == 400 and bad.json()["message"] == "text: Field required"
        r = httpx.get(url + "bad", headers=auth)
        assert r.status_code == 500 and "returned a value of type 'object'" in r.json()["message"]
        doc = httpx.get(url + "openapi.json", headers=auth).json()
        assert set(doc["paths"]) == {"/predict", "/version", "/bad"}

        # a redeploy under steady load: routes roll over, not one request fails
        classifier(root / "classifier.ipynb", version="v2")
        with Load(url + "version", first["token"], workers=2) as load:
            second = client.deploy(str(root / "classifier.ipynb"), name="clf", replicas=2,
                                   resources=RESOURCES, files=[str(root / "model.json")],
                                   wait=True, timeout=240)
            after = [httpx.get(url + "version", headers=auth).json()["version"] for _ in range(4)]
        assert load.failures == [] and load.ok > 0, load.failures[:5]
        assert second.version == 2 and after == ["v2"] * 4
        assert [(v.version, v.current) for v in client.service_versions("clf")] == [
            (1, False), (2, True)]

        # a version whose start-up cell raises never takes over: v2 keeps serving
        classifier(root / "classifier.ipynb", version="v3",
                   extra="raise RuntimeError('the model file is corrupt')")
        with Load(url + "version", first["token"]) as load:
            with pytest.raises(BaiError) as err:
                client.deploy(str(root / "classifier.ipynb"), name="clf", replicas=2,
                              resources=RESOURCES, files=[str(root / "model.json")],
                              wait=True, timeout=240)
        assert load.failures == [] and load.ok > 0, load.failures[:5]
        assert "version 3 of service 'clf' did not become ready (FAILED_TO_START)" in str(err.value)
        assert "cell 5 raised RuntimeError: the model file is corrupt" in str(err.value)
        assert "the previous version keeps serving (2 routes)" in str(err.value)
        shown = bai("service", "info", "clf")
        assert "cell 5 raised RuntimeError: the model file is corrupt" in shown.stdout
        assert httpx.get(url + "version", headers=auth).json() == {"version": "v2"}

        # rollback: v2 is current again and the failed route goes
        rolled = bai("service", "rollback", "clf", "--wait", "--json")
        assert rolled.returncode == 0 and json.loads(rolled.stdout)["version"] == 2
        assert _versions_of_routes(api, "clf") == [(2, "HEALTHY"), (2, "HEALTHY")]

        # a version that never gets ready (its @on_start hangs): v2 keeps serving
        classifier(root / "classifier.ipynb", version="v4",
                   extra="import time\n@on_start\ndef hang():\n    time.sleep(3600)",
                   metadata={"bai": {"health_check": {"initial_delay": 2, "interval": 0.5,
                                                      "max_retries": 2}}})
        with Load(url + "version", first["token"]) as load:
            proc = bai("deploy", "classifier.ipynb", "-t", "clf", "--replicas", "2", *RES,
                       "--files", "model.json", "--wait")
        assert load.failures == [] and load.ok > 0, load.failures[:5]
        assert proc.returncode == 1
        assert ("error: version 4 of service 'clf' did not become ready (FAILED_TO_START): "
                "health check never passed" in proc.stderr), proc.stderr
        assert "deploying classifier.ipynb (sha256:" in proc.stderr
        assert "curl -H 'Authorization: Bearer " in proc.stdout  # printed before the wait
        assert httpx.get(url + "version", headers=auth).json() == {"version": "v2"}

        # a public redeploy answers without a token
        classifier(root / "classifier.ipynb", version="v5")
        fifth = client.deploy(str(root / "classifier.ipynb"), name="clf", replicas=2,
                              public=True, resources=RESOURCES,
                              files=[str(root / "model.json")], wait=True, timeout=240)
        assert fifth.version == 5 and fifth.token is None
        assert httpx.get(url + "version").json() == {"version": "v5"}
        assert _versions_of_routes(api, "clf") == [(5, "HEALTHY"), (5, "HEALTHY")]
        assert _deploy_folders(api) == [f"clf.v{n}" for n in range(1, 6)]
    finally:
        _remove(api, "clf")
    deadline = time.monotonic() + 30
    while _deploy_folders(api) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _deploy_folders(api) == []  # the versions' folders go with the service


def _problem_notebooks(root: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (notebook file, extra deploy args), each of them refused."""
    import nbformat

    from deploy_notebooks import notebook

    def write(name: str, *cells: str) -> str:
        nbformat.write(notebook([(c, []) for c in cells]), str(root / name))
        return name

    (root / "broken.ipynb").write_text("{ not a notebook")
    imp = "from jupyter_bai.serving import endpoint\n"
    return {
        "no endpoint": (write("none.ipynb", "x = 1"), []),
        "duplicate path": (write("dup.ipynb", imp + "@endpoint('/p')\ndef a(): return 1",
                                 "@endpoint('/p')\ndef b(): return 2"), []),
        "missing file": (classifier(root / "ok.ipynb").name, ["--files", "nope.bin"]),
        "not a notebook": ("broken.ipynb", []),
        "syntax error": (write("syntax.ipynb", imp + "@endpoint('/p')\ndef a(:"), []),
    }


def test_bad_input_is_refused_and_leaves_nothing(api: Api, bai: Any, root: Path) -> None:
    expected = {
        "no endpoint": "error: cannot deploy none.ipynb: no @endpoint in the notebook",
        "duplicate path": "two endpoints on POST /p: 'a' (cell 2) and 'b' (cell 3)",
        "missing file": "error: listed file ",
        "not a notebook": "broken.ipynb is not a readable notebook",
        "syntax error": "cell 2: syntax error at line 3",
    }
    for what, (nb, extra) in _problem_notebooks(root).items():
        proc = bai("deploy", nb, "-t", "bad", *RES, *extra)
        assert proc.returncode == 1, what
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected[what] in lines[0], (what, proc.stderr)
    r = api.post("/services/bad/deploy", json={"notebook": "none.ipynb"})
    assert r.status_code == 400 and r.json()["error"] == "invalid-request"
    r = api.post("/services/bad/deploy", json={"notebook": "ok.ipynb", "files": ["nope.bin"]})
    assert r.status_code == 404 and "listed file 'nope.bin' does not exist" in r.json()["message"]
    fifo = root / "pipe.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    r = api.post("/services/bad/deploy", json={"notebook": "ok.ipynb", "files": ["pipe.fifo"]})
    assert r.status_code == 400 and "'pipe.fifo' is not a regular file" in r.json()["message"]
    r = api.post("/services/bad/deploy", json={"notebook": "/etc/hostname.ipynb"})
    assert r.status_code == 400 and "outside the Jupyter root" in r.json()["message"]
    r = api.post("/deploy/check", json={"notebook": "dup.ipynb"})
    assert r.status_code == 200 and r.json()["problems"] == [
        "two endpoints on POST /p: 'a' (cell 2) and 'b' (cell 3)"]
    assert api.get("/services/bad").status_code == 404
    assert _deploy_folders(api) == []


def test_a_cell_raising_at_start_up_fails_the_route_and_says_which(
        api: Api, bai: Any, root: Path) -> None:
    classifier(root / "raises.ipynb", extra="1 / 0")
    proc = bai("deploy", "raises.ipynb", "-t", "raises", *RES, "--files", "model.json", "--wait")
    try:
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1] == (
            "error: version 1 of service 'raises' did not become ready (FAILED_TO_START): "
            "exit code 1 (last log line: start-up failed: cell 5 raised ZeroDivisionError: "
            "division by zero)"), proc.stderr
        info = api.get("/services/raises").json()
        assert info["status"] == "FAILED"
        assert "cell 5 raised ZeroDivisionError: division by zero" in info["status_info"]
        versions = bai("service", "versions", "raises", "--json")
        assert [v["version"] for v in json.loads(versions.stdout)] == [1]
    finally:
        _remove(api, "raises")


def test_a_deploy_the_engine_dies_in_leaves_no_folder_behind(tmp_path: Path, bwrap: str) -> None:
    """kill -9 while the version folder is being packed, then restart: the half-packed
    folder is removed at start and the same deploy succeeds as version 1."""
    root = tmp_path / "root"
    root.mkdir()
    classifier(root / "crash.ipynb", version="v1")
    block = os.urandom(1 << 20)
    with (root / "big.bin").open("wb") as f:  # big enough to be packing while the test looks
        for _ in range(400):
            f.write(block)
    eng = start_engine(tmp_path / "eng", extra_argv=[f"--ServerApp.root_dir={root}"])
    api = Api(eng)
    try:
        body = {"notebook": "crash.ipynb", "files": ["big.bin"], "resources": RESOURCES}
        sender = threading.Thread(target=lambda: _ignore_http_errors(
            api.post, "/services/crash/deploy", json=body), daemon=True)
        sender.start()
        vroot = eng.state_dir / "vfolders"
        deadline = time.monotonic() + 120
        while not list(vroot.glob("*/.bai-upload-*")):  # big.bin is streaming into v1's folder
            assert time.monotonic() < deadline, eng.log_tail()
            time.sleep(0.002)
        eng.kill9()
        assert [d for d in vroot.iterdir() if not d.name.startswith(".")]  # the folder is there
        eng.start()
        assert _deploy_folders(api) == []
        assert api.get("/services/crash").status_code == 404
        r = api.post("/services/crash/deploy",
                     json={"notebook": "crash.ipynb", "resources": RESOURCES})
        assert r.status_code == 202 and r.json()["version"] == 1, r.text
        assert _deploy_folders(api) == ["crash.v1"]
    finally:
        _remove(api, "crash")
        eng.teardown()


def _ignore_http_errors(call: Any, *args: Any, **kw: Any) -> None:
    try:
        call(*args, **kw)
    except httpx.HTTPError:
        pass  # the engine was killed under the request, on purpose
