"""Progress of long jobs on stderr: a bar on a terminal, one plain line per step elsewhere.

Every long command (the demo build, imports, fits, studies, evaluations) reports through
:class:`Progress`, so they all look alike and all obey ``cityos --quiet``:

* on a terminal (stderr is a TTY) a `rich <https://rich.readthedocs.io>`_ bar with the
  running step, the count and the elapsed time; each finished step's line is printed
  above it;
* elsewhere (CI, logs, pipes) one line per finished step, ``"demo city: transit (2/5):
  412 entities"``, or for counted work (points, entities) one line at each tenth of
  the total, with no control characters and no timings;
* always on stderr, so a command's results on stdout (``--json`` included) stay clean;
* nothing at all when quiet: ``cityos --quiet ...`` (or ``quiet=True``).

Example
-------
>>> with Progress("import", total=3, unit="entities", quiet=True) as bar:
...     for batch in ([1], [2, 3]):
...         bar.advance(len(batch))
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import TextIO, TypeVar

_QUIET: ContextVar[bool] = ContextVar("cityos_progress_quiet", default=False)
T = TypeVar("T")


def quiet_while(context, quiet: bool) -> None:
    """Silence (or not) every :class:`Progress` until ``context`` closes.

    ``cityos --quiet`` calls it from the root command's callback, so the flag holds for
    that one invocation (the next one, in the same process, starts loud again).

    Parameters
    ----------
    context : click/typer Context
        Anything with ``call_on_close``.
    quiet : bool
    """
    token = _QUIET.set(bool(quiet))
    context.call_on_close(lambda: _QUIET.reset(token))


def quiet_requested() -> bool:
    """Whether the running ``cityos`` command was given ``--quiet``.

    Returns
    -------
    bool
        False outside a command (a library call) and when the flag was not given.
    """
    return _QUIET.get()


class Progress:
    """A long job's progress, as a context manager.

    Parameters
    ----------
    description : str
        What runs, first on every line (``"demo city"``, ``"import timeseries.h5"``).
    total : int, optional
        Steps or items expected; unknown when omitted (then no bar length, and lines
        give the count only).
    unit : str
        What :meth:`advance` counts (``"points"``, ``"entities"``), for the lines.
    quiet : bool, optional
        Print nothing. By default, what ``cityos --quiet`` asked (:func:`quiet_requested`).
    stream : file, optional
        Where to write; stderr by default.
    terminal : bool, optional
        Draw the bar (True) or write lines (False); by default whether ``stream`` is a
        TTY.

    Notes
    -----
    Use :meth:`step` for named steps (one line each) and :meth:`advance` for counted
    work (a line at each tenth of ``total``, and one at the end). The object can be
    handed to library code as a callback: ``progress=bar.advance``.
    """

    def __init__(self, description: str, total: int | None = None, *, unit: str = "",
                 quiet: bool | None = None, stream: TextIO | None = None,
                 terminal: bool | None = None) -> None:
        self.description = description
        self.total = total if total is None else max(0, int(total))
        self.unit = unit
        self.done = 0
        self.quiet = quiet_requested() if quiet is None else quiet
        self._stream = stream
        self._terminal = terminal
        self._bar = None
        self._task = None
        self._tenths_said = 0
        self._said_at: int | None = None  # the count of the last count line
        self._counted = False

    # ------------------------------------------------------------ lifecycle
    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def __enter__(self) -> Progress:
        if self.quiet:
            return self
        terminal = self._terminal
        if terminal is None:
            isatty = getattr(self.stream, "isatty", None)
            terminal = bool(isatty and isatty())
        if terminal:
            import rich.progress as rp
            from rich.console import Console

            console = Console(file=self.stream, force_terminal=True)
            self._bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(),
                                    rp.MofNCompleteColumn(), rp.TimeElapsedColumn(),
                                    console=console)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif kind is None and self._counted and self._said_at != self.done:
            self._say_count()

    # ---------------------------------------------------------------- steps
    def start(self, label: str) -> None:
        """Show what runs now (on the bar only: a log gets the line when it is done).

        Parameters
        ----------
        label : str
        """
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self.description}: {label}")

    def step(self, label: str, detail: str = "", advance: int = 1) -> None:
        """A named step is done: ``"description: label (done/total): detail"``.

        Parameters
        ----------
        label : str
            The step (``"transit"``, ``"baseline T=10"``).
        detail : str
            Its outcome (``"412 entities"``), after a colon.
        advance : int
            Steps it counts for.
        """
        self.done += advance
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        line = f"{self.description}: {label} ({count})" + (f": {detail}" if detail else "")
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
            self._bar.update(self._task, completed=self.done,
                             description=f"{self.description}: {label}")
        else:
            self._line(line)

    def advance(self, amount: int = 1) -> None:
        """Counted work done (``amount`` items): the bar moves; off a terminal, a line
        each time another tenth of ``total`` is done.

        Parameters
        ----------
        amount : int
        """
        self.done += int(amount)
        self._counted = True
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            return
        if not self.total:
            return
        tenths = min(10, self.done * 10 // self.total)
        if tenths > self._tenths_said:
            self._tenths_said = tenths
            self._say_count()

    # -------------------------------------------------------------- output
    def _say_count(self) -> None:
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            share = min(100, self.done * 100 // self.total)
            self._line(f"{self.description}: {self.done:,}/{self.total:,}{unit} ({share}%)")
        else:
            self._line(f"{self.description}: {self.done:,}{unit}")
        self._said_at = self.done

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def track(items: Iterable[T], description: str, *, total: int | None = None,
          label: Callable[[T], str] = str, quiet: bool | None = None,
          stream: TextIO | None = None) -> Iterator[T]:
    """Iterate over ``items``, one step of a :class:`Progress` per item.

    Parameters
    ----------
    items : iterable
    description : str
    total : int, optional
        ``len(items)`` when it has one.
    label : callable
        The step's name from its item (``str`` by default). The step is reported when
        the loop body for it has run.
    quiet, stream
        See :class:`Progress`.

    Yields
    ------
    The items.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(description, total, quiet=quiet, stream=stream) as bar:
        for item in items:
            bar.start(label(item))
            yield item
            bar.step(label(item))
