"""The processes of a run: one, or several started by ``accelerate launch`` / ``torchrun``.

``accelerate launch --config_file assets/accelerate/cpu-2proc.yaml -m venomkit run ...`` starts
two processes that find each other through the environment (``WORLD_SIZE``, ``RANK``, ...).
Accelerate's ``PartialState`` joins them (gloo on CPU, NCCL on GPUs); venomkit uses it for the
rank, the number of processes and barriers only -- the work is dealt by ``venomkit.runs.plan``.

On a machine without a GPU the state must be created with ``cpu=True``: without it each
process believes it runs alone (accelerate then reports one process per process, silently).
A plain ``venomkit run`` (no launcher) is one process and needs no process group.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator


@dataclass
class Processes:
    """Rank and size of the process group, and a barrier."""

    rank: int = 0
    world: int = 1
    state: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None and self.world > 1:
            self.state.wait_for_everyone()

    @classmethod
    def current(cls, device: str = "cpu") -> "Processes":
        """The group this process belongs to: from the launcher's environment, else a single process."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        import torch
        from accelerate import PartialState

        cpu = str(device).startswith("cpu") or not torch.cuda.is_available()
        state = PartialState(cpu=cpu)
        if state.num_processes <= 1:
            raise RuntimeError(
                f"WORLD_SIZE is {os.environ.get('WORLD_SIZE')} but accelerate joined {state.num_processes} process; "
                "launch with a config whose distributed_type is MULTI_GPU and use_cpu: true on CPU "
                "(assets/accelerate/cpu-2proc.yaml), or torchrun"
            )
        return cls(rank=state.process_index, world=state.num_processes, state=state)

    def device(self, device: str) -> str:
        """The torch device of this process: ``cuda`` becomes ``cuda:<local rank>`` in a group."""
        if self.state is not None and str(device) == "cuda":
            return str(self.state.device)
        return str(device)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block on ``n`` intra-op CPU threads per process (a run's ``threads``), restored afterwards.

    ``None`` leaves torch's count (one per core unless set otherwise). Float32 sums, and so a
    run's figures, depend on the count: runs record it.
    """
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
