"""cityos.core.progress: one plain line per step off a terminal, a bar on one, nothing
when quiet, and never a byte on stdout."""

from __future__ import annotations

import io

import pytest
import typer
from typer.testing import CliRunner

from cityos.core.progress import Progress, quiet_requested, quiet_while, track


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_named_steps_are_one_plain_line_each_off_a_terminal():
    out = io.StringIO()
    with Progress("demo city", total=3, stream=out) as bar:
        bar.start("core")
        bar.step("core", "8 entities")
        bar.step("transit", "124 entities")
        bar.step("floodwatch")
    assert out.getvalue().splitlines() == [
        "demo city: core (1/3): 8 entities",
        "demo city: transit (2/3): 124 entities",
        "demo city: floodwatch (3/3)",
    ]
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_counted_work_says_each_tenth_once_and_the_end():
    out = io.StringIO()
    with Progress("import x.json", total=1000, unit="entities", stream=out) as bar:
        for _ in range(40):
            bar.advance(25)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "import x.json: 100/1,000 entities (10%)"
    assert lines[-1] == "import x.json: 1,000/1,000 entities (100%)"


def test_counted_work_that_ends_short_of_its_total_says_where_it_ended():
    out = io.StringIO()
    with Progress("import p.h5", total=1000, unit="points", stream=out) as bar:
        bar.advance(450)          # an upper bound: points without data were dropped
        bar.advance(5)
    assert out.getvalue().splitlines() == ["import p.h5: 450/1,000 points (45%)",
                                           "import p.h5: 455/1,000 points (45%)"]


def test_an_unknown_total_reports_the_count_at_the_end():
    out = io.StringIO()
    with Progress("fit", unit="points", stream=out) as bar:
        bar.advance(7)
        bar.advance(5)
    assert out.getvalue() == "fit: 12 points\n"


def test_quiet_prints_nothing():
    out = io.StringIO()
    with Progress("demo city", total=2, stream=out, quiet=True) as bar:
        bar.step("core", "8 entities")
        bar.advance(1)
    assert out.getvalue() == ""
    assert bar.done == 2  # it still counts


def test_a_terminal_gets_a_bar_and_the_step_lines():
    out = Tty()
    with Progress("demo city", total=2, stream=out) as bar:
        bar.step("core", "8 entities")
        bar.step("transit", "124 entities")
    text = out.getvalue()
    assert "\x1b[" in text                                # drawn, with control codes
    assert "demo city: core (1/2): 8 entities" in text
    assert "2/2" in text


def test_a_failed_job_stops_without_a_closing_line():
    out = io.StringIO()
    with pytest.raises(RuntimeError), Progress("fit", total=10, unit="points",
                                               stream=out) as bar:
        bar.advance(3)
        raise RuntimeError("boom")
    assert out.getvalue() == "fit: 3/10 points (30%)\n"


def test_track_reports_each_item_after_its_work():
    out = io.StringIO()
    seen = []
    for item in track(["a", "b"], "runs", stream=out, label=lambda s: f"run {s}"):
        seen.append((item, out.getvalue().count("\n")))
    assert seen == [("a", 0), ("b", 1)]
    assert out.getvalue().splitlines() == ["runs: run a (1/2)", "runs: run b (2/2)"]


def _toy():
    """A command group with ``--quiet`` at the root (as ``cityos``) and a command that
    reports progress and prints its result."""
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context, quiet: bool = typer.Option(False, "--quiet")) -> None:
        quiet_while(ctx, quiet)

    @app.command()
    def job(json_out: bool = typer.Option(False, "--json")) -> None:
        with Progress("job", total=2) as bar:
            bar.step("one")
            bar.step("two")
        typer.echo('{"done": 2}' if json_out else "done")

    return app


def test_progress_goes_to_stderr_and_json_stdout_stays_clean():
    result = CliRunner().invoke(_toy(), ["job", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout == '{"done": 2}\n'
    assert result.stderr.splitlines() == ["job: one (1/2)", "job: two (2/2)"]


def test_the_root_quiet_flag_silences_the_command_for_that_invocation_only():
    app = _toy()
    quiet = CliRunner().invoke(app, ["--quiet", "job"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == "done\n"
    loud = CliRunner().invoke(app, ["job"])
    assert loud.stderr.count("\n") == 2
    assert not quiet_requested()
