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
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

from ot_ray.config import EVAL_SPLITS, Config
from ot_ray.data.sources import read_nli, read_qa
from ot_ray.data.tasks import NLIData, QAData
from ot_ray.errors import DataError

#: One evaluation set's examples as read (NLI pairs, or QA questions).
HeldOut = NLIData | QAData


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
    return read_qa(spec, **where).head(limit)


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
    """What was left out of a task's training set: how many examples, how many each set
    (``dev/en``) held, and where the training set came from (for the warning and the error)."""

    task: str
    total: int  # training examples before the drop
    origin: str  # the training source, as the readers name it
    hub: bool  # a Hub source reading its whole 'train' split
    dropped: int = 0
    by_set: dict[str, int] = field(default_factory=dict)
    by_id_only: int = 0  # QA: found by question id, not by context (a translation, a collision)

    def warning(self) -> str:
        """One line saying what was dropped, from where, and the likely cause."""
        held = ", ".join(f"{name}: {count}" for name, count in self.by_set.items())
        by_id = (
            f"; {self.by_id_only} by question id alone (a translation, or ids two datasets "
            "share by chance)"
            if self.by_id_only
            else ""
        )
        held_by = (
            "are also in" if self.task == "xnli" else "are also in, or ask about a paragraph of,"
        )
        return (
            f"ot-ray: {self.dropped} of the {self.total} {self.task} training examples of "
            f"{self.origin} {held_by} its evaluation sets ({held}{by_id}) and are left out of "
            f"training (data/{self.task}_train/in_eval); {self._hint()}"
        )

    def refused(self, origins: Mapping[str, str]) -> DataError:
        """The error for a training set its evaluation sets hold whole."""
        held = ", ".join(f"{name} ({origins[name]})" for name in self.by_set)
        held_by = (
            "is also in" if self.task == "xnli" else "is also in, or asks about a paragraph of,"
        )
        return DataError(
            f"every one of the {self.total} {self.task} training examples {held_by} its "
            f"evaluation sets ({held}), so none is left to train on; {self._hint()}",
            path=self.origin,
        )

    def _hint(self) -> str:
        if self.hub:
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
) -> tuple[NLIData | QAData, EvalCopies]:
    """``task``'s training examples (on the pivot) without those its evaluation sets hold, and
    what was dropped (a :class:`DataError` if nothing is left). ``held_out_of`` gives one set's
    examples by split and language: the caller reads each set once, for this and for the
    evaluation."""
    held_out = {
        f"{split}/{lang}": held_out_of(split, lang) for split, lang in eval_sets(config, task)
    }
    spec = getattr(config.data, task).train
    copies = EvalCopies(
        task,
        total=len(train),
        origin=train.origin,
        # a Hub source (a local file read by a builder, json, too) reading its whole 'train'
        # split: a --set of its hub drops the split it had, and such a split is sliced as the
        # paper configs slice SQuAD's (train[:-2000])
        hub=spec.hub is not None and spec.split == "train",
    )
    kept = without_eval_copies(train, held_out, copies)
    if copies.dropped and not len(kept):
        raise copies.refused({name: examples.origin for name, examples in held_out.items()})
    return kept, copies


def without_eval_copies(
    train: NLIData | QAData, held_out: Mapping[str, HeldOut], copies: EvalCopies
) -> NLIData | QAData:
    """``train`` without the examples a set of ``held_out`` (named ``dev/en``...) holds, in
    order; ``copies`` is filled in with what was dropped.

    NLI: the same premise and hypothesis, whatever the labels (the model has seen the pair).
    QA: the same id (a translated XQuAD question keeps SQuAD's; not a mere number), or any
    question about a context an evaluation set asks about: the model has read the paragraph
    and the answers marked in it, and a dev set sliced off SQuAD's training rows
    (``train[-2000:]``) cuts an article, often a paragraph, in two. The same question about
    another context is not one (the demo world asks each question of several stories, as
    SQuAD asks "Who..." of many paragraphs)."""
    index: dict[Hashable, list[str]] = {}  # a held-out key -> the sets holding it, in order
    for name, examples in held_out.items():
        for keys in _keys(examples):
            for key in keys:
                names = index.setdefault(key, [])
                if name not in names:
                    names.append(name)
    train_keys = _keys(train)
    held_by = [[n for key in keys for n in index.get(key, [])] for keys in train_keys]
    found = [i for i, names in enumerate(held_by) if names]
    if not found:
        return train
    copies.dropped = len(found)
    counts = Counter(name for i in found for name in dict.fromkeys(held_by[i]))
    copies.by_set = {name: counts[name] for name in held_out if counts[name]}
    keep = [i for i, names in enumerate(held_by) if not names]
    if isinstance(train, NLIData):
        return NLIData(
            premises=[train.premises[i] for i in keep],
            hypotheses=[train.hypotheses[i] for i in keep],
            labels=[train.labels[i] for i in keep],
            skipped_empty=train.skipped_empty,
            origin=train.origin,
        )
    copies.by_id_only = sum(not index.get(train_keys[i][0]) for i in found)
    return QAData([train[i] for i in keep], train.skipped_empty, train.origin)


def _keys(examples: HeldOut | QAData) -> list[list[Hashable]]:
    """Each example's keys: what another example that is a copy of it has too. A QA
    question's first key is its context's."""
    if isinstance(examples, NLIData):
        pairs = zip(examples.premises, examples.hypotheses, strict=True)
        return [[(same_text(premise), same_text(hypothesis))] for premise, hypothesis in pairs]
    return [
        [("context", same_text(e.context))]
        + ([] if e.id.isdecimal() else [("id", e.id)])  # numbered: files share 1, 2...
        for e in examples
    ]
