"""Multi-process data parallelism for the torch backend (`torch.distributed`).

The public entry points are in `keras_ecg.distribute`; this module holds the
torch machinery behind them. Keras' torch trainer calls the Keras model
directly (`train_step`: forward, `loss.backward()`, `optimizer.apply`), so
wrapping the model in `torch.nn.parallel.DistributedDataParallel` would do
nothing for `fit`. Instead, once a process has joined the job
(`initialize`), every train / test function Keras builds is wrapped in a
data-parallel step (`install_trainer_hooks`), active only inside
`keras_ecg.distribute.data_parallel()`:

- the first step of a model (and after each new optimizer) broadcasts every
  variable of the model and its optimizer from process 0 (trainable and not:
  BYOL / JEPA targets, seed generator states, BatchNorm statistics), so all
  processes start identical;
- `optimizer.apply` all-reduces (sums) the gradients first: each process's
  `compute_loss` returns its local mean over the number of processes
  (`scale_loss_for_replicas`), exactly the convention of the TensorFlow path;
- inside the step, `gather_across_replicas` all-gathers differentiably
  (`all_gather`) and `num_replicas()` is the number of processes, so the
  methods' losses see the global batch with their code unchanged;
- after the step, the metric updates of every process are summed into every
  process's metrics (as TensorFlow sums metric variables over replicas), so
  the logged loss is the global-batch loss on every process.

A collective that fails because a process is gone raises `ProcessLostError`
naming the processes that stopped answering.
"""

import contextlib
import datetime
import math
import os
import time
import weakref

import keras

# Seconds a survivor waits for the others to report in before naming the
# processes that did not (see `_unanswering`).
_ROLL_CALL_SECONDS = 2.0
# Elements per all-reduce of gradients (like DDP's buckets: one huge flat
# copy of every gradient would double their memory at once).
_BUCKET_ELEMENTS = 1 << 24

_STATE = {
    # Depth of `data_parallel()` blocks entered.
    "blocks": 0,
    # > 0 while a data-parallel train / test step runs.
    "steps": 0,
    # Whether this step's local batches differ in size between processes.
    "uneven": False,
    # model -> (a weak reference to) the optimizer broadcast with it.
    "prepared": weakref.WeakKeyDictionary(),
    "roll_calls": 0,
}


class ProcessLostError(RuntimeError):
    """A process of a multi-process torch job stopped answering."""


# Public as `keras_ecg.distribute.ProcessLostError` (and so in tracebacks).
ProcessLostError.__module__ = "keras_ecg.distribute"


def _dist():
    import torch.distributed as dist

    return dist


def active():
    """Whether a data-parallel step runs (the torch "replica context")."""
    return _STATE["steps"] > 0


def world_size():
    return _dist().get_world_size()


def rank():
    return _dist().get_rank()


# ----------------------------------------------------------------------------
# Joining the job
# ----------------------------------------------------------------------------


def _local_rank(settings):
    """The GPU of this process on its host: torchrun's / SLURM's local rank."""
    import torch

    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(name, "").strip().isdigit():
            return int(os.environ[name])
    return settings.process_id % max(torch.cuda.device_count(), 1)


def _uses_cuda():
    import torch
    from keras.src.backend.torch.core import get_device

    return torch.cuda.is_available() and str(get_device()).startswith("cuda")


def _hide_gpus_from_tensorflow():
    """Keeps TensorFlow (the input pipelines' tf.data) off the GPUs.

    TensorFlow reserves most of the memory of every GPU it sees; with one
    torch process per GPU, each process's TensorFlow would take all of them.
    """
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF already initialised its devices: too late.
        pass


def initialize(settings, timeout_seconds):
    """`torch.distributed.init_process_group` for `settings`.

    NCCL when Keras places tensors on a GPU (this process then uses GPU
    `LOCAL_RANK`, else `SLURM_LOCALID`, else `process_id % GPUs`), gloo
    otherwise; the rendezvous is process 0's address (`tcp://host:port`).
    """
    import torch

    dist = _dist()
    if dist.is_initialized():
        # E.g. the caller initialised torch.distributed itself.
        if (dist.get_world_size(), dist.get_rank()) != (
            settings.num_processes,
            settings.process_id,
        ):
            raise RuntimeError(
                "torch.distributed is already initialised as process "
                f"{dist.get_rank()} of {dist.get_world_size()}, but the settings "
                f"describe process {settings.process_id} of "
                f"{settings.num_processes}."
            )
    else:
        backend = "gloo"
        if _uses_cuda():
            torch.cuda.set_device(_local_rank(settings))
            _hide_gpus_from_tensorflow()
            backend = "nccl"
        host, port = settings.job_addresses[0].rsplit(":", 1)
        dist.init_process_group(
            backend=backend,
            init_method=f"tcp://{host}:{port}",
            world_size=settings.num_processes,
            rank=settings.process_id,
            timeout=datetime.timedelta(seconds=timeout_seconds),
        )
    install_trainer_hooks()


