"""VFolder files through the REST API of a real engine: races with a live session, streamed
uploads under limits, awkward download names, big listings."""
from __future__ import annotations

import os
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote

import httpx
import pytest

from engine_proc import Api, EngineProcess, start_engine

MB = 1 << 20


@pytest.fixture()
def api(engine: EngineProcess) -> Api:
    return Api(engine)


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def folder_dir(eng: EngineProcess, api: Api, name: str) -> Path:
    fid = api.get(f"/vfolders/{name}").json()["id"]
    return eng.state_dir / "vfolders" / fid


def everything_under(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# ---------------------------------------------------------------- races with a session

SWAPPER = textwrap.dedent("""
    import ctypes, os, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    os.chdir(sys.argv[1])
    os.mkdir("d")
    with open("d/f", "w") as f:
        f.write("inside")
    os.symlink(sys.argv[2], "l")
    open("ready", "w").close()
    deadline = time.time() + 300
    while not os.path.exists("stop") and time.time() < deadline:
        for _ in range(1000):
            # RENAME_EXCHANGE (2): "d" and "l" trade places atomically, over and over.
            if libc.renameat2(-100, b"d", -100, b"l", 2) != 0:
                sys.exit("renameat2 failed: errno %d" % ctypes.get_errno())
""")


def test_symlink_swap_race_in_a_session_never_escapes(
    api: Api, engine: EngineProcess, tmp_path: Path
) -> None:
    """A session swaps a directory for a symlink to a host directory in a tight loop while
    downloads and uploads go through that directory: no host byte comes back, nothing is
    written outside the folder, and no answer is a 500."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("HOST-SECRET")
    (host / "host-only").write_text("")
    before = everything_under(host)
    folder = uniq("race")
    assert api.post("/vfolders", json={"name": folder}).status_code == 201
    name = uniq("swapper")
    # The script travels through the folder itself: the session sees only its mounts.
    assert api.put(f"/vfolders/{folder}/files", params={"path": "swap.py"},
                   content=SWAPPER.encode()).status_code == 201
    api.create(name=name, type="batch", mounts=[folder],
               command=f"python3 /home/work/{folder}/swap.py /home/work/{folder} {host}")
    try:
        deadline = time.monotonic() + 60
        while "ready" not in {f["name"] for f in api.get(f"/vfolders/{folder}/files").json()["files"]}:
            s = api.get(f"/sessions/{name}").json()
            assert s["status"] not in ("TERMINATED", "ERROR"), api.get(f"/sessions/{name}/logs").text
            assert time.monotonic() < deadline, "the swapping loop did not start"
            time.sleep(0.1)
        seen: dict[int, int] = {}
        for i in range(300):
            r = api.get(f"/vfolders/{folder}/download", params={"path": "d/f"})
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert b"HOST-SECRET" not in r.content, f"escaped after {i} tries"
            assert r.status_code in (200, 400), r.text
            if r.status_code == 200:
                assert r.content == b"inside"
            else:
                assert "symlink" in r.json()["message"], r.text
            r = api.put(f"/vfolders/{folder}/files", params={"path": f"d/up-{i}"}, content=b"up")
            seen[r.status_code + 1000] = seen.get(r.status_code + 1000, 0) + 1
            assert everything_under(host) == before, f"wrote outside after {i} tries"
            assert r.status_code in (201, 400), r.text
            if i % 3 == 0:  # listings and mkdir race too, a little less often
                r = api.get(f"/vfolders/{folder}/files", params={"path": "d"})
                assert r.status_code in (200, 400), r.text
                assert "host-only" not in r.text
                r = api.post(f"/vfolders/{folder}/mkdir", json={"path": f"d/dir-{i}"})
                assert r.status_code in (201, 400), r.text
                assert everything_under(host) == before, f"made a directory outside after {i}"
        print("outcomes (download status, 1000 + upload status):", seen)
        # Both outcomes happened: the race was real, not lost to scheduling.
        assert seen.get(200) and seen.get(400) and seen.get(1201) and seen.get(1400), seen
        assert everything_under(host) == before
        assert (host / "f").read_text() == "HOST-SECRET"
        s = api.get(f"/sessions/{name}").json()
        assert s["status"] == "RUNNING", api.get(f"/sessions/{name}/logs").text
    finally:
        api.put(f"/vfolders/{folder}/files", params={"path": "stop"}, content=b"")
        api.wait(name, ())
    # Every upload that succeeded landed inside the folder.
    ups = [p for p in everything_under(folder_dir(engine, api, folder)) if "up-" in p]
    assert len(ups) == seen[1201] and all(p.startswith(("d/", "l/")) for p in ups)
    assert api.get(f"/sessions/{name}").json()["result"] == "success"


def test_fifo_in_a_folder_is_refused_not_waited_on(api: Api, engine: EngineProcess) -> None:
    folder = uniq("fifo")
    api.post("/vfolders", json={"name": folder})
    os.mkfifo(folder_dir(engine, api, folder) / "pipe")
    r = api.get(f"/vfolders/{folder}/download", params={"path": "pipe"}, timeout=30)
    assert r.status_code == 400 and "not a file" in r.json()["message"]
    r = api.put(f"/vfolders/{folder}/files", params={"path": "pipe"}, content=b"x", timeout=30)
    assert r.status_code == 400 and "not a regular file" in r.json()["message"]


def test_a_listing_comes_from_the_walker_without_an_etag(api: Api, engine: EngineProcess) -> None:
    """What the walker process sends is the answer, entry for entry; and no answer carries an
    ETag (tornado would hash each body on the event loop, ~15 ms for a 10 MB listing)."""
    folder = uniq("walk")
    api.post("/vfolders", json={"name": folder})
    d = folder_dir(engine, api, folder)
    for i in range(300):
        (d / f"f{i:03d}").write_bytes(b"x" * i)
    (d / "sub").mkdir()
    r = api.get(f"/vfolders/{folder}/files")
    assert r.status_code == 200 and "etag" not in r.headers
    files = r.json()["files"]
    assert [f["name"] for f in files] == ["sub", *(f"f{i:03d}" for i in range(300))]
    assert [f["size"] for f in files[1:]] == list(range(300))
    info = api.get(f"/vfolders/{folder}")
    assert "etag" not in info.headers and info.json()["file_count"] == 300
    assert info.json()["usage_bytes"] == sum(range(300))


# ---------------------------------------------------------------- uploads under limits


def chunks(total: int, sent: list[int]) -> Iterator[bytes]:
    """A body of ``total`` bytes that records how much the client got to send."""
    block = b"z" * MB
    for _ in range(total // MB):
        sent[0] += MB
        yield block


@pytest.fixture(params=[[]])
def private_engine(request: pytest.FixtureRequest, tmp_path: Path, bwrap: str
                   ) -> Iterator[EngineProcess]:
    """A private engine (options from the test's parameter) with its own TMPDIR, to see
    whether anything is spooled there."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    eng = start_engine(tmp_path / "eng", {"TMPDIR": str(tmp), "JUPYTER_BAI_DOCKER": "off"},
                       list(request.param))
    yield eng
    eng.teardown()


CAP_4M = pytest.mark.parametrize("private_engine", [["--BaiApp.max_upload_size=4194304"]],
                                 indirect=True)


def spooled_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file() and not p.is_symlink())


