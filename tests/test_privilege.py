"""Least privilege, checked from inside real sessions on both runtimes, as CI runs them (root).

A session must never be root or hold a capability, whatever user runs the engine: it runs
as the session user (1000:1000 under a root engine), with CapEff/CapPrm/CapBnd all zero and
NoNewPrivs set; it cannot read root-only files, mount, make device nodes or create a user
namespace (the way back to mount powers) — yet /home/work and its read-write folders are
writable.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Iterator

import pytest

import docker_image
from engine_proc import Api, EngineProcess, start_engine
from test_docker import dclient, images  # noqa: F401 - shared session fixtures

ROOT_ENGINE = os.geteuid() == 0
SESSION_IDS = ("1000", "1000") if ROOT_ENGINE else (str(os.geteuid()), str(os.getegid()))
SECRET = "top-secret-not-for-sessions"

PROBE = r"""
for t in id unshare mount mknod; do command -v $t >/dev/null || echo "tools=missing $t"; done
echo "uid=$(id -u)"
echo "gid=$(id -g)"
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status | tr -d ' \t' | tr ':' '='
cat /etc/shadow >/dev/null 2>&1 && echo shadow=readable || echo shadow=denied
mkdir -p /tmp/m && echo tmp=writable
mount -t tmpfs none /tmp/m >/dev/null 2>&1 && echo mount=ok || echo mount=denied
mknod /tmp/null2 c 1 3 >/dev/null 2>&1 && echo mknod=ok || echo mknod=denied
unshare -U true >/dev/null 2>&1 && echo userns=ok || echo userns=denied
unshare -Ur true >/dev/null 2>&1 && echo userns_root=ok || echo userns_root=denied
(echo x > /home/work/probe) 2>/dev/null && echo home=writable || echo home=denied
(echo x > /mnt/rw/probe) 2>/dev/null && echo rw=writable || echo rw=denied
mkdir /mnt/rw/sub 2>/dev/null && echo rw_mkdir=ok || echo rw_mkdir=denied
"""

EXPECTED = {
    "uid": SESSION_IDS[0], "gid": SESSION_IDS[1], "tmp": "writable",
    "CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
    "NoNewPrivs": "1",
    "shadow": "denied", "mount": "denied", "mknod": "denied", "userns": "denied",
    "userns_root": "denied", "home": "writable", "rw": "writable", "rw_mkdir": "ok",
}


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root-only file bound at /etc/shadow in containers (the test image has no shadow)."""
    path = tmp_path_factory.mktemp("secret") / "shadow"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def peng(tmp_path_factory: pytest.TempPathFactory, bwrap: str, dclient: Any,  # noqa: F811
         images: dict[str, str], secret_file: Path) -> Iterator[EngineProcess]:  # noqa: F811
    binds = [*docker_image.HOST_BINDS, f"{secret_file}:/etc/shadow:ro"]
    eng = start_engine(tmp_path_factory.mktemp("priv"),
                       {"JUPYTER_BAI_DOCKER_BINDS": ",".join(binds)})
    yield eng
    eng.teardown()


def parse(logs: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in logs.splitlines() if "=" in line)


def probe(api: Api, image: str, name: str) -> dict[str, str]:
    api.post("/vfolders", json={"name": f"rw-{name}"})
    api.create(image=image, name=name, type="batch", command=PROBE,
               mounts=[f"rw-{name}:/mnt/rw"], resources={"cpu": "0.5", "mem": "256m"})
    s = api.wait(name, (), timeout=120)
    logs = api.get(f"/sessions/{name}/logs").json()["logs"]
    assert s["status"] == "TERMINATED", (s, logs)
    assert SECRET not in logs
    return parse(logs)


def test_local_session_has_no_privileges(peng: EngineProcess) -> None:
    api = Api(peng)
    runtime = {r["name"]: r for r in api.get("/resources").json()["runtimes"]}["local"]
    assert runtime["sandbox"] == "bwrap"
    assert any(f"run as uid:gid {':'.join(SESSION_IDS)} with no capabilities, no new user "
               "namespaces" in n for n in runtime["notes"]), runtime
    assert probe(api, "local", "plocal") == EXPECTED


def test_docker_session_has_no_privileges(peng: EngineProcess, images: dict[str, str],  # noqa: F811
                                          dclient: Any) -> None:  # noqa: F811
    api = Api(peng)
    got = probe(api, images["image"], "pdocker")
    assert got == EXPECTED
    s = api.get("/sessions/pdocker").json()
    assert s["runtime"] == "docker"


