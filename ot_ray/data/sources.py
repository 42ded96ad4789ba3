"""Read every dataset a trial needs from where the config says: local files or the HF Hub.

A :class:`~ot_ray.config.SourceSpec` names one split of one dataset. Local files go through the
readers in :mod:`ot_ray.data.parallel` and :mod:`ot_ray.data.tasks` (errors with file and line);
Hub datasets are loaded with ``datasets.load_dataset`` and converted from the Hub schema by
:mod:`ot_ray.data.hub`. Both give the same in-memory types, so everything downstream is shared.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator, Sized
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ot_ray.config import Config, SourceSpec
from ot_ray.config.data import LOCAL_FILE_BUILDERS
from ot_ray.data import hub
from ot_ray.data.parallel import ParallelCorpus, read_line_aligned, read_parallel_tsv
from ot_ray.data.tasks import NLIData, QAData, read_squad, read_xnli
from ot_ray.errors import DataError

Found = TypeVar("Found", bound=Sized)


def data_root(config: Config) -> str:
    """``data.root``, with ``demo`` resolved to the (built or cached) demo world directory."""
    if config.data.root != "demo":
        return str(Path(config.data.root).expanduser())
    from ot_ray.demo.build import ensure_demo_world

    return str(ensure_demo_world(config.data.demo))


def model_path(config: Config) -> str:
    """``model.name_or_path``, with ``demo`` resolved to the demo world's tiny encoder."""
    if config.model.name_or_path != "demo":
        return config.model.name_or_path
    from ot_ray.demo.build import ensure_demo_world

    return str(ensure_demo_world(config.data.demo) / "encoder")


def load_tokenizer(name: str, config: Config):
    """The model's tokenizer, padding and truncating on the right whatever its files say: the
    task heads read the first position (``[CLS]``, ``<s>``) and the QA windows expect pads after
    the context, so a tokenizer saved to pad on the left would have XNLI classify a pad token;
    the word ids of a cut sentence are read as its first words, so one saved to truncate on the
    left would have the alignment pool a word whose first pieces were cut."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        name,
        revision=config.model.revision,
        trust_remote_code=config.model.trust_remote_code,
        padding_side="right",
        truncation_side="right",
    )


def fill(template: str | None, *, root: str, lang: str, pivot: str) -> str | None:
    """Expand ``{root}``, ``{lang}``, ``{pivot}`` and ``{pair}`` in one template string."""
    if template is None:
        return None
    pair = "-".join(sorted((lang, pivot)))
    try:
        return template.format(root=root, lang=lang, pivot=pivot, pair=pair)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:
        raise DataError(
            f"bad placeholder in {template!r} ({err}); use {{root}} {{lang}} {{pivot}} {{pair}}",
            path="config",
        ) from None


def read_parallel(spec: SourceSpec, *, root: str, lang: str, pivot: str) -> ParallelCorpus:
    """Pairs ``(lang sentence, pivot sentence)`` with optional gold/aligner links."""
    values = _filled(spec, root=root, lang=lang, pivot=pivot)
    if spec.hub is not None:
        dataset = _load_hub(spec, values)
        described = _describe(spec, values)
        with _utf8_only(described):
            corpus = hub.parallel_from_hub(dataset, lang, pivot, described=described)
    else:
        path = Path(values["path"])
        alignments = Path(values["alignments"]) if values["alignments"] else None
        if values["second_path"]:
            corpus = read_line_aligned(path, Path(values["second_path"]), alignments)
        else:
            corpus = read_parallel_tsv(path, alignments)
    return _not_empty(corpus, "sentence pairs", corpus.skipped_empty, corpus.origin)


def read_parallel_sources(
    specs: list[SourceSpec], *, root: str, lang: str, pivot: str
) -> ParallelCorpus:
    """Every source of ``lang`` read in order and concatenated (links kept only if all have)."""
    parts = [read_parallel(spec, root=root, lang=lang, pivot=pivot) for spec in specs]
    if len(parts) == 1:
        return parts[0]
    with_links = all(part.links is not None for part in parts)
    return ParallelCorpus(
        sources=[s for part in parts for s in part.sources],
        targets=[t for part in parts for t in part.targets],
        links=[link for part in parts for link in part.links] if with_links else None,
        skipped_empty=sum(part.skipped_empty for part in parts),
        origin=" + ".join(part.origin for part in parts),
    )


def read_nli(spec: SourceSpec, *, root: str, lang: str, pivot: str, training: bool) -> NLIData:
    """Premise/hypothesis/label triples; evaluation keeps empty rows (one prediction per line)."""
    values = _filled(spec, root=root, lang=lang, pivot=pivot)
    if spec.hub is not None:
        described = _describe(spec, values)
        dataset = _load_hub(spec, values)
        with _utf8_only(described):
            data = hub.nli_from_hub(dataset, described=described, skip_empty=training)
        data.origin = described
        return _not_empty(
            data, "examples", data.skipped_empty, described, "an empty side or no label"
        )
    data = read_xnli(Path(values["path"]), skip_empty=training, language=lang)
    data.origin = str(values["path"])
    return _not_empty(data, "examples", data.skipped_empty, data.origin)


def read_qa(
    spec: SourceSpec, *, root: str, lang: str, pivot: str, training: bool = False
) -> QAData:
    """SQuAD v1.1 questions with their contexts and gold answers; ``training`` skips (and
    counts) empty questions, which evaluation refuses."""
    values = _filled(spec, root=root, lang=lang, pivot=pivot)
    if spec.hub is not None:
        described = _describe(spec, values)
        dataset = _load_hub(spec, values)
        with _utf8_only(described):
            examples = hub.squad_from_hub(dataset, described=described, skip_empty=training)
    else:
        described = values["path"]
        examples = read_squad(Path(described), skip_empty=training)
    examples.origin = str(described)
    return _not_empty(examples, "questions", examples.skipped_empty, described, "an empty question")


def _not_empty(
    found: Found, what: str, skipped: int, origin: object, reason: str = "an empty side"
) -> Found:
    """``found`` itself, unless it is empty: a split with nothing in it would otherwise pass
    every check and fail only when it is scored, after the training it was meant to score."""
    if not len(found):
        why = f" ({skipped} skipped for {reason})" if skipped else ""
        raise DataError(f"no {what}{why}", path=origin)
    return found


def _filled(spec: SourceSpec, **where: str) -> dict[str, str | None]:
    names = ("path", "second_path", "alignments", "hub", "hub_config", "data_files")
    return {name: fill(getattr(spec, name), **where) for name in names}


def _describe(spec: SourceSpec, values: dict[str, str | None]) -> str:
    parts = [values["hub"] or "", values["hub_config"] or "", spec.split]
    if values["data_files"]:
        parts.append(values["data_files"])
    return ":".join(part for part in parts if part)


@contextmanager
def _utf8_only(described: str) -> Iterator[None]:
    """Arrow keeps a JSON or CSV file's invalid UTF-8 bytes as they are, and they fail only when
    a value is read into Python: named here as the file's fault, not as a traceback."""
    try:
        yield
    except UnicodeDecodeError as err:
        byte = err.object[err.start : err.start + 1].hex()
        raise DataError(
            f"not UTF-8 text: a value holds the byte 0x{byte} ({err.reason}); convert the file "
            "to UTF-8 (iconv -f <its encoding> -t UTF-8)",
            path=described,
        ) from None


