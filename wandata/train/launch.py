"""How a run is started: in this process (phase 1) or through ``accelerate launch`` (phase 2).

Phase 2 runs ``python -m wandata.train.run`` in every process with DeepSpeed: ZeRO-3
(``configs/zero3.json``: parameters, gradients and optimizer state split over the GPUs,
for the 14B models that no single card holds with activations) or ZeRO-2 with the
optimizer state on the CPU (``configs/zero2_offload.json``: each GPU holds the whole
bf16 DiT, about 27 GiB for 14B; no parameter traffic, so faster when it fits).

GPU count and node settings come from the flags, else from the user's accelerate config
(``--accelerate-config FILE``, or accelerate's default config file, which accelerate
reads itself), else every visible GPU of this machine.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from wandata.train.config import CONFIG_NAME, TrainConfig

HERE = Path(__file__).resolve().parent
RUN_MODULE = "wandata.train.run"   # started with -m: the installed package, whatever the working directory
DEEPSPEED_CONFIGS = {"zero3": HERE / "configs" / "zero3.json", "zero2-offload": HERE / "configs" / "zero2_offload.json"}


def accelerate_executable() -> list[str]:
    exe = shutil.which("accelerate")
    return [exe, "launch"] if exe else [sys.executable, "-m", "accelerate.commands.launch"]


def user_config_is_deepspeed(path: str | None) -> bool:
    if not path:
        return False
    try:
        from accelerate.commands.config.config_args import load_config_from_file
        return str(load_config_from_file(path).distributed_type).endswith("DEEPSPEED")
    except Exception:
        return False


def user_config_processes(path: str | None) -> int | None:
    if not path:
        return None
    try:
        from accelerate.commands.config.config_args import load_config_from_file
        return int(load_config_from_file(path).num_processes)
    except Exception:
        return None


def on_cpu(cfg: TrainConfig) -> bool:
    """Plain DDP on a machine without a GPU: the processes train on the CPU (gloo)."""
    return cfg.phase == 2 and cfg.deepspeed_mode() == "none" and visible_gpus() == 0


def default_accelerate_config_exists() -> bool:
    try:
        from accelerate.commands.config import default_config_file
        return os.path.isfile(default_config_file)
    except Exception:
        return False


def visible_gpus() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:
        return 0


def gpu_memory() -> int | None:
    """Total memory of the first visible GPU (bytes), or None without one."""
    try:
        import torch
        return int(torch.cuda.get_device_properties(0).total_memory) if torch.cuda.is_available() else None
    except Exception:
        return None


def choose_engine(cfg: TrainConfig, gpus: int | None = None, memory: int | None = None) -> tuple[str, str]:
    """What ``--deepspeed auto`` runs as in phase 2, and why. A model that fits one GPU alone
    (the estimator's peak with every block checkpointed within the levers' memory share) on a
    machine where the run has one GPU trains in this process without ZeRO: no parameter
    traffic, and the levers (selective checkpointing, compile) apply. The 14B at 81x480x832
    needs about 50 GiB that way, so an 80 GB GPU or an H200 takes it. Several GPUs, several
    machines or an accelerate config of the user's: DeepSpeed ZeRO-3, as before."""
    if cfg.deepspeed != "auto":
        return cfg.deepspeed, "--deepspeed " + cfg.deepspeed
    gpus = visible_gpus() if gpus is None else gpus
    if cfg.accelerate_config:
        return "zero3", "an accelerate config is given (its processes and machines decide)"
    if cfg.num_machines > 1:
        return "zero3", f"{cfg.num_machines} machines"
    want = cfg.num_processes or gpus
    if want > 1:
        return "zero3", f"{want} GPUs"
    if gpus < 1:
        return "zero3", "no GPU visible here (the launch command is for the GPU machine)"
    memory = gpu_memory() if memory is None else memory
    from wandata.train import levers as L
    terms = L.memory_plan_terms(cfg) if memory else None
    if terms is None:
        return "zero3", "no memory estimate for this model and shape"
    on = terms[0]
    if on > L.MEMORY_SHARE * memory:
        return "zero3", (f"one GPU of {memory / 2**30:.0f} GiB: the estimated peak with every block checkpointed "
                         f"is {on / 2**30:.1f} GiB, over {L.MEMORY_SHARE:.0%} of it")
    return "one-gpu", (f"one GPU of {memory / 2**30:.0f} GiB holds {cfg.model} without ZeRO (estimated peak "
                       f"{on / 2**30:.1f} GiB with every block checkpointed): trains in this process, levers on")


