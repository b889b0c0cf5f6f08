"""Progress of long record reads, for the command line and verbose loads."""

import sys
import time


class ReadProgress:
    """Prints `what: done/total records (p%)` while records are read.

    On a terminal the line is rewritten in place at most every `interval`
    seconds; in a log (no terminal) a line is printed at most every
    `log_interval` seconds, so a 21,837-record PTB-XL read shows a few lines,
    not thousands. Disabled, it does nothing.

    Args:
        total: number of records to read.
        what: what is being read, e.g. `"reading PTB-XL records"`.
        enabled: print anything at all.
        interval: seconds between updates on a terminal.
        log_interval: seconds between lines off a terminal.
        stream: where to print; default `sys.stdout`.

    Example:

    ```python
    progress = ReadProgress(len(paths), "reading records", enabled=verbose)
    for path in paths:
        ...
        progress.update()
    progress.close()
    ```
    """

    def __init__(
        self, total, what, enabled=True, interval=0.5, log_interval=10.0, stream=None
    ):
        self.total = int(total)
        self.what = what
        self.enabled = bool(enabled) and self.total > 0
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self.done = 0
        self.start = time.monotonic()
        self._last = self.start

    def _line(self):
        elapsed = time.monotonic() - self.start
        return (
            f"{self.what}: {self.done}/{self.total} records "
            f"({100.0 * self.done / self.total:.0f}%, {elapsed:.0f} s)"
        )

    def update(self, count=1):
        self.done += count
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            end = "\r" if self.tty else "\n"
            print(self._line(), end=end, file=self.stream, flush=True)

    def close(self):
        """Prints the final count (once), ending the line on a terminal."""
        if self.enabled and time.monotonic() - self.start >= self.interval:
            print(self._line(), file=self.stream, flush=True)
        self.enabled = False
