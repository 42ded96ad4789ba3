"""Reading config files: YAML 1.2 scalars, ``extends:`` chains, the line of every key, and
refusal of what YAML allows but a config must not hold (alias cycles and bombs, nesting
deeper than any config, duplicate keys at any depth, keys that are not names)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
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

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """PyYAML composes recursively: 500 nested brackets ended in a RecursionError."""
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise NestedTooDeep(None, None, TOO_DEEP, self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A tag on text it cannot read (``!!int abc``, ``!!bool maybe``) is a YAML error at
        the value's line, not a bare ValueError or KeyError."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as err:
            text = repr(node.value) if isinstance(node, yaml.ScalarNode) else "the value"
            problem = f"cannot read {text} as {node.tag.rpartition(':')[2]} ({one_line(err)})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


class NestedTooDeep(yaml.MarkedYAMLError):
    """Valid YAML nested deeper than any config is (and than Python recurses)."""


#: Deeper than any config nests (a search point's list of layers is 6 levels deep).
MAX_CONFIG_DEPTH = 100
TOO_DEEP = f"nested more than {MAX_CONFIG_DEPTH} levels deep"

#: Where a problem is: a 1-based line (None: the whole text) to ``file:line`` or ``--set ...``.
Place = Callable[[int | None], str]


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
    if "extends" not in data:
        return data, origins
    base_name = data.pop("extends")
    where = f"{path}:{lines.get('extends', 1)}"
    if not isinstance(base_name, str) or not base_name.strip():
        # ``extends:`` left empty reads as null: silently running without the base is a slip
        found = "nothing" if base_name is None else repr(base_name)
        raise ConfigError(f"expected a file name, found {found}", source=where, key="extends")
    base_path = (path.parent / base_name).resolve()
    _refuse_extends_cycle(base_name, base_path, [*chain, path.resolve()], where)
    if _looked_up(base_path.is_dir, where, "extends", base_path):
        raise ConfigError(
            f"{base_path} is a directory, not a config file", source=where, key="extends"
        )
    if not _looked_up(base_path.is_file, where, "extends", base_path):
        raise ConfigError(f"no such config file {base_path}", source=where, key="extends")
    base, base_origins = read_tree(base_path, [*chain, path.resolve()])
    replaced = [key for key in origins if key.rsplit(".", 1)[-1] in REPLACED]
    base_origins = {
        key: where
        for key, where in base_origins.items()
        if not any(key.startswith(f"{whole}.") for whole in replaced)
    }
    return _merged(base, data), {**base_origins, **origins}


def _refuse_extends_cycle(base_name: str, base_path: Path, chain: list[Path], where: str) -> None:
    """``chain`` is the files read so far, this one last: naming one of them again never ends."""
    if base_path not in chain:
        return
    through = [file.name for file in chain[chain.index(base_path) + 1 :]]
    via = f" through {' and '.join(through)}" if through else ""
    raise ConfigError(f"{base_name} extends itself{via}", source=where, key="extends")


def _looked_up(
    check: Callable[[], bool], source: str, key: str | None = None, path: Path | None = None
) -> bool:
    """``check()`` (``path.is_dir`` ...): a path the system will not look at (a folder without
    search permission, a name too long) is the user's to fix, so one line of error."""
    try:
        return check()
    except OSError as err:
        what = str(path) if path is not None else "the file"
        reason = err.strerror or one_line(err)
        raise ConfigError(f"cannot read {what}: {reason}", source=source, key=key) from None


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
    if _looked_up(path.is_dir, str(path)):
        raise ConfigError("a directory, not a config file", source=str(path))
    if not _looked_up(path.exists, str(path)):
        raise ConfigError("no such config file", source=str(path))
    text = _read_text(path)
    try:
        data, lines = parse_checked(text, lambda line: f"{path}:{line}" if line else str(path))
    except yaml.YAMLError as err:
        where, problem = yaml_problem(err, text)
        raise ConfigError(f"invalid YAML: {problem}", source=f"{path}{where}") from None
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
    return data, lines


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        return raw.decode("utf-8")
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


def yaml_problem(err: yaml.YAMLError, text: str) -> tuple[str, str]:
    """``(":line:column" or "", what is wrong)`` of a YAML error; a forbidden character's
    place comes as a position in ``text``, which editors do not show."""
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        column = err.position - text.rfind("\n", 0, err.position)
        character = err.character if isinstance(err.character, int) else ord(err.character)
        return f":{line}:{column}", f"unacceptable character #x{character:04x}: {err.reason}"
    mark = getattr(err, "problem_mark", None)
    where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or one_line(err)
    context = getattr(err, "context", None)
    return where, f"{problem} ({context})" if context else problem


