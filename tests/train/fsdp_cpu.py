"""``unprior train`` under accelerate's FSDP plugin on CPU processes (gloo); launched by tests/train/test_fsdp.py.

accelerate 1.15 never selects FSDP on CPU: ``AcceleratorState`` switches to ``DistributedType.FSDP`` only in its
branch for multi-GPU-like devices (CUDA, XPU, NPU, ...), so under ``torchrun`` on CPU an ``ACCELERATE_USE_FSDP=true``
launch silently runs as ``MULTI_CPU`` (DDP over gloo). This launcher lifts that one gate and nothing else: when
accelerate built an FSDP plugin from the environment (``FSDP_*`` variables, as ``accelerate launch --use_fsdp``
writes them) and the state came out ``MULTI_CPU``, it becomes ``FSDP`` with that plugin. The rest is accelerate's
own FSDP2 path (``fully_shard`` on the device mesh, its gradient clipping, its state dicts), running on gloo.

    torchrun --nproc_per_node 2 tests/train/fsdp_cpu.py --config run.yaml
"""

from __future__ import annotations

import sys

import accelerate.accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType


def allow_cpu_fsdp() -> None:
    """Let ``AcceleratorState`` take the FSDP plugin on ``MULTI_CPU`` (see the module docstring); report what
    accelerate's FSDP2 preparation made of the model (its parameter type: ``DTensor`` when sharded)."""
    original_init, original_prepare = AcceleratorState.__init__, accelerate.accelerator.fsdp2_prepare_model

    def init(self, *args, fsdp_plugin=None, **kwargs) -> None:
        original_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate does on GPUs

    def fsdp2_prepare_model(accelerator, model):
        model = original_prepare(accelerator, model)
        if accelerator.is_main_process:
            print(f"fsdp_cpu: {accelerator.distributed_type}, FSDP{accelerator.state.fsdp_plugin.fsdp_version}, "
                  f"parameters {type(next(model.parameters())).__name__}", flush=True)
        return model

    AcceleratorState.__init__ = init
    accelerate.accelerator.fsdp2_prepare_model = fsdp2_prepare_model


if __name__ == "__main__":
    allow_cpu_fsdp()
    from unprior.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