def test_upload_over_quota_is_refused_while_streaming(private_engine: EngineProcess,
                                                      tmp_path: Path) -> None:
    eng = private_engine
    api = Api(eng)
    assert api.post("/vfolders", json={"name": "q", "quota": "10m"}).status_code == 201
    assert api.put("/vfolders/q/files", params={"path": "keep"}, content=b"k" * MB).status_code == 201
    tmp_before = spooled_bytes(tmp_path / "tmpdir")
    d = folder_dir(eng, api, "q")
    for headers in ({}, {"Content-Length": str(200 * MB)}):  # counted, and announced up front
        sent = [0]
        r = api.put("/vfolders/q/files", params={"path": "big"}, headers=headers,
                    content=chunks(200 * MB, sent))
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "quota-exceeded"
        assert "quota of vfolder 'q' exceeded: 10m limit, 1m used" in r.json()["message"]
        # The server stopped reading: most of the 200 MB was never sent.
        assert sent[0] < 100 * MB, sent
        assert everything_under(d) == ["keep"]
    assert spooled_bytes(tmp_path / "tmpdir") == tmp_before
    assert [f["name"] for f in api.get("/vfolders/q/files").json()["files"]] == ["keep"]
    # The connection was closed, not poisoned: the next calls work.
    assert api.put("/vfolders/q/files", params={"path": "ok"}, content=b"o" * MB).status_code == 201
    assert api.get("/vfolders/q").json()["usage_bytes"] == 2 * MB


