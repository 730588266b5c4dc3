"""``cityos floodwatch evaluate`` reports each site on stderr as it is scored, and its
table alone on stdout."""

from __future__ import annotations

from typer.testing import CliRunner

from cityos import cli


def test_the_nowcast_evaluation_reports_each_site_and_is_quiet_on_request():
    cli.register_app_commands(cli.app)
    runner = CliRunner()
    args = ["floodwatch", "evaluate", "--days", "4", "--sites", "2", "--seed", "1"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["nowcast evaluation: site site-00 (1/2)",
                                          "nowcast evaluation: site site-01 (2/2)"]
    assert "RMSE (cm)" in result.stdout and "nowcast evaluation" not in result.stdout
    quiet = runner.invoke(cli.app, ["--quiet", *args])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert quiet.stdout.split("\n(")[0] == result.stdout.split("\n(")[0]  # same table
