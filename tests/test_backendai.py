"""The Backend.AI cluster driver against a real Backend.AI 23.09.10 halfstack.

The ``backendai`` fixture (tests/conftest.py) reuses a running halfstack or starts the vendored
one once per run; with CI=true nothing here skips.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from backendai_cluster import IMAGE, Cluster, delete_folder_when_free, destroy_if_there
from private_engines import isolate_engines
from jupyter_bai.client import AsyncClient, Client
from jupyter_bai.client import engines
from jupyter_bai.client.backendai import BackendAIConfig, BackendAIDriver
from jupyter_bai.spec.errors import BaiError, InvalidRequest, NotFound

pytestmark = pytest.mark.timeout(1200)


def _tag() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private engine list and Jupyter config dir; no engine chosen by the environment."""
    return Path(isolate_engines(monkeypatch, tmp_path / "cfg")[engines.ENV_STORE])


def cli(*argv: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_bai.cli", *argv], input=stdin,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def cluster(backendai: Cluster) -> Iterator[Client]:
    c = Client(driver=BackendAIDriver(BackendAIConfig(
        backendai.endpoint, backendai.access_key, backendai.secret_key)))
    yield c
    c.close()


# --------------------------------------------------------------------------- no cluster needed


def test_secret_key_is_refused_on_the_command_line(store: Path) -> None:
    out = cli("engine", "add", "lab", "--backendai", "http://127.0.0.1:9", "--access-key", "AK",
              "--secret-key", "SK")
    assert out.returncode == 1 and not store.exists()
    assert out.stderr.startswith("error: --secret-key would show the key") and out.stderr.count("\n") == 1


def test_unknown_engine_is_one_line(store: Path) -> None:
    for argv in (["--engine", "nope", "resources"], ["engine", "use", "nope"], ["engine", "rm", "nope"]):
        out = cli(*argv)
        assert out.returncode == 1 and out.stderr.count("\n") == 1
        assert "no engine named 'nope'" in out.stderr and "known: local" in out.stderr
    assert not store.exists()


def test_unreachable_endpoint_names_the_url_and_stores_nothing(store: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    url = f"http://127.0.0.1:{port}"
    out = cli("engine", "add", "far", "--backendai", url, "--access-key", "AK", stdin="SK\n")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert f"cannot reach the Backend.AI endpoint {url}" in out.stderr
    assert not store.exists()


def test_silent_endpoint_times_out_naming_the_url() -> None:
    """A server that accepts and never answers: a timeout line, not a hang."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    url = f"http://127.0.0.1:{srv.getsockname()[1]}"
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(srv.accept()[0]) for _ in range(4)], daemon=True).start()
    client = Client(driver=BackendAIDriver(BackendAIConfig(url, "AK", "SK"), timeout=1.5))
    try:
        with pytest.raises(BaiError) as err:
            client.list_vfolders()
        assert str(err.value) == f"the Backend.AI endpoint {url} did not answer within 1.5s"
    finally:
        client.close()
        srv.close()
        for conn in held:
            conn.close()


def test_engine_store_is_owner_only_and_never_shows_secrets(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engines.add_engine("lab", "http://127.0.0.1:9", "AKX", "very-secret-key")
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    for argv in (["engine", "ls"], ["engine", "ls", "--json"], ["--json", "engine", "use", "lab"]):
        out = cli(*argv)
        assert out.returncode == 0, out.stderr
        assert "very-secret-key" not in out.stdout + out.stderr and "AKX" in out.stdout
    listed = {e["name"]: e for e in json.loads(cli("engine", "ls", "--json").stdout)}
    assert listed["lab"]["active"] and listed["lab"]["secret_key"] == "set"
    assert not listed["local"]["active"]
    assert cli("engine", "use", "local").returncode == 0
    assert engines.active_name() == "local"
    # Backend.AI's environment variables: an `env` engine, and defaults for `engine add`
    monkeypatch.setenv("BACKEND_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("BACKEND_ACCESS_KEY", "AKENV")
    monkeypatch.setenv("BACKEND_SECRET_KEY", "env-secret")
    env_engine = engines.get_engine("env")
    assert env_engine.url == "http://127.0.0.1:9" and env_engine.secret_key == "env-secret"
    assert "env-secret" not in repr(env_engine) and "env-secret" not in json.dumps(env_engine.public())
    out = cli("engine", "add", "lab2", "--no-check")
    assert out.returncode == 0, out.stderr
    assert engines.get_engine("lab2").access_key == "AKENV"
    assert json.loads(store.read_text())["engines"]["lab2"]["secret_key"] == "env-secret"
    assert cli("engine", "rm", "lab2").returncode == 0 and "lab2" not in engines.all_engines()
    out = cli("engine", "rm", "local")
    assert out.returncode == 1 and "built in" in out.stderr


def test_engines_from_jupyter_config(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (store.parent).mkdir(parents=True, exist_ok=True)
    (store.parent / "jupyter_server_config.py").write_text(
        "c.BaiApp.engines = {'team': {'backendai': 'http://127.0.0.1:9/', 'access_key': 'AKT', "
        "'secret_key_env': 'TEAM_SK'}}\n")
    monkeypatch.setenv("TEAM_SK", "team-secret")
    team = engines.get_engine("team")
    assert (team.url, team.access_key, team.secret_key, team.source) == (
        "http://127.0.0.1:9", "AKT", "team-secret", "config")
    out = cli("engine", "rm", "team")
    assert out.returncode == 1 and "comes from config" in out.stderr


# --------------------------------------------------------------------------- the real cluster


def test_wrong_keys_are_rejected_and_nothing_is_stored(backendai: Cluster, store: Path) -> None:
    out = cli("engine", "add", "lab", "--backendai", backendai.endpoint, "--access-key",
              backendai.access_key, stdin="not-the-secret\n")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "access key or secret key rejected" in out.stderr and backendai.endpoint in out.stderr
    assert not store.exists()


def test_engine_add_use_and_resources(backendai: Cluster, store: Path) -> None:
    out = cli("engine", "add", "lab", "--backendai", backendai.endpoint, "--access-key",
              backendai.access_key, stdin=backendai.secret_key + "\n")
    assert out.returncode == 0, out.stderr
    assert backendai.secret_key not in out.stdout + store.read_text().replace(backendai.secret_key, "", 1)
    res = json.loads(cli("--engine", "lab", "resources", "--json").stdout)
    assert res["engine"]["name"] == "lab" and res["engine"]["url"] == backendai.endpoint
    assert float(res["capacity"]["cpu"]) >= 1 and float(res["capacity"]["mem"]) > 0
    assert {"cpu01-small"} <= {p["name"] for p in res["presets"]}
    text = cli("--engine", "lab", "resources").stdout
    assert f"engine lab (backendai, {backendai.endpoint})" in text.splitlines()[0] and "cpu01-small" in text


def test_vfolder_upload_download_and_files(cluster: Client, tmp_path: Path) -> None:
    name = f"vf{_tag()}"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello cluster\n")
    blob = os.urandom(3 << 20)
    (src / "sub" / "blob.bin").write_bytes(blob)
    info = cluster.create_vfolder(name)
    assert info.name == name and info.usage_bytes == 0
    try:
        with pytest.raises(BaiError) as dup:
            cluster.create_vfolder(name)
        assert "already exists" in str(dup.value)
        cluster.upload(name, [src / "a.txt", src / "sub"])
        assert [(f.name, f.type) for f in cluster.list_files(name)] == [("a.txt", "file"), ("sub", "dir")]
        assert [(f.path, f.size) for f in cluster.list_files(name, "sub")] == [("sub/blob.bin", len(blob))]
        out = tmp_path / "out"
        cluster.download(name, ["a.txt", "sub"], out)
        assert (out / "a.txt").read_text() == "hello cluster\n"
        assert (out / "sub" / "blob.bin").read_bytes() == blob
        assert cluster.mkdir(name, "d/e", parents=True).path == "d/e"
        assert cluster.move(name, "a.txt", "d/a.txt").path == "d/a.txt"
        with pytest.raises(InvalidRequest):
            cluster.rm(name, "d")
        cluster.rm(name, "d", recursive=True)
        assert [f.name for f in cluster.list_files(name)] == ["sub"]
        with pytest.raises(NotFound):
            cluster.download(name, "missing.txt", out)
        assert name in [v.name for v in cluster.list_vfolders()]
    finally:
        cluster.delete_vfolder(name)
    with pytest.raises(NotFound):
        cluster.get_vfolder(name)


def test_session_with_a_mounted_vfolder_runs_code(cluster: Client, tmp_path: Path) -> None:
    folder, sess = f"vf{_tag()}", f"s{_tag()}"
    cluster.create_vfolder(folder)
    (tmp_path / "data.txt").write_text("41\n")
    cluster.upload(folder, [tmp_path / "data.txt"])
    try:
        info = cluster.create_session(IMAGE, name=sess, resources=["cpu=1", "mem=512m"],
                                      mounts=[folder], env=["GREETING=hi"], wait=True, timeout=300)
        assert info.status == "RUNNING" and info.mounts[0].target == f"/home/work/{folder}"
        assert info.runtime == "backendai" and info.resources["cpu"] == "1"
        out: list[tuple[str, str]] = []
        done = cluster.run_code(sess, f"x = int(open('/home/work/{folder}/data.txt').read()) + 1\n"
                                      "import os\nprint(x, os.environ['GREETING'])\n",
                                on_output=lambda s, t: out.append((s, t)))
        assert done.status == "ok" and "".join(t for s, t in out if s == "stdout") == "42 hi\n"
        out.clear()
        done = cluster.run_code(sess, "print(x * 2)\n", on_output=lambda s, t: out.append((s, t)))
        assert "".join(t for _, t in out) == "84\n"  # the interpreter persists between runs
        done = cluster.run_code(sess, "1/0\n", on_output=lambda s, t: None)
        assert done.status == "error" and done.ename == "ZeroDivisionError"
        assert "division by zero" in (done.evalue or "")
        chunks: list[tuple[str, str]] = []
        code = cluster.exec(sess, f"ls /home/work/{folder}; echo oops >&2; exit 3",
                            on_output=lambda s, t: chunks.append((s, t)))
        assert code == 3 and ("stdout", "data.txt\n") in chunks
        assert cluster.exec(sess, ["sh", "-c", "echo $V"], env={"V": "from-env"},
                            on_output=lambda s, t: chunks.append((s, t))) == 0
        assert chunks[-1] == ("stdout", "from-env\n")
        assert any(s.name == sess for s in cluster.list_sessions("RUNNING"))
        assert isinstance(cluster.session_logs(sess), str)
        gone = cluster.destroy_session(sess)
        assert gone.status in ("TERMINATING", "TERMINATED")
        assert cluster.wait_session(sess, {"TERMINATED"}, timeout=120).status == "TERMINATED"
        with pytest.raises(BaiError):
            cluster.run_code(sess, "1")
    finally:
        destroy_if_there(cluster, sess)
        delete_folder_when_free(cluster, folder)


def test_batch_session_exit_code_and_logs(cluster: Client) -> None:
    name = f"b{_tag()}"
    info = cluster.create_session(IMAGE, name=name, type="batch", command="echo batch-out; exit 4",
                                  resources={"cpu": 1, "mem": "512m"}, wait=True, timeout=300)
    assert info.status == "TERMINATED" and info.result == "failure" and info.exit_code is None
    assert "batch-out" in cluster.session_logs(name)
    ok = cluster.create_session(IMAGE, name=f"b{_tag()}", type="batch", command="true",
                                resources={"cpu": 1, "mem": "512m"}, wait=True, timeout=300)
    assert (ok.status, ok.result, ok.exit_code) == ("TERMINATED", "success", 0)


def test_sessions_destroyed_as_soon_as_made_never_run(cluster: Client) -> None:
    """Destroyed while PENDING or while the agent makes them, sessions end and leave no
    container: 23.09 otherwise starts some anyway (a PENDING one cancelled while the scheduler
    places it comes back RUNNING; one destroyed mid-PREPARING leaves its container running)."""
    tag = _tag()
    made = [cluster.create_session(IMAGE, name=f"gone{tag}{i}", resources=["cpu=1", "mem=512m"])
            for i in range(3)]
    cluster.destroy_session(made[0].id, forced=True)  # PENDING
    for sess in made[1:]:  # as soon as the agent is making it
        deadline = time.monotonic() + 60
        while cluster.get_session(sess.id).status not in ("SCHEDULED", "PREPARING", "RUNNING"):
            assert time.monotonic() < deadline, cluster.get_session(sess.id)
            time.sleep(0.1)
        cluster.destroy_session(sess.id, forced=True)
    deadline = time.monotonic() + 120
    for sess in made:
        while (status := cluster.get_session(sess.id).status) not in ("TERMINATED", "CANCELLED"):
            assert time.monotonic() < deadline, f"{sess.name} is {status}"
            time.sleep(1)
    time.sleep(5)  # the scheduler's next pass would have placed a wrongly cancelled one by now
    assert {cluster.get_session(s.id).status for s in made} <= {"TERMINATED", "CANCELLED"}
    running = subprocess.run(["docker", "ps", "-q", "--filter", "label=ai.backend.kernel-id"],
                             capture_output=True, text=True, check=True).stdout.split()
    labels = {subprocess.run(["docker", "inspect", "-f",
                              '{{index .Config.Labels "ai.backend.session-id"}}', c],
                             capture_output=True, text=True).stdout.strip() for c in running}
    assert not labels & {s.id for s in made}


def test_cluster_errors_keep_the_servers_reason(cluster: Client) -> None:
    with pytest.raises(BaiError) as err:
        cluster.create_session("no-such-image:0.0", name=f"x{_tag()}", resources=["cpu=1", "mem=512m"])
    assert "\n" not in str(err.value) and "image" in str(err.value).lower()
    with pytest.raises(InvalidRequest) as ro:
        cluster.create_session(IMAGE, mounts=["data:ro"])
    assert "own permission" in str(ro.value)
    with pytest.raises(NotFound):
        cluster.get_session(f"none{_tag()}")
    with pytest.raises(NotFound):
        cluster.delete_vfolder(f"none{_tag()}")
    big = f"big{_tag()}"
    with pytest.raises(BaiError) as nope:
        cluster.create_session(IMAGE, name=big, resources=["cpu=64", "mem=512m"])
    assert nope.value.code == "insufficient-resources" and "\n" not in str(nope.value)
    assert "no-available-instances" in str(nope.value) and "cpu=64" in str(nope.value)
    assert cluster.get_session(big).status in ("CANCELLED", "TERMINATING", "TERMINATED")
    assert big not in [s.name for s in cluster.list_sessions("PENDING")]


def test_async_client_lists_the_clusters_images(backendai: Cluster) -> None:
    async def main() -> list[Any]:
        async with AsyncClient(driver=BackendAIDriver(BackendAIConfig(
                backendai.endpoint, backendai.access_key, backendai.secret_key))) as client:
            return (await client.list_images()).images

    images = asyncio.run(main())
    by_name = {i.name: i for i in images}
    assert IMAGE in by_name and by_name[IMAGE].runtime == "backendai"
    assert by_name["index.docker.io/lablup/python:3.11-debian12"].id == by_name[IMAGE].id


# --------------------------------------------------------------------------- same cells, two engines


def _magic(ip: InteractiveShell, text: str, cell: str | None = None) -> tuple[Any, Any]:
    with capture_output() as cap:
        value = ip.run_cell_magic("bai", text, cell) if cell is not None else ip.run_line_magic("bai", text)
    return value, cap


def _quickstart(ip: InteractiveShell, image: str, tmp: Path) -> list[Any]:
    """The quickstart notebook's cells (image aside), returning what a user would look at."""
    tag = _tag()
    folder, sess, job = f"data{tag}", f"exp{tag}", f"job{tag}"
    seen: list[Any] = []
    os.chdir(tmp)
    Path("train.csv").write_text("x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(1, 101)))
    _, cap = _magic(ip, "resources")
    assert cap.stderr == "", cap.stderr
    for text in (f"vfolder create {folder}", f"vfolder upload {folder} ./train.csv"):
        _, cap = _magic(ip, text)
        assert cap.stderr == "", cap.stderr
    files = _magic(ip, f"--json vfolder files {folder}")[0]
    seen.append([(f["name"], f["size"]) for f in files])
    try:
        _, cap = _magic(ip, f"session create {image} -t {sess} -r cpu=1 -r mem=512m -v {folder} --wait")
        assert cap.stderr == "", cap.stderr
        for body in (f'import os; print(os.listdir("/home/work/{folder}"))\n',
                     f"import csv\nrows = list(csv.DictReader(open('/home/work/{folder}/train.csv')))\n"
                     "slope = sum(float(r['y']) for r in rows) / sum(float(r['x']) for r in rows)\n"
                     "print(f'{len(rows)} rows, slope ~ {slope:.2f}')\n",
                     "print(len(rows), round(slope))\n"):
            _, cap = _magic(ip, f"run {sess}", body)
            assert cap.stderr == "", cap.stderr
            seen.append(cap.stdout)
        _, cap = _magic(ip, f"session create {image} -t {job} --type batch "
                            f"-c 'wc -l /home/work/{folder}/train.csv' -v {folder} --wait")
        assert "101 /home/work/" in cap.stdout, (cap.stdout, cap.stderr)
        info = _magic(ip, f"--json session info {job}")[0]
        seen.append((info["status"], info["result"], info["exit_code"]))
        seen.append(sess in [s["name"] for s in _magic(ip, "--json session ls")[0]])
    finally:
        _magic(ip, f"session destroy {sess}")
        client = engines.make_client()
        try:
            client.wait_session(sess, {"TERMINATED"}, timeout=120)
            delete_folder_when_free(client, folder)
        finally:
            client.close()
    return seen


def test_quickstart_cells_work_on_local_and_on_the_cluster(
        backendai: Cluster, engine_env: dict[str, str], store: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_SECRET_KEY", backendai.secret_key)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_bai")
    old = os.getcwd()
    try:
        local = _quickstart(ip, "local", tmp_path)
        _, cap = _magic(ip, f"engine add lab --backendai {backendai.endpoint} --access-key {backendai.access_key}")
        assert cap.stderr == "" and backendai.secret_key not in cap.stdout
        _, cap = _magic(ip, "engine use lab")
        assert cap.stderr == "" and engines.active_name() == "lab"
        assert _magic(ip, "--json resources")[0]["engine"]["name"] == "lab"
        remote = _quickstart(ip, IMAGE, tmp_path)
        _magic(ip, "engine use local")
        assert engines.active_name() == "local"
    finally:
        os.chdir(old)
    assert remote == local
    assert local[1].startswith("['train.csv']") and local[2] == "100 rows, slope ~ 2.00\n"
    assert local[4] == ("TERMINATED", "success", 0)
