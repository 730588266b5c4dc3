"""What an app's ``cityos <name> ...`` commands use: options, the store, errors, progress.

Example
-------
A command that opens the store of the settings and reports its progress::

    from cityos.appkit.cli import Progress, fail, open_store, settings_options

    @app.command()
    @settings_options("database_url")
    def count(settings: Settings) -> None:
        store = open_store(settings)  # exits with "error: cannot open the store ..."
        ...
"""

from __future__ import annotations

import functools
import inspect
import types
import typing

import typer

from cityos.config import Settings
from cityos.core.progress import Progress, quiet_requested, track
from cityos.core.urls import redact_url

__all__ = ["Progress", "fail", "open_store", "quiet_requested", "settings_options", "track"]


def _option_type(annotation) -> type:
    """The plain type of a Settings field (``str | None`` -> ``str``)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _settings_parameter(name: str) -> inspect.Parameter:
    field = Settings.model_fields[name]
    kind = _option_type(field.annotation)
    flag = "--" + name.replace("_", "-")
    declaration = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
    option = typer.Option(None, declaration, show_default=False, rich_help_panel="Settings",
                          help=f"Env CITYOS_{name.upper()}; default {field.default!r}.")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=kind | None)


def settings_options(*names: str):
    """Decorator: add Settings fields as command options and pass ``settings``.

    Parameters
    ----------
    *names : str
        The Settings fields to expose; all of them when none are named.

    The decorated command takes a ``settings`` argument: the Settings read from the
    environment with the options that were given on the command line on top.
    """
    def decorate(func):
        fields = names or tuple(Settings.model_fields)
        signature = inspect.signature(func)
        own = [p for p in signature.parameters.values() if p.name != "settings"]

        @functools.wraps(func)
        def command(**kwargs):
            given = {n: kwargs.pop(n) for n in fields if n in kwargs}
            settings = Settings(**{n: v for n, v in given.items() if v is not None})
            return func(settings=settings, **kwargs)

        command.__signature__ = signature.replace(
            parameters=own + [_settings_parameter(n) for n in fields])
        return command
    return decorate


def fail(message: str, code: int = 1) -> typing.NoReturn:
    """Print ``error: message`` on stderr and end the command with status ``code``.

    Parameters
    ----------
    message : str
        What is wrong, naming the option, file or line.
    code : int
        Exit status: 2 for bad input (a file, an option), 1 for anything else.
    """
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def open_store(settings: Settings):
    """The context store of ``settings.database_url``; a clean exit (status 1) when it
    cannot be opened.

    Returns
    -------
    ContextStore
        The caller closes it.
    """
    from cityos.core.store import open_store as open_context_store

    try:
        return open_context_store(settings.database_url)
    except (ValueError, ImportError, RuntimeError) as error:  # RuntimeError: cannot connect
        fail(f"cannot open the store at {redact_url(settings.database_url)}: {error}")
