"""Connection URLs never print their secrets: :func:`cityos.core.urls.redact_url` and
the messages of the store and the command line that use it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cityos import cli
from cityos.core.store import open_store
from cityos.core.urls import redact_url


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://ops:s3cret@db:5432/city",
     "postgresql://ops:***@db:5432/city"),
    ("postgresql://ops@db/city", "postgresql://ops@db/city"),  # no password: unchanged
    ("mqtt://user:p%40ss@broker:1883", "mqtt://user:***@broker:1883"),
    ("postgresql://db/city?sslmode=require&password=s3cret",
     "postgresql://db/city?sslmode=require&password=***"),
    ("nats://broker:4222?token=abc&name=ops", "nats://broker:4222?token=***&name=ops"),
    ("sqlite:///var/lib/cityos/city.db", "sqlite:///var/lib/cityos/city.db"),
    ("postgresql://a:b@c@db/city", "postgresql://a:***@db/city"),  # '@' inside the password
])
def test_redact_url_masks_passwords_and_secret_parameters(url, expected):
    assert redact_url(url) == expected


def test_redact_url_leaves_text_that_is_not_a_url():
    assert redact_url("not a url") == "not a url"


def test_unknown_scheme_error_does_not_print_the_password():
    with pytest.raises(ValueError) as raised:
        open_store("mysql://ops:s3cret@db/city")
    assert "s3cret" not in str(raised.value)
    assert "mysql://ops:***@db/city" in str(raised.value)


def test_cli_store_error_does_not_print_the_password():
    result = CliRunner().invoke(cli.app, ["keys", "list", "--database-url",
                                          "mysql://ops:s3cret@db/city"])
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert "ops:***@db/city" in result.output


@pytest.mark.postgres
def test_postgres_connection_error_does_not_print_the_password(postgres_url):
    # The real server on a port where nothing listens: the connection fails.
    url = "postgresql://ops:s3cret@127.0.0.1:9/city"
    with pytest.raises(RuntimeError) as raised:
        open_store(url)
    assert "s3cret" not in str(raised.value)
    assert "ops:***@127.0.0.1:9/city" in str(raised.value)
