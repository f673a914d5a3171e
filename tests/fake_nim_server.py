"""A FAKE NVIDIA NIM server (NIM images come from NGC, which this machine cannot reach).

It starts the way a NIM container does, as far as a model service sees it: it needs
``NGC_API_KEY`` in its environment (and exits with NIM's complaint without one), keeps its
model cache in ``NIM_CACHE_PATH`` (``/opt/nim/.cache``), listens on ``NIM_SERVER_PORT``
(8000) on all interfaces, answers ``/v1/health/ready`` and serves the OpenAI-compatible API
(``tests/fake_openai_server.py``). The served model's name is read from
``$NIM_CACHE_PATH/fake-nim-model`` when that file exists, so a test can tell that the model
folder is the cache. It is baked into the ``bai-fake-nim`` test image by ``docker_image.py``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAI  # noqa: E402


def main() -> int:
    if not os.environ.get("NGC_API_KEY"):
        print("ERROR: NGC_API_KEY is not set (fake NIM)", file=sys.stderr, flush=True)
        return 1
    cache = Path(os.environ.get("NIM_CACHE_PATH", "/opt/nim/.cache"))
    if not cache.is_dir():
        print(f"ERROR: the NIM cache {cache} is not a directory (fake NIM)", file=sys.stderr,
              flush=True)
        return 1
    marker = cache / "fake-nim-model"
    model = marker.read_text().strip() if marker.is_file() else "fake-nim-model"
    port = int(os.environ.get("NIM_SERVER_PORT", "8000"))
    server = FakeOpenAI(mode="generic", port=port, model=model, host="0.0.0.0")
    print(f"fake NIM serving {model} on port {port} (cache {cache})", flush=True)
    server.server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