# ----------------------------------------------------------------------------
# Lost processes
# ----------------------------------------------------------------------------


def _is_communication_error(error):
    dist = _dist()
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    markers = ("Connection closed by peer", "Connection reset by peer", "gloo", "NCCL")
    return isinstance(error, RuntimeError) and any(m in text for m in markers)


def _unanswering():
    """The other processes that do not report in within a short wait.

    Each survivor of a failed collective writes its rank to the job's store
    (hosted by process 0) and waits for the others'. Process 0's store is
    gone when process 0 is.

    Returns:
        The ranks that did not report in (empty: every process answered),
        or None when nothing can be told.
    """
    dist = _dist()
    me, count = dist.get_rank(), dist.get_world_size()
    _STATE["roll_calls"] += 1
    prefix = f"keras_ecg/roll_call/{_STATE['roll_calls']}/"
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(datetime.timedelta(seconds=_ROLL_CALL_SECONDS))
        store.set(prefix + str(me), "1")
        deadline = time.monotonic() + _ROLL_CALL_SECONDS
        while True:
            missing = [
                r
                for r in range(count)
                if r != me and not store.check([prefix + str(r)])
            ]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)
    except Exception:  # noqa: BLE001 - any store failure: process 0 is gone.
        return [0] if me != 0 else None


def lost_process_error(error):
    """A `ProcessLostError` for a collective that failed because a process
    is gone, else None (e.g. every process answers: some other failure)."""
    if not _is_communication_error(error) or not _dist().is_initialized():
        return None
    me, count = rank(), world_size()
    missing = _unanswering()
    if missing == []:
        return None
    if missing:
        names = ", ".join(str(r) for r in missing)
        who = f"process{'es' if len(missing) > 1 else ''} {names}"
    else:
        who = "another process"
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    return ProcessLostError(
        f"process {me} of {count}: {who} of the job stopped answering "
        f"(torch.distributed: {first.strip()[:300]})"
    )


@contextlib.contextmanager
def lost_processes_raise():
    """Turns a collective failing for a lost process into `ProcessLostError`."""
    try:
        yield
    except ProcessLostError:
        raise
    except Exception as error:
        lost = lost_process_error(error)
        if lost is None:
            raise
        raise lost from error


# ----------------------------------------------------------------------------
# Collectives
# ----------------------------------------------------------------------------


def _all_gather_equal(x):
    """Rows of every process, in process order (equal sizes), no autograd."""
    dist = _dist()
    out = x.new_empty((world_size() * x.shape[0],) + tuple(x.shape[1:]))
    # Renamed in torch 2.13 (`all_gather_into_tensor` still exists, deprecated).
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, x.contiguous())
    return out


def _autograd_functions():
    import torch

    dist = _dist()

    class AllGather(torch.autograd.Function):
        """All-gather along axis 0; the gradient of this process's rows is the
        sum over processes of the gradient of the gathered rows (as
        TensorFlow's `all_gather` gradient)."""

        @staticmethod
        def forward(ctx, x):
            ctx.rows = x.shape[0]
            ctx.start = dist.get_rank() * x.shape[0]
            return _all_gather_equal(x)

        @staticmethod
        def backward(ctx, grad):
            grad = grad.contiguous().clone()
            dist.all_reduce(grad)
            return grad[ctx.start : ctx.start + ctx.rows]

    class AllReduceSum(torch.autograd.Function):
        """Sum over processes; its gradient is the sum of the gradients."""

        @staticmethod
        def forward(ctx, x):
            x = x.contiguous().clone()
            dist.all_reduce(x)
            return x

        @staticmethod
        def backward(ctx, grad):
            grad = grad.contiguous().clone()
            dist.all_reduce(grad)
            return grad

    return AllGather, AllReduceSum


_FUNCTIONS = {}


def _function(name):
    if not _FUNCTIONS:
        _FUNCTIONS["gather"], _FUNCTIONS["sum"] = _autograd_functions()
    return _FUNCTIONS[name]


def _sizes(rows, device):
    import torch

    local = torch.tensor([rows], dtype=torch.int64, device=device)
    return [int(n) for n in _all_gather_equal(local).tolist()]


def all_gather(x):
    """Differentiable all-gather of `x` along axis 0: `(gathered, offset)`.

    `offset` (a Python int) is the row of this process's first element.
    Local batches of different sizes (e.g. a last partial batch) are padded
    to the largest for the collective and cut back out.
    """
    import torch

    x = keras.ops.convert_to_tensor(x)
    me = rank()
    if not _STATE["uneven"]:
        return _function("gather").apply(x), me * int(x.shape[0])
    sizes = _sizes(int(x.shape[0]), x.device)
    largest = max(sizes)
    padding = x.new_zeros((largest - x.shape[0],) + tuple(x.shape[1:]))
    gathered = _function("gather").apply(torch.cat([x, padding], dim=0))
    pieces = [gathered[p * largest : p * largest + n] for p, n in enumerate(sizes)]
    return torch.cat(pieces, dim=0), sum(sizes[:me])


