"""Connection URLs made safe to print.

Database and broker URLs may carry a password (``postgresql://ops:s3cret@db/city``,
``mqtt://user:pw@broker``, libpq's ``?password=``). Every message, log line or banner
that names such a URL goes through :func:`redact_url` first.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Query parameters whose values are secrets (libpq, MQTT and HTTP conventions).
SECRET_PARAMETERS = frozenset({"password", "passwd", "pwd", "secret", "token",
                               "api_key", "apikey", "access_token", "sslpassword"})

MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with its password and any secret query parameter masked.

    Parameters
    ----------
    url : str
        Any URL; text that is not a URL comes back as it is.

    Returns
    -------
    str
        The same URL, with ``***`` in place of the password of its user information
        and of the values of :data:`SECRET_PARAMETERS`.

    Examples
    --------
    >>> redact_url("postgresql://ops:s3cret@db:5432/city?sslmode=require&password=x")
    'postgresql://ops:***@db:5432/city?sslmode=require&password=***'
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all (e.g. an unbalanced IPv6 bracket)
        return MASK if "@" in url else url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in SECRET_PARAMETERS for key, _ in pairs):
            query = urlencode([(key, MASK if key.lower() in SECRET_PARAMETERS else value)
                               for key, value in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing secret: as given (urlunsplit would drop an empty '//')
    return urlunsplit(parts._replace(netloc=netloc, query=query))
