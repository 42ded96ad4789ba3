"""Reading config files: YAML 1.2 scalars, ``extends:`` chains, the line of every key, and
refusal of what YAML allows but a config must not hold (alias cycles and bombs, duplicate
keys, keys that are not names)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ot_ray.errors import ConfigError

if TYPE_CHECKING:
    from ot_ray.config.tree import Config


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's numbers and booleans: ``1e-5`` is a float (YAML 1.1
    reads the text "1e-5"), ``010`` or ``1:30`` are not the octal 8 or the base-60 90
    (``250_000`` stays an integer), and only ``true``/``false`` are booleans, so the language
    code ``no`` (Norwegian) stays text; a yes/no setting still takes ``yes``, ``on``, ``1``."""


class ConfigDumper(yaml.SafeDumper):
    """Quotes every string that :class:`ConfigLoader` (or a YAML 1.1 reader) would read as a
    number, such as the revision ``1234e56``, so what is written reads back the same."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rule) for tag, rule in resolvers if not tag.endswith((":int", ":float", ":bool"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
ConfigDumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
}
for _yaml_class in (ConfigLoader, ConfigDumper):
    _yaml_class.add_implicit_resolver(
        "tag:yaml.org,2002:int",
        re.compile(r"^[-+]?[0-9][0-9_]*$|^0o[0-7]+$|^0x[0-9a-fA-F]+$"),
        list("-+0123456789"),
    )
    _yaml_class.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"
            r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
        ),
        list("-+0123456789."),
    )


def _yaml_1_2_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text.replace("_", ""), 10)


ConfigLoader.add_constructor("tag:yaml.org,2002:int", _yaml_1_2_int)


def read_tree(path: Path, chain: list[Path]) -> tuple[dict[str, Any], dict[str, str]]:
    """A YAML file merged over the file its ``extends:`` names (relative to it), recursively;
    every key keeps the ``file:line`` it came from."""
    data, lines = _read_yaml(path)
    origins = {key: f"{path}:{line}" for key, line in lines.items()}
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, origins
    where = f"{path}:{lines.get('extends', 1)}"
    if not isinstance(base_name, str):
        raise ConfigError("expected a file name", source=where, key="extends")
    base_path = (path.parent / base_name).resolve()
    if base_path in chain or base_path == path.resolve():
        raise ConfigError(f"{base_name} extends itself (through {len(chain)} files)", source=where)
    if base_path.is_dir():
        raise ConfigError(
            f"{base_path} is a directory, not a config file", source=where, key="extends"
        )
    if not base_path.is_file():
        raise ConfigError(f"no such config file {base_path}", source=where, key="extends")
    base, base_origins = read_tree(base_path, [*chain, path.resolve()])
    replaced = [key for key in origins if key.rsplit(".", 1)[-1] in REPLACED]
    base_origins = {
        key: where
        for key, where in base_origins.items()
        if not any(key.startswith(f"{whole}.") for whole in replaced)
    }
    return _merged(base, data), {**base_origins, **origins}


#: Sections an ``extends``-ing file replaces whole instead of merging into.
REPLACED = ("search_space", "points_to_evaluate")


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in REPLACED:
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    if path.is_dir():
        raise ConfigError("a directory, not a config file", source=str(path))
    if not path.exists():
        raise ConfigError("no such config file", source=str(path))
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:  # where an editor shows it: line and column
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        line = raw.count(b"\n", 0, err.start) + 1
        column = len(raw[line_start : err.start].decode("utf-8")) + 1  # characters, as editors
        raise ConfigError(
            f"not UTF-8 (byte {raw[err.start]:#04x} at column {column})",
            source=f"{path}:{line}",
        ) from None
    except OSError as err:  # permissions, a device
        raise ConfigError(
            f"cannot read the file: {err.strerror or err}", source=str(path)
        ) from None
    try:
        node = yaml.compose(text, Loader=ConfigLoader)
        data = yaml.load(text, Loader=ConfigLoader)
    except (yaml.YAMLError, ValueError) as err:  # ValueError: a tag such as !!int on bad text
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or one_line(err)
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError(f"invalid YAML: {detail}", source=where) from None
    if data is None:
        # an empty file is more likely a slip (a truncated copy, /dev/null) than a wish for
        # the built-in defaults, which a file holding {} asks for
        raise ConfigError(
            "the config file has no settings (a file holding {} means the built-in defaults)",
            source=str(path),
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping at the top level, found {type(data).__name__}", source=str(path)
        )
    _refuse_cycles(node, set(), set(), path)
    _refuse_keys_that_are_not_names(node, set(), path)
    size = _expanded_size(node, {})
    if size > MAX_CONFIG_VALUES:
        # a few lines of aliases to aliases expand to billions of values (a "YAML bomb")
        raise ConfigError(
            f"expands to {size:,} values through its aliases (more than {MAX_CONFIG_VALUES:,})",
            source=str(path),
        )
    lines: dict[str, int] = {}
    _collect_lines(node, "", lines, path)
    return _unshared(data), lines


#: More values than any config needs once its aliases are expanded.
MAX_CONFIG_VALUES = 100_000


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` holds once every alias is copied out; ``sizes`` remembers each
    node's, so a node that aliases reach many times is counted without walking it again."""
    if id(node) not in sizes:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _unshared(value: Any) -> Any:
    """``value`` with every alias made a copy of its anchor (YAML loads the same object), so
    that ``--set task.xnli.epochs=5`` does not also change a ``task.xquad: *same``."""
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def _refuse_cycles(node: yaml.Node, open_nodes: set[int], done: set[int], path: Path) -> None:
    """An alias inside the node its anchor names (``a: &x {b: *x}``) makes an endless value.
    ``done`` holds nodes already checked, which aliases may reach many times."""
    if not isinstance(node, yaml.CollectionNode) or id(node) in done:
        return
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        children = [(value, key.start_mark) for key, value in node.value]
    else:
        children = [(item, node.start_mark) for item in node.value]
    for child, mark in children:
        if id(child) in open_nodes:
            raise ConfigError(
                "an alias (*name) refers to a section or list that contains it, an endless value",
                source=f"{path}:{mark.line + 1}",
            )
        _refuse_cycles(child, open_nodes, done, path)
    open_nodes.discard(id(node))
    done.add(id(node))