def test_interactive_sessions_run_code_as_the_session_user(peng: EngineProcess,
                                                           images: dict[str, str]) -> None:  # noqa: F811
    api = Api(peng)
    code = ("import os\nst = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
            "print(os.getuid(), os.getgid(), st['CapEff'].strip(), st['NoNewPrivs'].strip())")
    for name, image in (("pil", "local"), ("pid", images["image"])):
        api.create(image=image, name=name, resources={"cpu": "0.5", "mem": "256m"})
        assert api.wait(name)["status"] == "RUNNING"
        text, _ = api.run(name, code)
        assert text.split() == [*SESSION_IDS, "0000000000000000", "1"], (name, text)
        api.delete(f"/sessions/{name}")


def test_session_cannot_touch_the_wrapper_state(peng: EngineProcess) -> None:
    """The exit status lives where the session cannot write (a root wrapper writes it)."""
    api = Api(peng)
    s = api.create(name="pstate", type="batch",
                   command="ln -s /etc/passwd /run/bai/exit 2>/dev/null; exit 7")
    s = api.wait("pstate", ())
    assert (s["result"], s["exit_code"]) == ("failure", 7)
    state = peng.state_dir / "sessions" / s["id"] / "state"
    mode = state.stat().st_mode
    assert stat.S_IMODE(mode) == 0o700 and state.stat().st_uid == os.geteuid()
    assert (state / "exit").read_text().strip() == "7"
    assert not (state / "exit").is_symlink()


def test_docker_container_config_is_least_privilege(peng: EngineProcess, dclient: Any,  # noqa: F811
                                                    images: dict[str, str]) -> None:  # noqa: F811
    api = Api(peng)
    s = api.create(image=images["image"], name="pcfg", resources={"cpu": "0.5", "mem": "256m"})
    assert api.wait("pcfg")["status"] == "RUNNING"
    found = dclient.containers.list(filters={"label": f"ai.backend.bai.session-id={s['id']}"})
    host = found[0].attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["PidsLimit"] == 4096
    assert host["IpcMode"] != "host" and not host["Privileged"]
    assert found[0].attrs["Config"]["User"] == ":".join(SESSION_IDS)
    api.delete("/sessions/pcfg")


def test_docker_session_cannot_swap_its_log_for_a_symlink(peng: EngineProcess,
                                                          images: dict[str, str]) -> None:  # noqa: F811
    """The engine (root) appends exec output to the log and serves it: it must stay a file."""
    api = Api(peng)
    api.create(image=images["image"], name="plog", type="batch",
               command="rm -f /var/log/bai/output.log 2>/dev/null && echo removed; "
                       "ln -sf /etc/hostname /var/log/bai/x 2>/dev/null && echo linked; echo done")
    s = api.wait("plog", ())
    logs = api.get("/sessions/plog/logs").json()["logs"]
    assert s["result"] == "success" and logs.split() == ["done"], logs


def test_session_user_setting() -> None:
    from jupyter_bai.engine.runtimes.privilege import SessionUser, drop_argv, resolve_session_user

    auto = resolve_session_user("auto")
    assert auto.spec == ":".join(SESSION_IDS)
    for bad in ("0", "0:0", "1000:0", "root", "-1", "1000:x"):
        with pytest.raises(ValueError):
            resolve_session_user(bad)
    if ROOT_ENGINE:
        assert resolve_session_user("1234").spec == "1234:1234"
        argv = drop_argv(SessionUser(1234, 99))
        assert argv[1:] == ["--reuid=1234", "--regid=99", "--clear-groups", "--inh-caps=-all",
                            "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    else:
        with pytest.raises(ValueError):
            resolve_session_user(str(os.geteuid() + 1))
        assert drop_argv(auto) == []


def test_docker_user_is_never_root(tmp_path: Path) -> None:
    from jupyter_bai.engine.runtimes.docker import DockerRuntime
    from jupyter_bai.engine.runtimes.privilege import SessionUser

    for bad in ("0", "root", "0:0"):
        with pytest.raises(ValueError):
            DockerRuntime(tmp_path, user=bad)
    rt = DockerRuntime(tmp_path, session_user=SessionUser(1000, 1000))
    assert rt._resolve_user("") == "1000:1000"  # the image declares no USER: not root
    assert rt._resolve_user("root") == "1000:1000" and rt._resolve_user("0:0") == "1000:1000"
    if ROOT_ENGINE:
        assert rt._resolve_user("work") == "work"  # a non-root image USER is kept