def global_moments(x, axes, weights=None):
    """Mean and (biased) variance of `x` over `axes` and every process.

    The one place BatchNorm statistics are synchronised under torch: the
    per-channel sum, sum of squares and count are all-reduced (one
    differentiable collective), then `var = E[x^2] - E[x]^2` as Keras'
    torch `moments`.

    Args:
        x: a float torch tensor.
        axes: the axes reduced (the others are kept, in order).
        weights: optional weights broadcastable to `x` (a BatchNorm mask).

    Returns:
        `(mean, variance)`, shaped as `x` without `axes`.
    """
    import torch

    axes = tuple(sorted(a % x.ndim for a in axes))
    if weights is None:
        count = math.prod(x.shape[a] for a in axes)
        total = x.sum(dim=axes)
        squares = (x * x).sum(dim=axes)
        counts = torch.full_like(total, float(count))
    else:
        weights = torch.broadcast_to(weights.to(x.dtype), x.shape)
        total = (weights * x).sum(dim=axes)
        squares = (weights * x * x).sum(dim=axes)
        counts = weights.sum(dim=axes)
    shape = total.shape
    packed = torch.cat([total.reshape(-1), squares.reshape(-1), counts.reshape(-1)])
    total, squares, counts = _function("sum").apply(packed).chunk(3)
    mean = total / counts
    variance = squares / counts - mean * mean
    return mean.reshape(shape), variance.reshape(shape)


def synchronizes(layer):
    """Whether `layer` (a BatchNorm) uses global statistics in this step."""
    return active() and getattr(layer, "_keras_ecg_synchronized", False)


def _synchronized_moments(layer, inputs, mask):
    """`BatchNormalization._moments`, over every process inside a step."""
    if not active():
        return type(layer)._moments(layer, inputs, mask)
    weights = None
    if mask is not None:
        weights = keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1)
    return global_moments(inputs, layer._reduction_axes, weights)


def synchronize_batch_norm(layer):
    """Makes a `BatchNormalization` use `global_moments` in data-parallel steps.

    Keras' `synchronized=True` is TensorFlow-only (its torch `moments` raises);
    this replaces the layer's moments computation (Keras 3's
    `BatchNormalization._moments`) instead. Elsewhere it computes them as
    before, so the layer behaves as usual outside a job.
    """
    import types

    layer._keras_ecg_synchronized = True
    layer._moments = types.MethodType(_synchronized_moments, layer)


def _all_reduce_sum(tensors):
    """Sums each tensor over the processes (bucketed flat all-reduces)."""
    import torch
    from torch._utils import _flatten_dense_tensors
    from torch._utils import _unflatten_dense_tensors

    dist = _dist()
    out = [None] * len(tensors)
    groups = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.dtype, t.device), []).append(i)
    for indices in groups.values():
        bucket, size = [], 0
        for n, i in enumerate(indices):
            bucket.append(i)
            size += tensors[i].numel()
            if size >= _BUCKET_ELEMENTS or n == len(indices) - 1:
                members = [tensors[j].detach() for j in bucket]
                with torch.no_grad():
                    flat = _flatten_dense_tensors(members)
                    dist.all_reduce(flat)
                    for j, t in zip(bucket, _unflatten_dense_tensors(flat, members)):
                        out[j] = t
                bucket, size = [], 0
    return out


def broadcast_variables(variables):
    """Copies process 0's values into `variables` on every process."""
    import torch
    from torch._utils import _flatten_dense_tensors
    from torch._utils import _unflatten_dense_tensors

    dist = _dist()
    seen, tensors = set(), []
    for v in variables:
        value = v.value
        if id(value) not in seen:
            seen.add(id(value))
            tensors.append(value)
    groups = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    with torch.no_grad():
        for members in groups.values():
            flat = _flatten_dense_tensors([t.detach() for t in members])
            dist.broadcast(flat, src=0)
            for t, new in zip(members, _unflatten_dense_tensors(flat, members)):
                t.copy_(new)


# ----------------------------------------------------------------------------
# The data-parallel step
# ----------------------------------------------------------------------------


def _prepare(model):
    """Broadcasts the model's and its optimizer's state once per optimizer."""
    optimizer = getattr(model, "optimizer", None)
    if model in _STATE["prepared"] and _STATE["prepared"][model]() is optimizer:
        return
    variables = list(model.variables)
    if optimizer is not None:
        variables += list(optimizer.variables)
    broadcast_variables(variables)
    # (An id could be reused by another optimizer once this one is freed.)
    if optimizer is None:
        _STATE["prepared"][model] = lambda: None
    else:
        _STATE["prepared"][model] = weakref.ref(optimizer)