#: The tags a mapping key may carry: a name, or YAML's merge key ``<<``.
NAME_KEY_TAGS = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:merge")


def _refuse_keys_that_are_not_names(node: yaml.Node, done: set[int], path: Path) -> None:
    """Every key of a config is a name: ``null:`` or ``~:`` read as the key None (two of
    them, or ``1:`` and ``true:``, silently become one key), and pydantic would report them at
    the enclosing section's line. Runs after :func:`_refuse_cycles`."""
    if not isinstance(node, yaml.CollectionNode) or id(node) in done:
        return
    done.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_keys_that_are_not_names(item, done, path)
        return
    for key, value in node.value:
        if key.tag not in NAME_KEY_TAGS:
            kind = key.tag.rpartition(":")[2] if key.tag.startswith("tag:yaml.org") else key.tag
            text = key.value if isinstance(key, yaml.ScalarNode) else "a list or mapping"
            raise ConfigError(
                f"the key {text!r} reads as {kind}, not a name: quote it if it is meant as one",
                source=f"{path}:{key.start_mark.line + 1}",
            )
        _refuse_keys_that_are_not_names(value, done, path)


def _collect_lines(node: yaml.Node | None, prefix: str, out: dict[str, int], path: Path) -> None:
    """Record the 1-based line of every dotted key, rejecting duplicate keys on the way."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        if key in seen:
            raise ConfigError(
                "duplicate key (the second would silently win)",
                source=f"{path}:{key_node.start_mark.line + 1}",
                key=key,
            )
        seen.add(key)
        out[key] = key_node.start_mark.line + 1
        _collect_lines(value_node, f"{key}.", out, path)


def one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def dump_config(config: Config) -> str:
    """YAML text of ``config`` that :func:`load_config` reads back to an equal config."""
    return yaml.dump(config.model_dump(mode="json"), Dumper=ConfigDumper, sort_keys=False)
