"""Where this process sits in a multi-process job: `ProcessSettings`, read
from arguments or the environment (`KERAS_ECG_*`, `TF_CONFIG`, torchrun,
SLURM) by `resolve_process_settings`. Pure parsing: joining the job is
`keras_ecg.distribute.processes`.
"""

import json
import os
import re
from typing import NamedTuple

# Port of the coordinator derived from a SLURM node list when none is given.
DEFAULT_COORDINATOR_PORT = 12355


class ProcessSettings(NamedTuple):
    """Where this process sits in a multi-process job.

    Attributes:
        job_addresses: `host:port` of every process, process 0 (the JAX
            coordinator, the TF chief) first; JAX needs only the first.
        num_processes: processes in the job.
        process_id: this process, `0 <= process_id < num_processes`.
        source: where the settings came from (`"arguments"`, `"KERAS_ECG_*"`,
            `"TF_CONFIG"`, `"SLURM"`), for messages.
    """

    job_addresses: tuple
    num_processes: int
    process_id: int
    source: str


def _first_slurm_host(nodelist):
    """The first host of a SLURM node list such as `gpu[03-05,09],cpu1`."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def _int(value, what, source):
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{source}: {what} must be an integer, got {value!r}"
        ) from error


def resolve_process_settings(
    job_addresses=None, num_processes=None, process_id=None, environ=None
):
    """This process's place in a multi-process job, from arguments or env.

    Looked up in this order, the first complete source winning:

    1. the arguments (e.g. the CLI's `--job-addresses`, `--num-processes`,
       `--process-id`);
    2. `KERAS_ECG_JOB_ADDRESSES`, `KERAS_ECG_NUM_PROCESSES`,
       `KERAS_ECG_PROCESS_ID` (Keras' own `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
       `..._NUM_PROCESSES`, `..._PROCESS_ID` are read as well);
    3. `TF_CONFIG` (`cluster.worker` and `task.index`);
    4. torchrun (`torch.distributed.run`): `WORLD_SIZE`, `RANK` and
       `MASTER_ADDR:MASTER_PORT` (process 0's address);
    5. SLURM: `SLURM_NTASKS`, `SLURM_PROCID` and the first host of
       `SLURM_STEP_NODELIST` / `SLURM_JOB_NODELIST`, port
       `KERAS_ECG_COORDINATOR_PORT` (default 12355).

    Args:
        job_addresses: `"host:port"` of process 0, or a comma-separated
            `host:port` list of all processes (process 0 first; TensorFlow
            needs the full list), or a list of them.
        num_processes: number of processes.
        process_id: this process's index.
        environ: the environment to read (default `os.environ`).

    Returns:
        A `ProcessSettings`, or None when nothing describes a job of more
        than one process.

    Raises:
        ValueError: the settings are incomplete or inconsistent; the message
            names their source.

    Example:

    >>> env = {"SLURM_NTASKS": "2", "SLURM_PROCID": "1",
    ...        "SLURM_JOB_NODELIST": "gpu[07-08]"}
    >>> settings = resolve_process_settings(environ=env)
    >>> settings.job_addresses, settings.num_processes, settings.process_id
    (('gpu07:12355',), 2, 1)
    """
    env = os.environ if environ is None else environ
    candidates = [("arguments", job_addresses, num_processes, process_id)]
    for prefix in ("KERAS_ECG_", "KERAS_DISTRIBUTION_"):
        candidates.append(
            (
                f"{prefix}*",
                env.get(prefix + "JOB_ADDRESSES"),
                env.get(prefix + "NUM_PROCESSES"),
                env.get(prefix + "PROCESS_ID"),
            )
        )
    for source, addresses, count, index in candidates:
        given = [v is not None for v in (addresses, count, index)]
        if not any(given):
            continue
        if not all(given):
            raise ValueError(
                f"{source}: a multi-process job needs the job addresses, the "
                "number of processes and this process's id; got "
                f"addresses={addresses!r}, processes={count!r}, id={index!r}."
            )
        if isinstance(addresses, str):
            addresses = addresses.split(",")
        return _checked(
            tuple(a.strip() for a in addresses if a.strip()),
            _int(count, "the number of processes", source),
            _int(index, "the process id", source),
            source,
        )
    if env.get("TF_CONFIG"):
        try:
            config = json.loads(env["TF_CONFIG"])
            workers = list(config["cluster"]["worker"])
            index = int(config["task"].get("index", 0))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                "TF_CONFIG: expected {'cluster': {'worker': [host:port, ...]}, "
                f"'task': {{'type': 'worker', 'index': i}}}}, got {env['TF_CONFIG']!r}"
            ) from error
        if config["cluster"].get("chief"):
            raise ValueError(
                "TF_CONFIG: a separate 'chief' task is not supported; list every "
                "process under 'worker' (worker 0 is the chief)."
            )
        return _checked(tuple(workers), len(workers), index, "TF_CONFIG")
    torchrun = [
        env.get(k) for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT")
    ]
    if all(torchrun):
        # Before SLURM: `srun torchrun ...` runs several processes per task.
        count, index, host, port = torchrun
        source = "torchrun (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT)"
        return _checked(
            (f"{host}:{port}",),
            _int(count, "WORLD_SIZE", source),
            _int(index, "RANK", source),
            source,
        )
    if env.get("SLURM_NTASKS") and env.get("SLURM_PROCID") is not None:
        count = _int(env["SLURM_NTASKS"], "SLURM_NTASKS", "SLURM")
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
        if count > 1 and not nodelist:
            raise ValueError("SLURM: SLURM_NTASKS > 1 but no SLURM_*_NODELIST.")
        port = env.get("KERAS_ECG_COORDINATOR_PORT", DEFAULT_COORDINATOR_PORT)
        address = f"{_first_slurm_host(nodelist or 'localhost')}:{port}"
        return _checked(
            (address,),
            count,
            _int(env["SLURM_PROCID"], "SLURM_PROCID", "SLURM"),
            "SLURM",
        )
    return None


def _checked(addresses, count, index, source):
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"{source}: process id {index} is not in 0..{count - 1} "
            f"({count} processes)."
        )
    if not addresses:
        raise ValueError(f"{source}: no job address (host:port of process 0).")
    if len(addresses) > 1 and len(addresses) != count:
        raise ValueError(
            f"{source}: {len(addresses)} job addresses for {count} processes; "
            "give one (process 0's) or one per process."
        )
    for address in addresses:
        if not re.fullmatch(r"\[?[^\s,]+\]?:\d+", address):
            raise ValueError(f"{source}: job address {address!r} is not host:port.")
    if count == 1:
        return None
    return ProcessSettings(tuple(addresses), count, index, source)
