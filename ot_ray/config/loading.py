"""A config from a YAML file (or a Tune trial's mapping) plus dotted ``key=value``
overrides, validated into the typed tree. An override lands in the nested tree on top of its
section's defaults (search-space entries and named points are keyed by dotted keys)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ot_ray.config.data import HUB_KEYS, LOCAL_KEYS, SourceSpec
from ot_ray.config.keys import is_config_key
from ot_ray.config.messages import rewritten
from ot_ray.config.search import PARAM_SPEC_KEYS
from ot_ray.config.tree import Config
from ot_ray.config.yaml_files import parse_checked, read_tree, yaml_problem
from ot_ray.errors import ConfigError
from ot_ray.uris import redacted_text


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    written: dict[str, str] | None = None,
) -> Config:
    """Load ``path`` (YAML; ``None`` means all defaults) and apply ``key=value`` overrides.

    Raises :class:`ConfigError` naming file, line and dotted key for any problem. ``written``
    receives where each key was written (``file:line`` or ``--set ...``), for errors found
    after loading.
    """
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data, origins = read_tree(Path(path), [])
    for override in overrides or []:
        key, value = parse_override(override)
        shown = f"--set {_redacted_override(override)}"  # messages quote it: no secrets
        given = [k for k, where in origins.items() if where.startswith("--set ")]
        _assign(data, key, value, origin=shown, written=origins, given=given)
        origins = {k: where for k, where in origins.items() if not k.startswith(f"{key}.")}
        origins[key] = shown
    config = _validated(data, origins, source)
    if written is not None:
        written.update(origins)
    return config


def written_at(key: str, written: dict[str, str]) -> str | None:
    """Where ``key`` was written, or the ``--set`` that gave a section holding it whole (None:
    a default; a file's section line would point at a key that is not there)."""
    if key in written:
        return written[key]
    parts = key.split(".")
    enclosing = (".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1))
    return next((written[k] for k in enclosing if written.get(k, "").startswith("--set ")), None)


def load_config_data(data: dict[str, Any], overrides: dict[str, Any], *, origin: str) -> Config:
    """A config from an already-loaded mapping plus dotted overrides (a Tune trial's values)."""
    data = copy.deepcopy(data)
    origins: dict[str, str] = {}
    for key, value in overrides.items():
        # a trial's sampled path or hub is one choice of the base source, whose other keys
        # (its links, its split) stay: only a --set replaces a source whole
        _assign(data, key, value, origin=f"{origin} {key}={value!r}", replace_origin=False)
        origins[key] = f"{origin} {key}={value!r}"
    return _validated(data, origins, origin)


def _redacted_override(text: str) -> str:
    """``key=value`` with the value's URI secrets hidden (error messages quote overrides)."""
    return redacted_text(text)


def _validated(data: dict[str, Any], origins: dict[str, str], source: str) -> Config:
    """The typed config, or one error line per problem naming where each key came from."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise rewritten(err, origins, source) from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b.c=value``; the value is parsed as a YAML scalar or flow list/mapping."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or any(not part or any(c.isspace() for c in part) for part in parts):
        raise ConfigError(
            "expected KEY=VALUE with a dotted KEY such as alignment.ot.epsilon=0.01, "
            f"found {redacted_text(repr(text))}",
            source="--set",
        )
    shown = f"--set {_redacted_override(text)}"
    try:
        # the checks a file gets: an alias cycle or deep nesting ended in a RecursionError
        value = parse_checked(raw, lambda _line: shown, f"{key}.")[0] if raw.strip() else None
    except yaml.YAMLError as err:
        quote = ""
        if raw.lstrip()[:1] in "{[":
            quote = f" (if it is text, quote it: --set '{key}=\"...\"')"
        raise ConfigError(
            redacted_text(
                f"the value {raw!r} is not valid YAML ({yaml_problem(err, raw)[1]}){quote}"
            ),
            source=shown,
        ) from None
    return key, value


def _assign(
    data: dict[str, Any],
    dotted: str,
    value: Any,
    *,
    origin: str,
    written: dict[str, str] | None = None,
    given: Sequence[str] = (),
    replace_origin: bool = True,
) -> None:
    """Set ``dotted`` in ``data``; ``written`` (key -> where) names where a value that is not
    a section came from, e.g. ``alignment:`` left empty in a file (YAML reads it as null);
    ``given`` holds the keys earlier overrides set."""
    parts = _key_path(dotted)
    node = data
    for depth, part in enumerate(parts[:-1]):
        if part not in node:  # start from the section's defaults, not from nothing
            node[part] = _section_default(parts[: depth + 1], leaf=parts[-1])
        child = node[part]
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            found = "null" if child is None else f"a {type(child).__name__}"
            at = (written or {}).get(prefix)
            raise ConfigError(
                f"cannot set {dotted!r}: {prefix!r} is {found}"
                + (f" ({at})" if at else "")
                + ", not a section",
                source=origin,
                key=dotted,
            )
        node = child
    if replace_origin and parts[-1] in ("path", "hub") and _section_model(parts[:-1]) is SourceSpec:
        _drop_replaced_origin(node, ".".join(parts[:-1]), given)
    node[parts[-1]] = value


#: The keys of a source's origin: a local file's, and a Hub dataset's (only its reader uses
#: ``split``); ``languages`` says which languages have the source, wherever it comes from.
ORIGIN_KEYS = (*LOCAL_KEYS, *HUB_KEYS, "split")


def _drop_replaced_origin(source: dict[str, Any], prefix: str, given: Sequence[str]) -> None:
    """``--set ...path=`` or ``...hub=`` replaces the source's file or dataset (README), wherever
    the source was written: the old origin's keys go (a file's ``hub`` next to a new ``path``
    was refused as two origins), except those earlier overrides set, so ``--set ...split=...
    --set ...hub=...`` works in either order."""
    for key in ORIGIN_KEYS:
        if not _set_by(f"{prefix}.{key}", given):
            source.pop(key, None)


def _set_by(dotted: str, given: Sequence[str]) -> bool:
    """Whether one of the ``given`` keys is ``dotted`` or a section holding it."""
    return any(dotted == key or dotted.startswith(f"{key}.") for key in given)


def _section_model(parts: list[str]) -> type[BaseModel] | None:
    """The section type ``parts`` names (None: not a section of the tree)."""
    model: type[BaseModel] = Config
    for part in parts:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _key_path(dotted: str) -> list[str]:
    """The mapping keys ``dotted`` walks through. Search spaces and named points are keyed by
    dotted config keys, so ``tune.search_space.alignment.ot.epsilon.low`` is the ``low`` of
    the entry ``alignment.ot.epsilon``, and ``tune.points_to_evaluate.paper.alignment.lr`` is
    the entry ``alignment.lr`` of the point ``paper``."""
    parts = dotted.split(".")
    if parts[:2] == ["tune", "search_space"] and len(parts) > 3:
        name = ".".join(parts[2:])
        parent = ".".join(parts[2:-1])
        switch = "." not in parent and not is_config_key(parent)  # a search-only switch
        in_spec = parts[-1] in PARAM_SPEC_KEYS or switch or is_config_key(parent, sections=False)
        if not is_config_key(name) and in_spec:
            return [*parts[:2], ".".join(parts[2:-1]), parts[-1]]
        return [*parts[:2], name]
    if parts[:2] == ["tune", "points_to_evaluate"] and len(parts) > 4:
        return [*parts[:3], ".".join(parts[3:])]
    return parts


def _section_default(parts: list[str], *, leaf: str) -> dict[str, Any]:
    """The default of the section ``parts`` names, as plain data: some sections' defaults are
    not their fields' defaults (``task.xquad`` sets lr and epochs), so ``--set
    task.xquad.doc_stride=64`` must start from them. A source's default origin is dropped when
    ``leaf`` gives another one (``--set data.xnli.test.hub=...``, ``...path=...``), and kept when
    it adds to it (``--set data.parallel.train.alignments=...``: links for the default pairs)."""
    model: type[BaseModel] = Config
    default: Any = None
    for part in parts:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return {}  # not a section: validation names the key
        if default is None or not isinstance(default, BaseModel):
            default = field.get_default(call_default_factory=True)
        else:
            default = getattr(default, part)
        model = annotation
    dumped = default.model_dump(mode="json", exclude_defaults=True)
    if model is SourceSpec and leaf in (*LOCAL_KEYS, *HUB_KEYS):
        # a new file or dataset brings its own links and config; a link file alone does not
        dropped = {*LOCAL_KEYS, *HUB_KEYS} if leaf in ("path", "hub") else set(HUB_KEYS)
        if leaf in HUB_KEYS:
            dropped |= set(LOCAL_KEYS)
        dumped = {k: v for k, v in dumped.items() if k not in dropped}
    return dumped
