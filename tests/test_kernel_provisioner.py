"""A kernel whose process is a compute session: start, execute, interrupt-free shutdown."""
from __future__ import annotations

from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

from engine_proc import Api, EngineProcess

ROOT = Path(__file__).resolve().parent.parent


def execute(kc, code: str) -> str:  # type: ignore[no-untyped-def]
    out: list[str] = []
    reply = kc.execute_interactive(
        code, timeout=60,
        output_hook=lambda m: out.append(m["content"].get("text", ""))
        if m["msg_type"] == "stream" else None,
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def test_session_kernel_runs_code_inside_a_session(engine: EngineProcess, engine_env: dict[str, str]) -> None:
    ksm = KernelSpecManager(kernel_dirs=[str(ROOT / "kernels")])
    km, kc = start_new_kernel(kernel_name="bai-python", kernel_spec_manager=ksm, startup_timeout=120)
    api = Api(engine)
    try:
        name = km.provisioner.session_name
        session = api.get(f"/sessions/{name}").json()
        assert session["status"] == "RUNNING" and session["resources"]["cpu"] == "1"
        text = execute(kc, "import os; print(os.environ['BACKENDAI_SESSION_NAME'], os.getcwd())")
        assert text.strip() == f"{name} /home/work"
        execute(kc, "x = 21")
        assert execute(kc, "print(x * 2)").strip() == "42"
        assert "BAI_KERNEL_CONNECTION" not in execute(kc, "import os; print(sorted(os.environ))")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    final = api.wait(name, ())
    assert final["status"] == "TERMINATED"


def test_gpu_kernel_on_a_node_without_enough_gpu_fails_clearly(
    engine: EngineProcess, engine_env: dict[str, str]
) -> None:
    """The engine fixture has two fake GPUs, so ask for more than the node has."""
    from jupyter_client.manager import KernelManager

    ksm = KernelSpecManager(kernel_dirs=[str(ROOT / "kernels")])
    km = KernelManager(kernel_name="bai-python", kernel_spec_manager=ksm)
    km.provisioner = None
    km.kernel_spec.metadata["kernel_provisioner"]["config"]["resources"] = ["cuda.device=8"]
    with pytest.raises(Exception, match="larger than this whole node"):
        km.start_kernel()