def config_path(cfg: TrainConfig) -> Path:
    return Path(cfg.output_dir) / CONFIG_NAME


def phase1_command(cfg: TrainConfig) -> list[str]:
    """What phase 1 runs (in this process; this is the equivalent command line)."""
    return [sys.executable, "-m", RUN_MODULE, "--config", str(config_path(cfg))]


def phase2_command(cfg: TrainConfig) -> list[str]:
    cmd = accelerate_executable()
    if cfg.accelerate_config:
        cmd += ["--config_file", str(cfg.accelerate_config)]
    num = cfg.num_processes
    if num is None and not cfg.accelerate_config and not default_accelerate_config_exists():
        num = max(1, visible_gpus()) * max(1, cfg.num_machines)
    if num is not None:
        cmd += ["--num_processes", str(num)]
    if cfg.num_machines > 1 or cfg.machine_rank:
        cmd += ["--num_machines", str(cfg.num_machines), "--machine_rank", str(cfg.machine_rank)]
    elif not cfg.accelerate_config:
        cmd += ["--num_machines", "1"]
    if cfg.main_process_ip:
        cmd += ["--main_process_ip", cfg.main_process_ip]
    if cfg.main_process_port is not None:
        cmd += ["--main_process_port", str(cfg.main_process_port)]
    if cfg.deepspeed_mode() == "none":
        # accelerate's own DDP: the backend (NCCL on GPUs, gloo for CPU processes) and the
        # distributed type come from the accelerate config; without one, several GPUs.
        cmd += ["--mixed_precision", "bf16" if cfg.dtype == "bf16" else "no", "--dynamo_backend", "no"]
        many = (num or user_config_processes(cfg.accelerate_config) or 1) > 1
        if many and (on_cpu(cfg) or not cfg.accelerate_config):
            # torchrun's launcher starts the local processes; accelerate's MULTI_CPU type alone
            # starts them only through mpirun (a hostfile), else runs one process.
            cmd += ["--multi_gpu"]
    elif not user_config_is_deepspeed(cfg.accelerate_config):
        cmd += ["--mixed_precision", "bf16" if cfg.dtype == "bf16" else "no", "--dynamo_backend", "no",
                "--use_deepspeed", "--deepspeed_config_file", str(DEEPSPEED_CONFIGS[cfg.deepspeed_mode()]),
                # Off: the DiT is memory-mapped from its safetensors file (pages shared by
                # every process) and DeepSpeed partitions it when the engine starts.
                "--zero3_init_flag", "false"]
        if cfg.max_grad_norm:
            # DeepSpeed clips inside its engine (accelerate's clip_grad_norm_ only reports the
            # norm), from the config's "gradient_clipping": "auto", which this fills.
            cmd += ["--gradient_clipping", str(cfg.max_grad_norm)]
    return cmd + ["--module", RUN_MODULE, "--config", str(config_path(cfg))]


def missing_files(cfg: TrainConfig) -> list[str]:
    """Files a launch reads from this package (shipped as package data): an install that lacks
    them (a wheel built without its data) cannot start phase 2."""
    need = [HERE / "run.py"] + ([DEEPSPEED_CONFIGS[cfg.deepspeed_mode()]] if cfg.deepspeed_mode() in DEEPSPEED_CONFIGS
                                and not cfg.in_process() else [])
    return [f"{p} (missing from the installed package; reinstall wandata)" for p in need if not p.is_file()]


def command(cfg: TrainConfig) -> list[str]:
    return phase1_command(cfg) if cfg.in_process() else phase2_command(cfg)


def shell(cmd: list[str]) -> str:
    return shlex.join(cmd)


def environment(cfg: TrainConfig) -> dict[str, str]:
    """Variables the launched processes need on top of the current environment."""
    from wandata.train.models import offline_env

    env = {"TOKENIZERS_PARALLELISM": "false"}
    if cfg.offline:
        env.update(offline_env())
    if cfg.download_source:
        env["DIFFSYNTH_DOWNLOAD_SOURCE"] = cfg.download_source
    if on_cpu(cfg):
        env["ACCELERATE_USE_CPU"] = "true"   # each process: accelerate's MULTI_CPU state, gloo
    return env


def launch_phase2(cfg: TrainConfig) -> int:
    """Write the config, start ``accelerate launch``, wait; returns its exit status."""
    from wandata.train.trainer import TrainError, check_output_dir
    try:
        check_output_dir(cfg)   # before the config is written into it
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    cfg.save(config_path(cfg))
    env = dict(os.environ, **environment(cfg))
    return subprocess.call(command(cfg), env=env)
