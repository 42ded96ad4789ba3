"""Pydantic's validation report rewritten as one line per problem: where the key was
written (file and line, or the ``--set`` override), the key, what was expected, what was
found."""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import ValidationError

from ot_ray.config.keys import allowed_keys, is_config_key
from ot_ray.errors import ConfigError
from ot_ray.uris import redacted_text


def rewritten(err: ValidationError, origins: dict[str, str], source: str) -> ConfigError:
    """Turn pydantic's report into one line per problem: where, key, expected, found."""
    messages: list[str] = []
    first_key: str | None = None
    for problem in err.errors():
        loc = [str(part) for part in problem["loc"] if not str(part).startswith("function-")]
        key = ".".join(loc)
        first_key = first_key or key
        where = _origin_of(key, origins, source)
        found = problem.get("input")
        if problem["type"] == "extra_forbidden":
            allowed = allowed_keys(loc[:-1])
            hint = difflib.get_close_matches(loc[-1], allowed, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            expected = f"unknown key (allowed here: {', '.join(sorted(allowed))}){suggestion}"
            messages.append(f"{where}: {key}: {expected}")
        elif problem["type"] == "missing":
            # pydantic's "field required" with the whole section as what was found
            messages.append(f"{where}: {key}: {_missing(loc)}")
        elif problem["type"] == "value_error":
            message = _expected(problem["msg"])
            head = message.split(": ", 1)[0]
            if not key and is_config_key(head):
                # a whole-config check names its key first ("tune.metric: ...")
                key, message = head, message.split(": ", 1)[1]
                where = _origin_of(key, origins, source)
                first_key = first_key or key
            elif key and " " not in head and _origin_of(f"{key}.{head}", origins, "") != where:
                # a section's check that names one of its keys ("search_space.x: ...") is
                # located at that key's line
                where = _origin_of(f"{key}.{head}", origins, source)
            # the overrides of this key and of the keys the check names ("... cannot be shared
            # by train.num_workers 32 workers"): the cause may be one written elsewhere
            named = [key, *_keys_named(message)]
            overrides = [
                o
                for k, o in origins.items()
                if "--set" in o and o != where and any(_related(k, n) for n in named)
            ]
            after = f" (after {', '.join(overrides)})" if overrides else ""
            messages.append(f"{where}: {key}: {message}{after}")
        else:
            # a revision such as 1234e56 or 0123 reads as a number in YAML: quoting keeps text
            quote = problem["type"] == "string_type" and type(found) in (int, float, bool)
            messages.append(
                f"{where}: {key or '<top level>'}: expected {_expected(problem['msg'])}; "
                f"found {_describe(found)}" + ("; quote it to keep it as text" if quote else "")
            )
    error = ConfigError("\n".join(messages))
    error.key = first_key
    return error


#: a dotted config key as a check's message names one
_DOTTED = re.compile(r"\b[a-z_]+(?:\.[a-z0-9_]+)+\b")


def _keys_named(message: str) -> list[str]:
    """The config keys a check's message names, leaving out its examples ("e.g. alignment.lr")."""
    return [
        found.group()
        for found in _DOTTED.finditer(message)
        if is_config_key(found.group()) and not message[: found.start()].endswith("e.g. ")
    ]


def _related(one: str, other: str) -> bool:
    """Whether one dotted key holds the other, or is it."""
    return one == other or one.startswith(f"{other}.") or other.startswith(f"{one}.")


def _origin_of(key: str, origins: dict[str, str], source: str) -> str:
    """Where ``key`` was written: its own origin or an override of a section holding it, else
    the one place that wrote keys inside it (``--set a.b.c=1`` builds ``a.b``), else its
    nearest enclosing section's line."""
    parts = key.split(".")
    enclosing = next(
        (
            origins[k]
            for k in (".".join(parts[:end]) for end in range(len(parts), 0, -1))
            if k in origins
        ),
        source,
    )
    if key not in origins and "--set" not in enclosing:
        inside = {where for name, where in origins.items() if name.startswith(f"{key}.")}
        if len(inside) == 1:  # several: the enclosing section's, and "(after ...)" lists them
            return inside.pop()
    return enclosing


def _missing(loc: list[str]) -> str:
    """What to write where a section lacks a key that has no default."""
    section = ".".join(loc[:-1]) or "the config"
    return f"missing: {section} must give {loc[-1]} (it has no default)"


def _describe(value: Any) -> str:
    text = redacted_text(repr(value))
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _expected(message: str) -> str:
    """Pydantic says "Input should be a valid number"; we say "expected a valid number"."""
    for prefix in ("Input should be ", "Value error, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message[:1].lower() + message[1:]
