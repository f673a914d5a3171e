"""NVIDIA MPS: turns a fractional share into an enforced memory and SM limit.

Only used where ``nvidia-cuda-mps-control`` exists. The daemon outlives the
engine (like the sessions it serves) and is found again by its pipe directory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path


class MPSControl:
    def __init__(self, state_dir: Path, binary: str | None = None):
        self.binary = binary or shutil.which("nvidia-cuda-mps-control")
        self.pipe_dir = state_dir / "mps" / "pipe"
        self.log_dir = state_dir / "mps" / "log"
        self.error: str | None = None

    @property
    def available(self) -> bool:
        return self.binary is not None

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir),
            "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir),
        }

    def running(self) -> bool:
        return (self.pipe_dir / "control").exists()

    def ensure_started(self) -> bool:
        """Start the control daemon once; False (with ``error``) when it cannot run."""
        if not self.binary:
            return False
        if self.running():
            return True
        self.pipe_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [self.binary, "-d"], env=self._env(), capture_output=True, text=True, timeout=30
        )
        if proc.returncode != 0:
            self.error = (proc.stderr or proc.stdout).strip() or f"exit code {proc.returncode}"
            return False
        return True

    def session_env(self, shares: dict[int, Decimal], memory: dict[int, int]) -> dict[str, str]:
        """Limits for a fractional session; device ordinals as the client sees them."""
        ordered = sorted(shares)
        limits = ",".join(
            f"{ordinal}={int(shares[idx] * memory[idx]) // (1024 * 1024)}M"
            for ordinal, idx in enumerate(ordered)
        )
        percentage = max(1, int(min(shares.values()) * 100))
        return {
            "CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir),
            "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir),
            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": limits,
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(percentage),
        }

    def stop(self) -> None:
        if self.binary and self.running():
            subprocess.run(
                [self.binary], input="quit\n", env=self._env(), text=True,
                capture_output=True, timeout=30,
            )