@CAP_4M
def test_upload_size_cap(private_engine: EngineProcess, tmp_path: Path) -> None:
    api = Api(private_engine)
    assert api.post("/vfolders", json={"name": "c"}).status_code == 201
    d = folder_dir(private_engine, api, "c")
    for headers in ({}, {"Content-Length": str(5 * MB)}):
        sent = [0]
        r = api.put("/vfolders/c/files", params={"path": "big"}, headers=headers,
                    content=chunks(5 * MB, sent))
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "upload-too-large"
        assert "at most 4m per file" in r.json()["message"] and "\n" not in r.json()["message"]
        assert everything_under(d) == []
    # Exactly the cap fits.
    r = api.put("/vfolders/c/files", params={"path": "edge"}, content=b"e" * 4 * MB)
    assert r.status_code == 201 and r.json()["size"] == 4 * MB
    assert everything_under(d) == ["edge"]


def test_upload_cut_off_by_the_client_leaves_nothing(api: Api, engine: EngineProcess) -> None:
    folder = uniq("cut")
    api.post("/vfolders", json={"name": folder})
    d = folder_dir(engine, api, folder)

    def body() -> Iterator[bytes]:
        yield b"a" * (4 * MB)
        raise RuntimeError("client gave up")

    with pytest.raises((RuntimeError, httpx.HTTPError)):
        api.put(f"/vfolders/{folder}/files", params={"path": "partial"}, content=body())
    deadline = time.monotonic() + 30
    while everything_under(d) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert everything_under(d) == []


def test_upload_needs_parents_unless_asked(api: Api) -> None:
    folder = uniq("par")
    api.post("/vfolders", json={"name": folder})
    r = api.put(f"/vfolders/{folder}/files", params={"path": "a/b/c.txt"}, content=b"1")
    assert r.status_code == 404 and "parents=true" in r.json()["message"]
    r = api.put(f"/vfolders/{folder}/files", params={"path": "a/b/c.txt", "parents": "true"},
                content=b"1")
    assert r.status_code == 201 and r.json()["path"] == "a/b/c.txt"


# ---------------------------------------------------------------- downloads

ODD_NAMES = ['say "hi".txt', "new\nline.txt", "c1\x85char.txt", "caf\u00e9 \u65e5\u672c.txt",
             "back\\slash;x=1.txt", "emoji \U0001f600.bin", "semi;colon,comma.txt",
             " spaced out .txt "]


@pytest.mark.parametrize("fname", ODD_NAMES)
def test_download_names_are_encoded_per_rfc6266(api: Api, fname: str) -> None:
    folder = uniq("names")
    api.post("/vfolders", json={"name": folder})
    r = api.put(f"/vfolders/{folder}/files", params={"path": f"d/{fname}", "parents": "true"},
                content=b"payload")
    assert r.status_code == 201, r.text
    assert r.json()["name"] == fname
    r = api.get(f"/vfolders/{folder}/download", params={"path": f"d/{fname}"})
    assert r.status_code == 200 and r.content == b"payload"
    cd = r.headers["content-disposition"]
    assert cd.isascii() and "\n" not in cd and "\r" not in cd
    plain, star = cd.split("; filename*=UTF-8''")
    assert plain.startswith('attachment; filename="') and plain.endswith('"')
    assert '"' not in plain[len('attachment; filename="'):-1]
    assert unquote(star, encoding="utf-8", errors="strict") == fname


# ---------------------------------------------------------------- big listings


def test_listing_fifty_thousand_files(api: Api, engine: EngineProcess) -> None:
    folder = uniq("wide")
    api.post("/vfolders", json={"name": folder})
    d = folder_dir(engine, api, folder)
    for i in range(50_000):
        os.close(os.open(d / f"f{i:05d}", os.O_CREAT | os.O_WRONLY, 0o644))
    files = api.get(f"/vfolders/{folder}/files").json()["files"]
    assert len(files) == 50_000
    assert files[0]["name"] == "f00000" and files[-1]["name"] == "f49999"
    info = api.get(f"/vfolders/{folder}").json()
    assert info["file_count"] == 50_000
    assert api.delete(f"/vfolders/{folder}").status_code == 204
    assert not d.exists()
