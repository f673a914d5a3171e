"""Build the small Docker test image locally, with no registry.

The image is a ``docker import`` of a tiny root filesystem made here in Python: the
merged-usr symlinks (``/bin -> usr/bin`` ...; ``/sbin`` is a real directory for
Docker's init), an empty ``/usr``, ``/etc/passwd`` with a
``work`` user, ``/home/work``, ``/tmp``. It holds no programs of its own: the engine runs
it with the host's ``/usr`` bound read-only (``BaiApp.docker_binds = ["/usr"]``), which
gives it ``/bin/sh`` and ``python3`` for the agent — the same host tree the ``local``
runtime's bubblewrap sandbox binds. Building takes well under a second.

Variants (all from the same rootfs, different ``docker import --change`` lines):

* ``bai-test:<hash>`` — labels ``ai.backend.resource.min.mem=96m`` and
  ``ai.backend.service-ports=web:http:8080``;
* ``bai-test-nopy:<hash>`` — ``PATH=/nonexistent``: the agent cannot start, so an
  interactive session exits at once;
* ``bai-fake-nim:<hash>`` — a FAKE NVIDIA NIM image: ``/opt/nim/fake_nim_server.py`` (with
  ``fake_openai_server.py``) as its CMD, ``NIM_CACHE_PATH=/opt/nim/.cache``; see
  ``fake_nim_server.py``.

Run as a script (``python tests/docker_image.py``) it builds them and prints the tags.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from typing import Any

IMAGE_REPO = "bai-test"
NOPY_REPO = "bai-test-nopy"
FAKE_NIM_REPO = "bai-fake-nim"
HERE = os.path.dirname(os.path.abspath(__file__))
HOST_BINDS = ["/usr"]  # what the test image needs from the host, read-only
MIN_MEM = "96m"  # above the spec's own 64m floor, so the label check is what refuses 80m
SERVICE_PORTS = "web:http:8080"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "work:x:1000:1000:work:/home/work:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = "root:x:0:\nwork:x:1000:\nnogroup:x:65534:\n"


def rootfs_tar(extra_files: dict[str, str] | None = None) -> bytes:
    """A tar of the minimal root filesystem (deterministic: same bytes every time), with
    ``extra_files`` (path in the image -> text) added."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
            tar.addfile(info)

        def add_file(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))

        for d in ("usr", "etc", "home", "root", "run", "proc", "sys", "dev", "var", "opt"):
            # /root stays traversable: the tests bind this host's Python (under /root/.pyenv in
            # CI) into containers whose user is not root.
            add_dir(d, 0o755)
        add_dir("tmp", 0o1777)
        add_dir("home/work")
        # /sbin stays a real directory: Docker mounts its init (docker-init) at
        # /sbin/docker-init, which cannot land inside the read-only /usr bind.
        add_dir("sbin")
        for name in ("bin", "lib", "lib64"):
            if os.path.islink(f"/{name}"):
                add_link(name, os.readlink(f"/{name}").lstrip("/"))
            else:
                add_link(name, f"usr/{name}")
        add_file("etc/passwd", PASSWD)
        add_file("etc/group", GROUP)
        add_file("etc/hostname", "bai\n")
        made = set()
        for name, text in sorted((extra_files or {}).items()):
            parent = os.path.dirname(name)
            parts = parent.split("/")
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d and d not in made and d not in ("opt",):
                    add_dir(d)
                    made.add(d)
            add_file(name, text)
    return buf.getvalue()


def _fake_nim_files() -> dict[str, str]:
    files = {}
    for name in ("fake_nim_server.py", "fake_openai_server.py"):
        with open(os.path.join(HERE, name)) as f:
            files[f"opt/nim/{name}"] = f.read()
    files["opt/nim/.cache/.keep"] = ""
    return files


FAKE_NIM_CHANGES = [
    "ENV PATH=/usr/local/bin:/usr/bin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV NIM_CACHE_PATH=/opt/nim/.cache",
    "WORKDIR /home/work",
    'CMD ["python3", "/opt/nim/fake_nim_server.py"]',
]


def _changes(path: str) -> list[str]:
    return [
        f"ENV PATH={path}",
        "ENV LANG=C.UTF-8",
        "WORKDIR /home/work",
        'CMD ["/bin/sh"]',
        f"LABEL ai.backend.resource.min.mem={MIN_MEM}",
        f"LABEL ai.backend.service-ports={SERVICE_PORTS}",
    ]


def _tag(data: bytes, changes: list[str]) -> str:
    h = hashlib.sha256(data + "\n".join(changes).encode()).hexdigest()[:12]
    return h


def build(client: Any | None = None) -> dict[str, str]:
    """Build (or reuse) the test images; ``{"image": tag, "nopy": tag, "fake_nim": tag}``."""
    import docker

    client = client or docker.from_env()
    base = rootfs_tar()
    out = {}
    for key, repo, data, changes in (
        ("image", IMAGE_REPO, base, _changes("/usr/local/bin:/usr/bin:/bin")),
        ("nopy", NOPY_REPO, base, _changes("/nonexistent")),
        ("fake_nim", FAKE_NIM_REPO, rootfs_tar(_fake_nim_files()), FAKE_NIM_CHANGES),
    ):
        tag = _tag(data, changes)
        ref = f"{repo}:{tag}"
        try:
            client.images.get(ref)
        except docker.errors.ImageNotFound:
            client.api.import_image_from_data(data, repository=repo, tag=tag, changes=changes)
            client.images.get(ref)  # raises if the import failed
        out[key] = ref  # earlier builds stay: a few hundred bytes, maybe in use by another run
    return out


if __name__ == "__main__":
    for key, ref in build().items():
        print(f"{key}: {ref}")
