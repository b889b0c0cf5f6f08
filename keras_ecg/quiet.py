"""Keeps the frameworks' own log messages out of the CLI's output.

The CLI's output is its progress and results. At default verbosity it hides
what TensorFlow, XLA/JAX and absl log on their own, which says nothing to a
user and buries the results (a demo printed 14 such lines):

- TensorFlow's C++ logs (`I0000 ... port.cc] oneDNN custom operations are
  on`, `cpu_feature_guard`, and at every tf.data graph rewrite `E0000 ...
  NodeDef mentions attribute use_unbounded_threadpool`): `TF_CPP_MIN_LOG_LEVEL`
  must be set before TensorFlow is imported; the messages its libraries write
  while loading, before absl logging is initialised, ignore it, so the
  native stderr is filtered during the import;
- the Python loggers of TensorFlow, JAX and absl;
- warnings raised from inside the frameworks (not keras-ecg's own warnings,
  which are about the user's data or run).

Only the CLI does this (`keras-ecg --verbose` does not): importing keras_ecg
as a library changes no logging.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

# A glog/absl line (`I0000 00:00:1796674381.440284    1299 port.cc:153] ...`),
# the absl notice printed before it, and the continuation line of TF's CPU
# feature message.
_NATIVE_NOISE = re.compile(
    r"^([IWE]\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow)"
)
_FRAMEWORK_LOGGERS = ("tensorflow", "jax", "jax._src.xla_bridge", "absl", "h5py")
_FRAMEWORK_MODULES = r"(tensorflow|tf_keras|keras|jax|jaxlib|torch|absl|google)(\.|$)"


def is_native_noise(line):
    """Whether `line` is a framework's native log line the CLI hides.

    Example:

    >>> is_native_noise("E0000 00:00:1796674390.191371    1299 node_def_util.cc:682] x")
    True
    >>> is_native_noise("Epoch 1/2")
    False
    """
    return bool(_NATIVE_NOISE.match(line))


def set_environment(verbose=False):
    """Sets the frameworks' log levels; call before they are imported.

    A level the user set stays.
    """
    if verbose:
        return
    # 3: no C++ INFO, WARNING or ERROR lines; a failure still raises in Python.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def native_stderr_filtered(verbose=False):
    """Drops framework log lines that native code writes to stderr in the
    block (e.g. while TensorFlow loads); every other line is passed on when
    the block ends."""
    if verbose:
        yield
        return
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield  # no real stderr (captured): nothing native to filter
        return
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), stderr_fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not is_native_noise(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@contextlib.contextmanager
def framework_logs_hidden(verbose=False):
    """Hides the frameworks' Python log records and warnings in the block."""
    if verbose:
        yield
        return
    levels = {}
    for name in _FRAMEWORK_LOGGERS:
        logger = logging.getLogger(name)
        levels[name] = logger.level
        logger.setLevel(logging.ERROR)
    absl_level = None
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_level = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_FRAMEWORK_MODULES)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if absl_level is not None:
            absl_logging.set_verbosity(absl_level)
