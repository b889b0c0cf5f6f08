"""Progress of long record reads and downloads, for the command line."""

import sys
import time

# Characters of the bar drawn on a terminal.
BAR_WIDTH = 24


class ReadProgress:
    """Prints `what: done/total records (p%, t s)` while records are read.

    On a terminal the line is a bar (`what: [#####.....] done/total ...`)
    rewritten in place at most every `interval` seconds; in a log (no
    terminal) a line is printed at most every `log_interval` seconds, so a
    21,837-record PTB-XL read shows a few lines, not thousands. Disabled, it
    does nothing.

    Args:
        total: number of items (records, files) to process.
        what: what is being done, e.g. `"reading PTB-XL records"`.
        enabled: print anything at all.
        interval: seconds between updates on a terminal.
        log_interval: seconds between lines off a terminal.
        stream: where to print; default `sys.stdout`.
        unit: what `total` counts, e.g. `"files"`.

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
        self,
        total,
        what,
        enabled=True,
        interval=0.5,
        log_interval=10.0,
        stream=None,
        unit="records",
    ):
        self.total = int(total)
        self.what = what
        self.unit = unit
        self.detail = ""
        self.enabled = bool(enabled) and self.total > 0
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self.done = 0
        self.start = time.monotonic()
        self._last = self.start

    def _line(self):
        elapsed = time.monotonic() - self.start
        fraction = self.done / self.total
        bar = ""
        if self.tty:
            filled = int(round(BAR_WIDTH * min(fraction, 1.0)))
            bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
        return (
            f"{self.what}: {bar}{self.done}/{self.total} {self.unit} "
            f"({100.0 * fraction:.0f}%, {elapsed:.0f} s){self.detail}"
        )

    def update(self, count=1, detail=None):
        """Counts `count` more items done.

        Args:
            count: items finished since the last call.
            detail: optional text appended to the line from now on, e.g.
                `", 120.5 MB"`.
        """
        self.done += count
        if detail is not None:
            self.detail = detail
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