def _batch_rows(data):
    leaves = [leaf for leaf in keras.tree.flatten(data) if hasattr(leaf, "shape")]
    return int(leaves[0].shape[0]) if leaves and len(leaves[0].shape) else 0


def _all_reducing_apply(apply):
    """`optimizer.apply`, summing the gradients over the processes first."""

    def synced_apply(grads, trainable_variables=None):
        grads = list(grads)
        present = [i for i, g in enumerate(grads) if g is not None]
        reduced = _all_reduce_sum([grads[i] for i in present])
        for i, g in zip(present, reduced):
            grads[i] = g
        return apply(grads, trainable_variables)

    return synced_apply


def _sync_metrics(variables, before):
    """Adds every process's metric updates of this step to every process.

    Metric variables aggregate by `"sum"` (Keras' default, as TensorFlow
    sums them over replicas), `"mean"`, or else process 0's update.
    """
    import torch

    if not variables:
        return
    me, count = rank(), world_size()
    deltas = []
    for v, b in zip(variables, before):
        delta = (v.value.detach() - b).reshape(-1).to(torch.float64)
        aggregation = getattr(v, "aggregation", "sum")
        if aggregation == "mean":
            delta = delta / count
        elif aggregation != "sum" and me != 0:
            delta = torch.zeros_like(delta)
        deltas.append(delta)
    flat = torch.cat(deltas)
    _dist().all_reduce(flat)
    offset = 0
    for v, b in zip(variables, before):
        n = b.numel()
        update = flat[offset : offset + n].reshape(b.shape).to(b.dtype)
        v.assign(b + update)
        offset += n


def _run_step(model, function, data, training):
    import torch

    if getattr(model, "jit_compile", False):
        raise ValueError(
            "keras_ecg.distribute: jit_compile=True (torch.compile) is not "
            "supported in a multi-process torch job; compile with "
            "jit_compile=False."
        )
    with lost_processes_raise():
        _prepare(model)
        # One exchange per step: when the local batches differ in size, each
        # gather exchanges its sizes too (decided alike on every process).
        rows = _batch_rows(data)
        sizes = _sizes(rows, _device_of(model))
        _STATE["uneven"] = len(set(sizes)) > 1
        variables = list(model.metrics_variables)
        before = [v.value.detach().clone() for v in variables]
        optimizer = model.optimizer if training else None
        if optimizer is not None:
            # For this step only (Keras' trainer calls `optimizer.apply`).
            optimizer.apply = _all_reducing_apply(optimizer.apply)
        _STATE["steps"] += 1
        try:
            logs = function(data)
        finally:
            _STATE["steps"] -= 1
            if optimizer is not None:
                del optimizer.apply
        with torch.no_grad():
            _sync_metrics(variables, before)
    if isinstance(logs, dict):
        results = model.get_metrics_result()
        logs = {k: results.get(k, v) for k, v in logs.items()}
    return logs


def _device_of(model):
    import torch

    for v in model.variables:
        return v.value.device
    return torch.device("cuda" if _uses_cuda() else "cpu")


def _data_parallel_function(model, function, training):
    def step(data):
        if not _STATE["blocks"]:
            return function(data)
        return _run_step(model, function, data, training)

    step._keras_ecg_data_parallel = True
    return step


def install_trainer_hooks():
    """Wraps the train / test functions Keras' torch trainer builds.

    Patched once on Keras' `TorchTrainer.make_train_function` /
    `make_test_function`; the wrapped step runs data-parallel only inside a
    `data_parallel()` block and is the plain step elsewhere.
    """
    from keras.src.backend.torch.trainer import TorchTrainer

    if getattr(TorchTrainer, "_keras_ecg_data_parallel", False):
        return
    for name, attribute, training in (
        ("make_train_function", "train_function", True),
        ("make_test_function", "test_function", False),
    ):
        original = getattr(TorchTrainer, name)

        def make(self, force=False, _original=original, _attr=attribute, _tr=training):
            result = _original(self, force=force)
            function = getattr(self, _attr)
            if function is not None and not getattr(
                function, "_keras_ecg_data_parallel", False
            ):
                setattr(self, _attr, _data_parallel_function(self, function, _tr))
            return result

        setattr(TorchTrainer, name, make)
    TorchTrainer._keras_ecg_data_parallel = True


@contextlib.contextmanager
def data_parallel_block():
    _STATE["blocks"] += 1
    try:
        yield _dist().group.WORLD
    finally:
        _STATE["blocks"] -= 1


def barrier():
    import torch

    dist = _dist()
    with lost_processes_raise():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
