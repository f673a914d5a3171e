"""``BaiApp``: the jupyter-server extension that hosts the engine and its REST API.

All configuration is traitlets (``c.BaiApp.*``); ``JUPYTER_BAI_*`` environment
variables only change the defaults, so there is one configuration path.
"""
from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default

from ..engine.config import EngineConfig
from ..engine.engine import Engine
from ..spec.errors import BaiError
from .routes import route_table

CONNECTION_FILE = "bai-engine.json"


class BaiApp(ExtensionApp):
    name = "jupyter_bai"
    load_other_extensions = True

    state_dir = Unicode(help="Where the engine keeps its SQLite store, sessions and logs.").tag(
        config=True
    )
    storage_root = Unicode(
        "", help="Root of vfolder storage (default: <state_dir>/vfolders)."
    ).tag(config=True)
    fake_gpus = List(
        Dict(),
        help='Fake GPUs for machines without one, e.g. [{"name": "Fake GPU", "memory": "80g"}].',
    ).tag(config=True)
    default_cpu = Unicode("1", help="cpu given to a session that asks for none.").tag(config=True)
    default_mem = Unicode("1g", help="mem given to a session that asks for none.").tag(config=True)
    sandbox = Enum(
        ["auto", "bwrap", "none"], "auto",
        help="local runtime sandbox: bwrap when it works (auto), required (bwrap), or off (none).",
    ).tag(config=True)
    stop_grace = Float(5.0, help="Seconds between SIGTERM and SIGKILL on destroy.").tag(config=True)
    checker_interval = Float(5.0, help="Seconds between idle/lifetime checks.").tag(config=True)
    use_mps = Bool(True, help="Enforce fractional GPUs with NVIDIA MPS when available.").tag(
        config=True
    )
    enforce_limits = Bool(
        True, help="Enforce cpu and mem of local sessions with cgroups where the engine may."
    ).tag(config=True)
    max_upload_size = Int(
        16 << 30, min=1, help="Largest file one upload may carry, in bytes (413 past it, checked while "
        "the body streams; the folder's quota applies too).",
    ).tag(config=True)
    engines = Dict(
        help="Named Backend.AI clusters front ends may talk to: {NAME: {'backendai': URL, "
        "'access_key': AK, 'secret_key_env': VAR}} (see `jupyter bai engine ls`).",
    ).tag(config=True)
    connection_file = Unicode(help="Where to write the engine's URL and token.").tag(config=True)
    assistant_llm_url = Unicode(
        "", help="OpenAI-compatible endpoint the API assistant synthesises answers with "
        "(e.g. a model service's URL); empty: extractive answers only.",
    ).tag(config=True)
    assistant_llm_model = Unicode("default", help="Model name sent to the assistant's LLM.").tag(
        config=True
    )
    assistant_llm_key_env = Unicode(
        "JUPYTER_BAI_ASSISTANT_LLM_KEY",
        help="Name of the environment variable holding the assistant LLM's API key (never the key).",
    ).tag(config=True)
    assistant_llm_timeout = Float(
        20.0, help="Seconds to wait for the LLM's first token (and between tokens) before falling "
        "back to the extractive answer.",
    ).tag(config=True)
    assistant_llm_service = Unicode(
        "", help="Model service of this workbench that writes the API assistant's answers by default "
        "(its endpoint and a token the engine issues; '--llm SERVICE' picks one per question). "
        "Empty: assistant_llm_url, else extractive answers.",
    ).tag(config=True)
    assistant_retrieval = Enum(
        ["bm25", "auto", "dense", "hybrid"], "auto",
        help="API assistant retrieval. auto (default): hybrid (BM25 + dense vectors from the packaged "
        "int8 MiniLM model, scores combined half and half) when the model is installed, else bm25. While a "
        "newly learned file's vectors are computed in the background, answers use BM25. "
        "See bench/assistant_eval.py for the numbers.",
    ).tag(config=True)
    assistant_index_dir = Unicode(
        "", help="Where the API assistant keeps its index (default: <state_dir>/assistant)."
    ).tag(config=True)
    docker = Bool(True, help="Offer the docker runtime (images other than 'local').").tag(
        config=True
    )
    docker_host = Unicode(
        "", help="Docker daemon URL (default: $DOCKER_HOST or unix:///var/run/docker.sock)."
    ).tag(config=True)
    docker_user = Unicode(
        "auto",
        help="Container user: auto (the session user, unless the image's USER is a non-root "
        "user), image (the image's USER; root is refused), or UID[:GID].",
    ).tag(config=True)
    session_user = Unicode(
        "auto",
        help="uid[:gid] sessions run as: auto = 1000:1000 (Backend.AI's 'work' user) when the "
        "engine runs as root, else the engine's own ids. Never 0.",
    ).tag(config=True)
    session_pids_limit = Int(
        4096, help="Most processes (and threads) one Docker session may have."
    ).tag(config=True)
    service_port = Int(
        0, help="Port of the model-service endpoint proxy on 127.0.0.1 (0: pick one once, keep it)."
    ).tag(config=True)
    service_drain = Float(
        120.0, help="Most seconds a route removed by scale-down waits for its in-flight requests "
                    "(it stops as soon as none is left)."
    ).tag(config=True)
    docker_binds = List(
        Unicode(), help="Extra binds for every container, HOST[:TARGET][:ro|rw] (read-only by default)."
    ).tag(config=True)
    docker_pull = Bool(
        False, help="Pull an image missing on the Docker engine when a session starts."
    ).tag(config=True)
    event_buffer = Int(
        1000, help="Events an event-stream subscriber (SSE, WebSocket) may fall behind before it "
        "is sent a resync instead (bounds the server's memory per subscriber).",
    ).tag(config=True)
    metrics_interval = Float(
        1.0, help="Seconds between live metrics samples (taken only while someone watches)."
    ).tag(config=True)

    @default("state_dir")
    def _state_dir_default(self) -> str:
        return os.environ.get("JUPYTER_BAI_STATE_DIR") or str(Path(jupyter_data_dir()) / "bai")

    @default("fake_gpus")
    def _fake_gpus_default(self) -> list[dict[str, Any]]:
        raw = os.environ.get("JUPYTER_BAI_FAKE_GPUS", "").strip()
        if not raw:
            return []
        if raw.isdigit():
            return [{"name": "Fake GPU", "memory": "80g"} for _ in range(int(raw))]
        return list(json.loads(raw))

    @default("sandbox")
    def _sandbox_default(self) -> str:
        return os.environ.get("JUPYTER_BAI_SANDBOX", "auto")

    @default("docker")
    def _docker_default(self) -> bool:
        return os.environ.get("JUPYTER_BAI_DOCKER", "on").lower() not in ("0", "off", "false", "no")

    @default("docker_host")
    def _docker_host_default(self) -> str:
        return os.environ.get("JUPYTER_BAI_DOCKER_HOST", "")

    @default("docker_user")
    def _docker_user_default(self) -> str:
        return os.environ.get("JUPYTER_BAI_DOCKER_USER", "auto")

    @default("session_user")
    def _session_user_default(self) -> str:
        return os.environ.get("JUPYTER_BAI_SESSION_USER", "auto")

    @default("docker_binds")
    def _docker_binds_default(self) -> list[str]:
        raw = os.environ.get("JUPYTER_BAI_DOCKER_BINDS", "")
        return [b for b in raw.split(",") if b.strip()]

    @default("docker_pull")
    def _docker_pull_default(self) -> bool:
        return os.environ.get("JUPYTER_BAI_DOCKER_PULL", "").lower() in ("1", "on", "true", "yes")

    @default("connection_file")
    def _connection_file_default(self) -> str:
        return str(Path(jupyter_runtime_dir()) / CONNECTION_FILE)

    engine: Engine | None = None
    engine_error: str | None = None
    _assistant: Any = None
    _service_llms: Any = None

    def service_llms(self) -> Any:
        """Model services as the assistant's LLM (``--llm SERVICE``); tokens cached per service."""
        if self._service_llms is None:
            from .assistant_llm import ServiceLLMs

            self._service_llms = ServiceLLMs(timeout=self.assistant_llm_timeout)
        return self._service_llms

    def get_assistant(self) -> Any:
        """The API assistant, made on first use (its index is built on the first question)."""
        if self._assistant is None:
            from ..assistant import Assistant, LLMConfig

            llm = None
            if self.assistant_llm_url:
                llm = LLMConfig(
                    url=self.assistant_llm_url, model=self.assistant_llm_model,
                    api_key=os.environ.get(self.assistant_llm_key_env) or None,
                    timeout=self.assistant_llm_timeout,
                )
            index_dir = self.assistant_index_dir or str(Path(self.state_dir).expanduser() / "assistant")
            self._assistant = Assistant(Path(index_dir).expanduser(), llm=llm, mode=self.assistant_retrieval)
        return self._assistant

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            state_dir=Path(self.state_dir).expanduser(),
            storage_root=Path(self.storage_root).expanduser() if self.storage_root else None,
            fake_gpus=tuple(self.fake_gpus),
            default_cpu=self.default_cpu,
            default_mem=self.default_mem,
            sandbox=self.sandbox,
            stop_grace=self.stop_grace,
            checker_interval=self.checker_interval,
            use_mps=self.use_mps,
            enforce_limits=self.enforce_limits,
            docker=self.docker,
            docker_host=self.docker_host,
            docker_user=self.docker_user,
            docker_binds=tuple(self.docker_binds),
            docker_pull=self.docker_pull,
            event_buffer=self.event_buffer,
            metrics_interval=self.metrics_interval,
            max_upload_size=self.max_upload_size,
            session_user=self.session_user,
            session_pids_limit=self.session_pids_limit,
            bind_root=Path(self.serverapp.root_dir) if getattr(self, "serverapp", None) else None,
            service_port=self.service_port,
            service_drain=self.service_drain,
        )

    def initialize_settings(self) -> None:
        self.settings["bai_app"] = self

    def initialize_handlers(self) -> None:
        self.handlers.extend(route_table())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        engine = Engine(self.engine_config())
        try:
            await engine.start()
        except BaiError as exc:
            self.engine_error = str(exc)
            self.log.error("jupyter-bai engine not started: %s", exc)
            return
        self.engine = engine
        # The ~200,000 objects made while importing the server and its dependencies never die:
        # move them out of the collector's sight, or every full collection walks them all and
        # stalls the event loop for hundreds of ms (bench/loop_lag.py --gc-freeze).
        gc.freeze()
        from ..kernels.server import keep_session_table, restore_kernels  # front end hooks

        keep_session_table(serverapp, engine.config.state_dir)
        restore_kernels(serverapp, engine)
        url = serverapp.connection_url.rstrip("/")
        token = serverapp.identity_provider.token
        os.environ["JUPYTER_BAI_URL"] = url
        os.environ["JUPYTER_BAI_TOKEN"] = token
        from ..client.connection import EngineConnection, write_connection_file

        write_connection_file(
            EngineConnection(url=url, token=token), pid=os.getpid(),
            state_dir=str(engine.config.state_dir), path=Path(self.connection_file),
        )
        self.log.info("jupyter-bai engine at %s (state in %s)", url, engine.config.state_dir)

    async def stop_extension(self) -> None:
        from ..kernels.server import shutdown_kernels

        # Kernels first, while the engine runs: their sessions end; failed starts are
        # forgotten even without an engine, or the server's own cleanup hangs on them.
        await shutdown_kernels(self.serverapp)
        if self.engine is not None:
            from ..client.connection import remove_connection_file

            remove_connection_file(Path(self.connection_file))
            await self.engine.close()
            self.engine = None
