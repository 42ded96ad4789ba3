"""Secrets in URIs (a tracking server's user and password, a token in the query): found so a
config cannot carry them, and hidden wherever a URI is printed or logged."""

from __future__ import annotations

import re
import urllib.parse

#: Query parameters that carry a secret (exact names, lower case; also ``*_token`` etc.).
SECRET_QUERY_NAMES = frozenset(
    {"token", "access_token", "auth_token", "id_token", "refresh_token", "auth", "sig"}
    | {"password", "passwd", "pwd", "secret", "client_secret", "api_key", "apikey", "key"}
    | {"api-key", "x-api-key"}
    | {"signature", "credential", "credentials"}  # pre-signed URLs (S3, GCS, Azure)
)
SECRET_QUERY_SUFFIXES = tuple(
    f"{sep}{word}"
    for sep in "_-"
    for word in ("token", "secret", "password", "signature", "credential")
)  # X-Amz-Signature, X-Goog-Credential, ...; not *_key: ssl_key names a file
#: Schemes whose user-info part is a credential even without a password (a token as user).
TOKEN_USER_SCHEMES = ("http", "https")
#: SQLAlchemy dialects (``postgresql+psycopg2`` ...), whose URIs MLflow's stores read its way.
DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "sqlite", "oracle")
_IN_USER_INFO = "a password or token in its user info"  # what credentials_in found


#: A URI inside free text (a ``--set`` value, a YAML error quoting it), up to a delimiter. A
#: comma may be inside it (user info and queries allow one); at its end, like a period, it ends
#: the sentence instead.
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:[^\s\"'<>{}\[\]]*[^\s\"'<>{}\[\],.;:!?])?")
#: ``//user:password@`` anywhere, whatever surrounds it (a quote or a comma may be part of the
#: password; a quote next to a comma is not, so ``['http://h:5000','ops@example.org']``, a list
#: of a URL and an e-mail address, is not read as one URL).
_USER_PASSWORD = re.compile(r"(//[^/@\s:\"']*):(?:(?!['\"],|,['\"])[^/@\s])*@")
#: A password as SQLAlchemy reads it (``_parse_url``): the user runs to the first ``:`` (no
#: ``/``), the password to the next ``@``, so an unencoded ``/``, ``?`` or ``#`` stays in it. An
#: ``@`` in what SQLAlchemy would then take for the host (up to ``/:?``) is no host's: the
#: password runs to the last one, so ``p@ss`` is hidden whole.
_SQLALCHEMY_PASSWORD = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://[^:/]*:(?P<password>[^@]*(?:@[^@/:?]*(?=@))*)@"
)


def redacted_text(text: str) -> str:
    """``text`` with the secrets of every URI in it hidden, for messages that quote what the
    user typed (``--set 'tracking={uri: "http://user:pw@host"}'``)."""
    text = _URI_IN_TEXT.sub(lambda match: redacted(match.group(0)), text)
    return _USER_PASSWORD.sub(r"\1:***@", text)


def _secret_name(name: str) -> bool:
    name = name.lower()
    return name in SECRET_QUERY_NAMES or name.endswith(SECRET_QUERY_SUFFIXES)


def _secret_user(scheme: str, userinfo: str) -> bool:
    return ":" in userinfo or scheme.lower() in TOKEN_USER_SCHEMES


def _database_password(uri: str) -> re.Match[str] | None:
    """The password of a database URI as SQLAlchemy reads it (MLflow's stores do), where
    urlsplit would end the user info at an unencoded ``/``, ``?`` or ``#`` in it. Other schemes
    are left to urlsplit (``hdfs://nn:8020/data@v2`` holds no password)."""
    match = _SQLALCHEMY_PASSWORD.match(uri)
    dialect = match["scheme"].lower().partition("+")[0] if match else ""
    return match if dialect in DATABASE_SCHEMES else None


def redacted(uri: str) -> str:
    """``uri`` with the password of its user info (or a token standing as the user) and the
    values of secret query parameters replaced by ``***``."""
    if database := _database_password(uri):
        start, end = database.span("password")
        uri = f"{uri[:start]}***{uri[end:]}"  # hidden first: its ``?`` or ``#`` is no query
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:  # not parseable (a stray bracket): hide anything that looks like user info
        return re.sub(r"//[^/@]*@", "//***@", uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            netloc = f"{user}:***@{hostport}"
        elif _secret_user(parts.scheme, userinfo):
            netloc = f"***@{hostport}"
    query, fragment = _hidden_values(parts.query), _hidden_values(parts.fragment)
    if netloc == parts.netloc and query == parts.query and fragment == parts.fragment:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def _hidden_values(query: str) -> str:
    """A query (or a fragment written as one, ``#access_token=...``) with secret values hidden."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if not any(_secret_name(name) for name, _ in pairs):
        return query
    return urllib.parse.urlencode(
        [(name, "***" if _secret_name(name) else value) for name, value in pairs], safe="*"
    )


def credentials_in(uri: str) -> str | None:
    """What secret ``uri`` carries (a password or token in its user info, a secret query
    parameter), or None. A database user name without a password is not one."""
    if _database_password(uri):
        return _IN_USER_INFO
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:  # not parseable: anything that looks like user info counts
        return _IN_USER_INFO if re.search(r"//[^/@]*@", uri) else None
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo and _secret_user(parts.scheme, userinfo):
        return _IN_USER_INFO
    for where, text in (("query parameter", parts.query), ("fragment's parameter", parts.fragment)):
        for name, _ in urllib.parse.parse_qsl(text, keep_blank_values=True):
            if _secret_name(name):
                return f"the {where} {name!r}"
    return None


def where_secrets_go(uri: str) -> str:
    """Advice for a URI that carried a secret: MLflow's variables for a server, the whole URI
    in the environment (or the database's own credential store) otherwise."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme in TOKEN_USER_SCHEMES:
        return (
            "put the credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / "
            "MLFLOW_TRACKING_TOKEN, or the whole URI in MLFLOW_TRACKING_URI"
        )
    return (
        "put the whole URI in MLFLOW_TRACKING_URI, or keep the password in the database's own "
        "credential store (e.g. ~/.pgpass)"
    )
