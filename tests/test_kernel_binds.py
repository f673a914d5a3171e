"""Host binds (how a kernel sees the notebook's folder): only under the Jupyter server's
root_dir, whoever asks; and labels, shown as given."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from engine_proc import Api, EngineProcess, start_engine


@pytest.fixture(scope="module")
def rooted(tmp_path_factory: pytest.TempPathFactory, bwrap: str) -> Iterator[tuple[EngineProcess, Path]]:
    base = tmp_path_factory.mktemp("binds")
    root = base / "root"
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "in.txt").write_text("inside the root\n")
    (root / "escape").symlink_to("/etc")
    eng = start_engine(base / "eng", extra_argv=[f"--ServerApp.root_dir={root}"])
    yield eng, root
    eng.stop()


@pytest.mark.parametrize("source, message", [
    ("/", "outside the Jupyter server's root directory"),
    ("/etc", "outside the Jupyter server's root directory"),
    ("ROOT/escape", "outside the Jupyter server's root directory"),  # a symlink out
    ("ROOT/nothere", "is not an existing directory"),
    ("relative/path", "must be a normalised absolute host path"),
    ("ROOT/proj/../..", "must be a normalised absolute host path"),
])
def test_binds_outside_the_root_are_refused(rooted: tuple[EngineProcess, Path], source: str,
                                             message: str) -> None:
    eng, root = rooted
    api = Api(eng)
    source = source.replace("ROOT", str(root))
    r = api.post("/sessions", json={"image": "local", "binds": [
        {"source": source, "target": "/home/work/jupyter"}]})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid-request" and message in r.json()["message"]
    assert api.get("/sessions").json()["sessions"] == []


@pytest.mark.parametrize("target", ["/home/work", "/", "/run/bai/x", "home/work/x"])
def test_bind_targets_follow_the_mount_rules(rooted: tuple[EngineProcess, Path], target: str) -> None:
    eng, root = rooted
    r = Api(eng).post("/sessions", json={"image": "local", "binds": [
        {"source": str(root), "target": target}]})
    assert r.status_code == 400, r.text


def test_a_bind_under_the_root_is_read_write_and_labels_are_shown(
    rooted: tuple[EngineProcess, Path],
) -> None:
    eng, root = rooted
    api = Api(eng)
    sess = api.create(name="bound", binds=[{"source": str(root / "proj"), "target": "/home/work/p"}],
                      labels={"kernel-id": "k1", "notebook": "proj/a.ipynb"})
    try:
        assert api.wait("bound")["status"] == "RUNNING"
        text, _ = api.run("bound", "print(open('/home/work/p/in.txt').read().strip())\n"
                                   "open('/home/work/p/out.txt', 'w').write('from the session')")
        assert text.strip() == "inside the root"
        assert (root / "proj" / "out.txt").read_text() == "from the session"
        info = api.get("/sessions/bound").json()
        assert info["labels"] == {"kernel-id": "k1", "notebook": "proj/a.ipynb"}
        assert info["binds"] == [{"source": os.path.realpath(root / "proj"),
                                  "target": "/home/work/p", "perm": "rw"}]
        assert sess["labels"]["kernel-id"] == "k1"
    finally:
        api.delete("/sessions/bound")


@pytest.mark.parametrize("labels", [{"Bad Key": "x"}, {"k": "x" * 2000}, {"k": 1}])
def test_bad_labels_are_one_clear_line(rooted: tuple[EngineProcess, Path], labels: dict) -> None:  # type: ignore[type-arg]
    eng, _ = rooted
    r = Api(eng).post("/sessions", json={"image": "local", "labels": labels})
    assert r.status_code == 400 and r.json()["message"].startswith("invalid session spec: labels")