def parse_checked(text: str, place: Place, prefix: str = "") -> tuple[Any, dict[str, int]]:
    """``text``'s value (no object shared by aliases) and the line of every dotted key under
    ``prefix``, after refusing what YAML allows but a config must not hold: nesting too deep,
    alias cycles and bombs, keys that are not names, duplicate keys. Syntax errors are left to
    the caller as :class:`yaml.YAMLError`."""
    try:
        node = yaml.compose(text, Loader=ConfigLoader)
    except NestedTooDeep as err:
        raise ConfigError(TOO_DEEP, source=place(err.problem_mark.line + 1)) from None
    lines: dict[str, int] = {}
    if node is not None:
        _refuse_cycles(node, place)
        _refuse_keys_that_are_not_names(node, set(), place)
        size = _expanded_size(node, {})
        if size > MAX_CONFIG_VALUES:
            # a few lines of aliases to aliases expand to billions of values (a "YAML bomb")
            raise ConfigError(
                f"expands to {size:,} values through its aliases (more than {MAX_CONFIG_VALUES:,})",
                source=place(None),
            )
        _collect_lines(node, prefix, lines, place)
    return _unshared(yaml.load(text, Loader=ConfigLoader)), lines


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


def _refuse_cycles(root: yaml.Node, place: Place) -> None:
    """An alias inside the node its anchor names (``a: &x {b: *x}``) makes an endless value,
    and aliases of aliases nest deeper than the text shows (and than Python recurses): walked
    without recursion, each node once (``heights`` holds those done, which aliases may reach
    many times)."""
    heights: dict[int, int] = {}
    stack: list[tuple[yaml.Node, Iterator[tuple[yaml.Node, yaml.Mark]]]] = []
    open_nodes: set[int] = set()

    def enter(node: yaml.Node) -> None:
        open_nodes.add(id(node))
        stack.append((node, iter(_children(node))))

    enter(root)
    while stack:
        node, children = stack[-1]
        for child, mark in children:
            if id(child) in open_nodes:
                raise ConfigError(
                    "an alias (*name) refers to a section or list that contains it, an endless "
                    "value",
                    source=place(mark.line + 1),
                )
            if isinstance(child, yaml.CollectionNode) and id(child) not in heights:
                enter(child)
                break
        else:
            stack.pop()
            open_nodes.discard(id(node))
            heights[id(node)] = 1 + max(
                (heights.get(id(c), 0) for c, _ in _children(node)), default=0
            )
            if heights[id(node)] > MAX_CONFIG_DEPTH:
                raise ConfigError(
                    f"{TOO_DEEP} through its aliases", source=place(node.start_mark.line + 1)
                )


def _children(node: yaml.Node) -> list[tuple[yaml.Node, yaml.Mark]]:
    """A collection's keys and values, each with the line an error about it names."""
    if isinstance(node, yaml.MappingNode):
        return [(part, key.start_mark) for key, value in node.value for part in (key, value)]
    if isinstance(node, yaml.SequenceNode):
        return [(item, node.start_mark) for item in node.value]
    return []


#: The tags a mapping key may carry: a name, or YAML's merge key ``<<``.
NAME_KEY_TAGS = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:merge")


def _refuse_keys_that_are_not_names(node: yaml.Node, done: set[int], place: Place) -> None:
    """Every key of a config is a name: ``null:`` or ``~:`` read as the key None (two of
    them, or ``1:`` and ``true:``, silently become one key), and pydantic would report them at
    the enclosing section's line. Runs after :func:`_refuse_cycles`."""
    if not isinstance(node, yaml.CollectionNode) or id(node) in done:
        return
    done.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_keys_that_are_not_names(item, done, place)
        return
    for key, value in node.value:
        if key.tag not in NAME_KEY_TAGS:
            kind = key.tag.rpartition(":")[2] if key.tag.startswith("tag:yaml.org") else key.tag
            text = key.value if isinstance(key, yaml.ScalarNode) else "a list or mapping"
            raise ConfigError(
                f"the key {text!r} reads as {kind}, not a name: quote it if it is meant as one",
                source=place(key.start_mark.line + 1),
            )
        _refuse_keys_that_are_not_names(value, done, place)


def _collect_lines(node: yaml.Node, prefix: str, out: dict[str, int], place: Place) -> None:
    """Record the 1-based line of every dotted key, list items by their index (``by_language.
    de.0.path``, where pydantic reports them), refusing duplicate keys at any depth."""
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out[f"{prefix}{index}"] = item.start_mark.line + 1
            _collect_lines(item, f"{prefix}{index}.", out, place)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        if key in seen:
            raise ConfigError(
                "duplicate key (the second would silently win)",
                source=place(key_node.start_mark.line + 1),
                key=key,
            )
        seen.add(key)
        out[key] = key_node.start_mark.line + 1
        _collect_lines(value_node, f"{key}.", out, place)


def one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def dump_config(config: Config) -> str:
    """YAML text of ``config`` that :func:`load_config` reads back to an equal config."""
    return yaml.dump(
        config.model_dump(mode="json", by_alias=True),  # ``int:``, as configs write it
        Dumper=ConfigDumper,
        sort_keys=False,
    )
