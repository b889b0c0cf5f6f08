"""Errors and warnings raised by the ECG readers."""

import warnings

ON_ERROR_MODES = ("raise", "skip")


class ECGDataError(ValueError):
    """A record could not be read or failed validation.

    The message has the form `"record <id> (<path>): <problem>"` so that a
    failure in a folder of thousands of records points at the file to inspect.
    A problem with a file rather than a record (e.g. a metadata table) has
    `record=None` and reads `"<path>: <problem>"`.

    Args:
        record: the record identifier (e.g. a PTB-XL `ecg_id` or a WFDB record
            name), a folder when no identifier applies, or `None` for a
            file-level problem.
        problem: what is wrong, in words.
        path: optional path of the offending file.

    Example:

    ```python
    try:
        dataset = keras_ecg.data.load_wfdb_folder("cinc2021/")
    except keras_ecg.data.ECGDataError as error:
        print(error.record, error.problem)
    ```
    """

    def __init__(self, record, problem, path=None):
        self.record = record
        self.problem = problem
        self.path = None if path is None else str(path)
        if record is None:
            message = problem if self.path is None else f"{self.path}: {problem}"
        else:
            message = f"record {record}"
            if self.path is not None and self.path != str(record):
                message += f" ({self.path})"
            message += f": {problem}"
        super().__init__(message)

    def __reduce__(self):
        # Keeps the error picklable (multiprocessing, pytest-xdist).
        return (type(self), (self.record, self.problem, self.path))


class FormatsExtraMissingError(ECGDataError):
    """A clinical ECG export needs the optional `formats` extra (ecgdatakit).

    An `ECGDataError`, so a folder read with `on_error="skip"` skips such
    files and reports them like other unreadable records.
    """


class ECGDataWarning(UserWarning):
    """Records were skipped (missing on disk, or unreadable with `on_error="skip"`)."""


def check_on_error(on_error):
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"on_error must be one of {ON_ERROR_MODES}, got {on_error!r}.")
    return on_error


class FailureLog:
    """Collects per-record failures and reports them once.

    With `on_error="raise"` the first failure is raised as is; with
    `on_error="skip"` failures are collected and `warn()` emits one
    `ECGDataWarning` with their count and the first few messages, so a folder
    with many bad records does not flood the log.

    Args:
        on_error: `"raise"` or `"skip"`.
        max_listed: how many failure messages the warning quotes.
    """

    def __init__(self, on_error="raise", max_listed=5):
        self.on_error = check_on_error(on_error)
        self.max_listed = max_listed
        self.failures = []

    def record(self, error):
        """Raises `error` or remembers it, depending on `on_error`."""
        if self.on_error == "raise":
            raise error
        self.failures.append(error)

    def messages(self):
        return [str(error) for error in self.failures]

    def warn(self, source="", stacklevel=3):
        """Emits one warning summarising the skipped records (if any)."""
        warn_skipped(self.messages(), source, self.max_listed, stacklevel + 1)


def warn_skipped(messages, source="", max_listed=5, stacklevel=3):
    if not messages:
        return
    shown = "; ".join(messages[:max_listed])
    more = "" if len(messages) <= max_listed else f"; ... ({len(messages)} total)"
    prefix = f"{source}: " if source else ""
    warnings.warn(
        f"{prefix}skipped {len(messages)} unreadable record(s) "
        f"(on_error='skip'): {shown}{more}",
        ECGDataWarning,
        stacklevel=stacklevel,
    )
