"""Secrets in URIs (a tracking server's user and password, a token in the query): found so a
config cannot carry them, and hidden wherever a URI is printed or logged."""

from __future__ import annotations

import urllib.parse

SECRET_QUERY_KEYS = ("token", "password", "secret", "key", "auth")


def _secret_name(name: str) -> bool:
    return any(part in name.lower() for part in SECRET_QUERY_KEYS)


def redacted(uri: str) -> str:
    """``uri`` with its user info's password (or a bare token in its place) and secret-looking
    query values replaced by ``***``."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if colon else f"***@{hostport}"
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(_secret_name(name) for name, _ in pairs):
        query = urllib.parse.urlencode(
            [(name, "***" if _secret_name(name) else value) for name, value in pairs], safe="*"
        )
    else:
        query = parts.query
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def credentials_in(uri: str) -> str | None:
    """What secret ``uri`` carries (user info, a secret-looking query parameter), or None."""
    parts = urllib.parse.urlsplit(uri)
    if "@" in parts.netloc:
        return "a user name or password"
    for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if _secret_name(name):
            return f"the query parameter {name!r}"
    return None
