"""A task's training examples that its dev or test sets hold too, found and left out.

A training source replaced with ``--set data.xquad.train.hub=rajpurkar/squad`` reads split
``train`` unless one is given again, while the paper configs hold SQuAD's last 2,000 training
questions out as the QA dev set: such a run trained on its own dev questions, and the dev scores
that select models and searched settings were inflated. As for parallel text
(:meth:`ot_ray.data.parallel.ParallelCorpus.without_sentences_of`), the copies are dropped
before the training set is cut to size, and counted (``data/<task>_train/in_eval``).

The held-out sets are those of every evaluated language: a test question translated from a
training question (XQuAD's ids are SQuAD's) is a copy too. Filtering keeps the order of the
examples and depends on the data alone, so every worker drops the same ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ot_ray.config import EVAL_SPLITS, Config
from ot_ray.data.sources import describe_source, read_nli, read_qa
from ot_ray.data.tasks import NLIData, QAData, QAExample
from ot_ray.errors import DataError

#: One evaluation set's examples as read (NLI pairs, or QA questions).
HeldOut = NLIData | Sequence[QAExample]
#: The training examples found in held-out sets: index -> the names of those sets.
Found = dict[int, list[str]]


def eval_sets(config: Config, task: str) -> list[tuple[str, str]]:
    """The ``(split, language)`` sets ``task`` is evaluated on, in evaluation order."""
    sources = getattr(config.data, task)
    return [
        (split, lang)
        for split in EVAL_SPLITS
        for lang in config.data.all_eval_languages
        if getattr(sources, split).covers(lang)
    ]


def read_train_set(config: Config, task: str, *, root: str) -> NLIData | QAData:
    """The pivot's training examples of ``task`` as read (empty ones skipped and counted),
    before the examples its evaluation sets hold are left out."""
    spec = getattr(config.data, task).train
    where = {"root": root, "lang": config.data.pivot, "pivot": config.data.pivot}
    if task == "xnli":
        return read_nli(spec, training=True, **where)
    return read_qa(spec, training=True, **where)


def read_eval_set(config: Config, task: str, split: str, lang: str, *, root: str) -> HeldOut:
    """One language's dev or test examples of ``task`` as evaluation reads them: NLI pairs
    (empty rows kept: one prediction per line) or QA questions, the first
    ``task.<task>.max_eval`` of them (those are what the scores are over)."""
    spec = getattr(getattr(config.data, task), split)
    limit = getattr(config.task, task).max_eval
    where = {"root": root, "lang": lang, "pivot": config.data.pivot}
    if task == "xnli":
        return read_nli(spec, training=False, **where).head(limit)
    return read_qa(spec, **where)[:limit]


def same_text(text: str) -> str:
    """``text`` with its ends trimmed and each run of whitespace made one space.

    The tokenizers split at whitespace and keep none of it (BERT's pre-tokenizer,
    SentencePiece's ``remove_extra_whitespaces``), so texts that differ only there are the same
    model input: a copy to the model. And copies made through another pipeline (XTREME's TSV
    files written from the Hub's rows, a spreadsheet's export) differ exactly there: a trailing
    space, a tab or newline made a space. Nothing else is normalised: a cased model tells
    case and accents apart, so texts differing there are different examples."""
    return " ".join(text.split())


@dataclass
class EvalCopies:
    """How many training examples were dropped, and how many each set (``dev/en``) held."""

    task: str
    total: int  # training examples before the drop
    dropped: int = 0
    by_set: dict[str, int] = field(default_factory=dict)
    by_id_only: int = 0  # QA: found by question id, not by text (a translation, or a collision)

    def warning(self, origin: str, *, hub: bool) -> str:
        """One line saying what was dropped, from where, and the likely cause."""
        held = ", ".join(f"{name}: {count}" for name, count in self.by_set.items())
        by_id = (
            f"; {self.by_id_only} by question id alone (a translation, or ids two datasets "
            "share by chance)"
            if self.by_id_only
            else ""
        )
        return (
            f"ot-ray: {self.dropped} of the {self.total} {self.task} training examples of "
            f"{origin} are also in its evaluation sets ({held}{by_id}) and are left out of "
            f"training (data/{self.task}_train/in_eval); {self._hint(hub)}"
        )

    def refused(self, origin: str, origins: Mapping[str, str], *, hub: bool) -> DataError:
        """The error for a training set its evaluation sets hold whole."""
        held = ", ".join(f"{name} ({origins.get(name, '?')})" for name in self.by_set)
        return DataError(
            f"every one of the {self.total} {self.task} training examples is also in its "
            f"evaluation sets ({held}), so none is left to train on; {self._hint(hub)}",
            path=origin,
        )

    def _hint(self, hub: bool) -> str:
        if hub:
            split = "train[:-2000]" if self.task == "xquad" else "<a slice that leaves them out>"
            return (
                "its Hub split is 'train', which a training source replaced with --set reads "
                f"unless one is given again (e.g. --set 'data.{self.task}.train.split={split}')"
            )
        return "are the training and evaluation files the same, or do they share examples?"


def task_train_without_eval(
    config: Config,
    task: str,
    train: NLIData | QAData,
    held_out_of: Callable[[str, str], HeldOut],
    *,
    root: str,
) -> tuple[NLIData | QAData, EvalCopies, str | None]:
    """``task``'s training examples (on the pivot) without those its evaluation sets hold,
    what was dropped, and the warning to print if any was (None if none). ``held_out_of``
    gives one set's examples by split and language: the caller reads each set once, for
    this and for the evaluation."""
    data = config.data
    sources = getattr(data, task)
    held_out: dict[str, HeldOut] = {}
    origins: dict[str, str] = {}
    for split, lang in eval_sets(config, task):
        name = f"{split}/{lang}"
        held_out[name] = held_out_of(split, lang)
        spec = getattr(sources, split)
        origins[name] = describe_source(spec, root=root, lang=lang, pivot=data.pivot)
    origin = describe_source(sources.train, root=root, lang=data.pivot, pivot=data.pivot)
    # a Hub source (a local file read by a builder, json, too) reading its whole 'train'
    # split: a --set of its hub drops the split it had, and such a split is sliced as the
    # paper configs slice SQuAD's (train[:-2000])
    hub = sources.train.hub is not None and sources.train.split == "train"
    kept, copies = without_eval_copies(
        task, train, held_out, origin=origin, origins=origins, hub=hub
    )
    return kept, copies, copies.warning(origin, hub=hub) if copies.dropped else None


def without_eval_copies(
    task: str,
    train: NLIData | QAData,
    held_out: Mapping[str, HeldOut],
    *,
    origin: str,
    origins: Mapping[str, str],
    hub: bool,
) -> tuple[NLIData | QAData, EvalCopies]:
    """``train`` without the examples a set of ``held_out`` (named ``dev/en``...) holds, and
    what was dropped; a :class:`DataError` if nothing is left (``origin`` is the training
    source, ``origins`` the held-out sets' sources, ``hub`` whether a Hub split is read)."""
    if isinstance(train, NLIData):
        kept, copies = nli_without_eval(train, held_out)  # type: ignore[arg-type]
    else:
        kept, copies = qa_without_eval(train, held_out)  # type: ignore[arg-type]
    if copies.dropped and not len(kept):
        raise copies.refused(origin, origins, hub=hub)
    return kept, copies


def nli_without_eval(train: NLIData, held_out: Mapping[str, NLIData]) -> tuple[NLIData, EvalCopies]:
    """The training pairs no held-out set holds (the same premise and hypothesis, whatever
    the labels: the model has seen the pair), and what was dropped."""
    index = _index({name: _nli_keys(data) for name, data in held_out.items()})
    copies = EvalCopies("xnli", total=len(train))
    keep, found = _kept([index.get(key, []) for key in _nli_keys(train)])
    if not found:
        return train, copies
    _count(copies, found, list(held_out))
    kept = NLIData(
        premises=[train.premises[i] for i in keep],
        hypotheses=[train.hypotheses[i] for i in keep],
        labels=[train.labels[i] for i in keep],
        skipped_empty=train.skipped_empty,
    )
    return kept, copies


def qa_without_eval(
    train: QAData, held_out: Mapping[str, Sequence[QAExample]]
) -> tuple[QAData, EvalCopies]:
    """The training questions no held-out set holds, and what was dropped. A copy has the same
    id (a translated XQuAD question keeps SQuAD's; not a mere number), or the same question
    about the same context
    (ids differ between copies of a dataset); the same question about another context is not
    one (the demo world asks each question of several stories, as SQuAD asks "Who..." of many
    paragraphs)."""
    ids = _index({name: filter(None, map(_identity, data)) for name, data in held_out.items()})
    texts = _index({name: map(_qa_key, data) for name, data in held_out.items()})
    copies = EvalCopies("xquad", total=len(train))
    by_text = [texts.get(_qa_key(example), []) for example in train]
    by_id = [ids.get(_identity(example), []) for example in train]
    keep, found = _kept([_union(a, b) for a, b in zip(by_id, by_text, strict=True)])
    if not found:
        return train, copies
    _count(copies, found, list(held_out))
    copies.by_id_only = sum(not by_text[i] for i in found)
    return QAData([train[i] for i in keep], skipped_empty=train.skipped_empty), copies


def _nli_keys(data: NLIData) -> Iterator[tuple[str, str]]:
    return (
        (same_text(premise), same_text(hypothesis))
        for premise, hypothesis in zip(data.premises, data.hypotheses, strict=True)
    )


def _identity(example: QAExample) -> str | None:
    """The question's id if it names the question (SQuAD's hashes), None if it only numbers
    it: files that number their questions 1, 2... share ids with any other such file."""
    return None if example.id.isdecimal() else example.id


def _qa_key(example: QAExample) -> tuple[str, str]:
    return same_text(example.question), same_text(example.context)


def _index(keys_by_set: Mapping[str, Iterable[Hashable]]) -> dict[Hashable, list[str]]:
    """Each key of the held-out sets, and the sets that hold it (in their order): one look-up
    per training example, however many sets are evaluated."""
    index: dict[Hashable, list[str]] = {}
    for name, keys in keys_by_set.items():
        for key in keys:
            sets = index.setdefault(key, [])
            if not sets or sets[-1] != name:  # a set holding a key twice names it once
                sets.append(name)
    return index


def _union(first: list[str], second: list[str]) -> list[str]:
    return first + [name for name in second if name not in first]


def _kept(held_by: Sequence[list[str]]) -> tuple[list[int], Found]:
    """The indices of the examples no set holds, and the sets holding each of the others."""
    keep = [i for i, sets in enumerate(held_by) if not sets]
    return keep, {i: sets for i, sets in enumerate(held_by) if sets}


def _count(copies: EvalCopies, found: Found, names: list[str]) -> None:
    """Fill in how many were dropped, and how many each set held (in evaluation order; an
    example both dev and test hold counts in both)."""
    copies.dropped = len(found)
    counts = Counter(name for sets in found.values() for name in sets)
    copies.by_set = {name: counts[name] for name in names if counts[name]}
