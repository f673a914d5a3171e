"""Fractional GPUs get MPS limits when nvidia-cuda-mps-control exists.

No GPU on CI machines: fake GPUs plus a FAKE mps-control script (tests/fakes) stand in for
the hardware; bench/gpu_check.py checks the real thing on an NVIDIA machine.
"""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from engine_proc import Api, start_engine
from jupyter_bai.engine.mps import MPSControl

FAKES = Path(__file__).with_name("fakes")


def test_session_env_limits_memory_and_threads(tmp_path: Path) -> None:
    mps = MPSControl(tmp_path, binary="/bin/true")
    env = mps.session_env({3: Decimal("0.5")}, {3: 16 << 30})
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=8192M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == str(tmp_path / "mps" / "pipe")


def test_fractional_session_gets_mps_limits_and_sees_the_pipe_dir(tmp_path: Path, bwrap: str) -> None:
    eng = start_engine(
        tmp_path / "eng",
        extra_env={
            "PATH": f"{FAKES}:{os.environ['PATH']}",
            "JUPYTER_BAI_FAKE_GPUS": '[{"name": "Fake GPU", "memory": "16g"}]',
        },
    )
    try:
        api = Api(eng)
        assert api.get("/resources").json()["fractional_gpu_limit"] == "enforced (MPS)"
        api.create(name="frac", type="batch", resources={"cpu": "0.5", "cuda.shares": "0.25"},
                   command='echo "$CUDA_MPS_PINNED_DEVICE_MEM_LIMIT $CUDA_MPS_ACTIVE_THREAD_PERCENTAGE '
                           '$BACKENDAI_GPU_LIMIT"; test -p "$CUDA_MPS_PIPE_DIRECTORY/control" && echo PIPE')
        s = api.wait("frac", ())
        logs = api.get("/sessions/frac/logs").json()["logs"]
        assert s["result"] == "success", logs
        assert "0=4096M 25 enforced (MPS)" in logs and "PIPE" in logs
    finally:
        eng.stop()