def _content_cache(values: dict[str, str | None]) -> str | None:
    """For local files read by a builder (``json``, ``csv``...), a ``datasets`` cache of their
    content: ``datasets`` knows them by path and modification time, so a file rewritten with
    its time kept (``cp -p``, ``rsync -a``, an archive) was read from the old cache, silently.
    The bytes are hashed at every load, as nothing cheaper tells such a file apart (hashing
    runs at disk speed, next to ``datasets`` parsing them). None (the default cache) for a Hub
    dataset, or files not found (the load names them)."""
    import datasets

    pattern = values["data_files"]
    if values["hub"] not in LOCAL_FILE_BUILDERS or not pattern:
        return None
    files = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
    if not files or not all(Path(f).is_file() for f in files):
        return None
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode())
        try:
            with open(name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return None  # unreadable: the load says so
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "ot-ray-local" / digest.hexdigest()[:16])


def _load_hub(spec: SourceSpec, values: dict[str, str | None]):
    """``datasets.load_dataset`` with a one-line error instead of a traceback on failure."""
    import datasets
    from datasets.exceptions import DatasetsError

    # pandas reads "NA", "None", "null", "nan" and empty fields of a CSV as missing: a premise
    # "NA" became an empty side (skipped in training, scored empty in evaluation)
    text_as_is = {"na_filter": False} if values["hub"] == "csv" else {}
    try:
        return datasets.load_dataset(
            values["hub"],
            values["hub_config"],
            split=spec.split,
            data_files=values["data_files"],
            revision=spec.revision,
            cache_dir=_content_cache(values),
            **text_as_is,
        )
    except (FileNotFoundError, ValueError, ConnectionError, OSError, DatasetsError) as err:
        # DatasetGenerationError (malformed local JSON, CSV...) says only "An error occurred";
        # the parser's message is its cause.
        cause = f": {err.__cause__}" if isinstance(err, DatasetsError) and err.__cause__ else ""
        message = " ".join(f"{err}{cause}".split())[:300]
        raise DataError(
            f"cannot load the dataset: {message}", path=_describe(spec, values)
        ) from None
    except RuntimeError as err:  # datasets 4+: "Dataset scripts are no longer supported"
        if "script" not in str(err):
            raise
        raise DataError(
            f"cannot load the dataset: {' '.join(str(err).split())[:300]}; datasets no longer "
            "runs loading scripts: give the corpus as files (OPUS's Moses files: path and "
            "second_path), or a Hub copy in Parquet or JSON",
            path=_describe(spec, values),
        ) from None
