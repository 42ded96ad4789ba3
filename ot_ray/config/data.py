"""Where the data comes from: languages, parallel text, XNLI and XQuAD sources, and the
offline demo world that stands in for them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ot_ray.config.fields import NonBlank, PositiveFloat, PositiveInt, Section, Seed


class WorldSizes(Section):
    """How much text the demo generator writes (per language where it says so)."""

    mono_sentences: PositiveInt = Field(20_000, description="Pre-training lines per language.")
    parallel_pairs: PositiveInt = Field(10_000, description="Training pairs per seen language.")
    parallel_dev_pairs: PositiveInt = Field(500, description="Held-out pairs per language.")
    xnli_train: PositiveInt = Field(15_000, description="Pivot-language training examples.")
    xnli_dev: PositiveInt = Field(1_000, description="Examples per language.")
    xnli_test: PositiveInt = Field(2_000, description="Examples per language.")
    xquad_train_stories: PositiveInt = Field(2_000, description="Pivot-language contexts.")
    xquad_dev_stories: PositiveInt = Field(100, description="Contexts per language.")
    xquad_test_stories: PositiveInt = Field(250, description="Contexts per language.")


class EncoderPretraining(Section):
    """The tiny BERT pre-trained with masked language modelling on the monolingual text only."""

    vocab_size: PositiveInt = 1_200
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 4
    num_heads: PositiveInt = 4
    intermediate_size: PositiveInt = 512
    max_length: PositiveInt = Field(128, description="Packed sequence length = max position.")
    steps: PositiveInt = 700
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 1e-3
    warmup_steps: int = Field(70, ge=0)
    mlm_probability: Annotated[float, Field(gt=0, lt=1)] = 0.15
    heldout_sentences: PositiveInt = Field(
        500, description="Last lines of each mono file kept out of training for MLM accuracy."
    )
    whole_function_words: bool = Field(
        False,
        description="Give every language's function words (articles, prepositions, question "
        "words, 'does') one WordPiece each, as mBERT's large vocabulary does; the small default "
        "vocabulary splits some pivot question words ('where' -> wh ##er ##e) but not their "
        "translations.",
    )


class DemoConfig(Section):
    """The offline demo world: where it is cached, its seed and how big it is."""

    cache_dir: str | None = Field(
        default=None,
        description="Where the generated data and tiny encoder live; default ~/.cache/ot-ray "
        "(or $OT_RAY_CACHE).",
    )
    seed: Seed = 0
    sizes: WorldSizes = Field(default_factory=WorldSizes)
    encoder: EncoderPretraining = Field(default_factory=EncoderPretraining)


#: What a source's strings may name: see :class:`SourceSpec`.
PLACEHOLDERS = ("root", "lang", "pivot", "pair")


#: ``hub`` values that read local files (``data_files``) rather than a Hub repository's.
LOCAL_FILE_BUILDERS = frozenset({"json", "csv", "text", "parquet", "arrow"})
#: The SourceSpec keys only a local file's reader uses, and those only a Hub dataset's.
LOCAL_KEYS = ("path", "second_path", "alignments")
HUB_KEYS = ("hub", "hub_config", "data_files", "revision")


class SourceSpec(Section):
    """Where one split of one dataset comes from: a local file or an HF Hub dataset.

    Strings may use ``{root}`` (``data.root``; the demo world's directory when it is ``demo``),
    ``{lang}``, ``{pivot}`` and ``{pair}`` (the two codes sorted and joined by ``-``, as
    Europarl's Hub configs are named). A Hub dataset is read with ``datasets.load_dataset(hub,
    hub_config, split=split, data_files=data_files)``, so ``hub: json`` with ``data_files`` reads
    local files in a Hub dataset's schema.
    """

    path: str | None = Field(default=None, description="Local file (TSV, JSONL or SQuAD JSON).")
    second_path: str | None = Field(
        default=None, description="Parallel text as two line-aligned files: the pivot side."
    )
    alignments: str | None = Field(default=None, description="Pharaoh word alignments.")
    hub: str | None = Field(default=None, description="HF Hub dataset id (or a builder: json).")
    hub_config: str | None = None
    data_files: str | None = None
    split: str = "train"
    revision: str | None = None
    languages: list[str] | None = Field(
        default=None, description="Only these languages have this split (default: all)."
    )

    @field_validator("path", "second_path", "alignments", "hub", "hub_config", "data_files")
    @classmethod
    def _known_placeholders(cls, template: str | None) -> str | None:
        """A misspelt ``{lnag}`` would otherwise fail only when a worker reads the data."""
        if template is not None:
            try:
                template.format(**dict.fromkeys(PLACEHOLDERS, "x" * 16))
            except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:
                raise ValueError(
                    f"bad placeholder in {template!r} ({type(err).__name__}: {err}); the "
                    f"placeholders are {' '.join('{' + name + '}' for name in PLACEHOLDERS)} "
                    "(double a brace meant literally: {{ }})"
                ) from None
        return template

    @model_validator(mode="after")
    def _one_origin(self) -> SourceSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of 'path' (a local file) and 'hub' (a dataset id)")
        # keys the other origin's reader never looks at would be dropped without a word
        # (alignments given with a Hub dataset: no AER, and l2 would find no links)
        unread = HUB_KEYS if self.path is not None else LOCAL_KEYS
        given = [key for key in unread if key not in ("path", "hub") and getattr(self, key)]
        if given:
            origin = "a local file ('path')" if self.path is not None else "a Hub dataset ('hub')"
            raise ValueError(
                f"{', '.join(given)} cannot be used with {origin}: it would be ignored"
            )
        return self

    def covers(self, lang: str) -> bool:
        return self.languages is None or lang in self.languages


def _local(path: str, alignments: str | None = None, **extra: Any) -> Any:
    return Field(default_factory=lambda: SourceSpec(path=path, alignments=alignments, **extra))


def _held_out_splits_named(**specs: SourceSpec) -> None:
    """A held-out Hub source must name its split: the default, ``train``, would score (and
    select) on training data without a word. Local files read by a builder (``hub: json``)
    have only that split."""
    for name, spec in specs.items():
        if spec.hub not in (None, *LOCAL_FILE_BUILDERS) and "split" not in spec.model_fields_set:
            raise ValueError(
                f"{name}: a Hub dataset read for evaluation needs its split named (e.g. split: "
                "validation); the default, train, would evaluate on training data"
            )


class ParallelSources(Section):
    """Parallel text per target language with the pivot: training pairs and held-out pairs."""

    train: SourceSpec = _local(
        "{root}/parallel/{lang}-{pivot}.tsv", "{root}/parallel/{lang}-{pivot}.align"
    )
    dev: SourceSpec = _local(
        "{root}/parallel/dev/{lang}-{pivot}.tsv", "{root}/parallel/dev/{lang}-{pivot}.align"
    )
    by_language: dict[str, list[SourceSpec]] = Field(
        default_factory=dict,
        description="Training sources of languages that do not come from 'train' (LargeWordOT: "
        "MultiUN for ar, Tanzil and GlobalVoices for sw); several sources are concatenated.",
    )
    pretokenize: Literal["none", "moses"] = Field(
        default="none",
        description="How a side becomes the words WordOT transports and links index: 'none' "
        "splits the text as given at whitespace (tokenised corpora, the demo world); 'moses' "
        "runs the Moses tokenizer first (sacremoses), as the paper's corpora were: raw text "
        "keeps punctuation on words ('Parliament,'), and last-subword pooling would then "
        "transport the comma. Languages without spaces between words are split further: "
        "zh/ja one word per CJK ideograph, th by pythainlp's dictionary (the 'thai' extra).",
    )

    @model_validator(mode="after")
    def _dev_split_named(self) -> ParallelSources:
        _held_out_splits_named(dev=self.dev)
        return self

    @model_validator(mode="after")
    def _links_index_the_words_used(self) -> ParallelSources:
        # a link file indexes the words of the text as written; Moses tokens are others
        if self.pretokenize == "moses":
            specs = {"train": self.train, "dev": self.dev}
            for lang, sources in self.by_language.items():
                specs.update({f"by_language.{lang}": spec for spec in sources})
            linked = [name for name, spec in specs.items() if spec.alignments]
            if linked:
                raise ValueError(
                    f"pretokenize: moses cannot be used with word alignments ({', '.join(linked)}"
                    "): link files index the words of the text as written; give text tokenised "
                    "as the links are, with pretokenize: none"
                )
        return self

    def train_sources(self, lang: str) -> list[SourceSpec]:
        """Where ``lang``'s training pairs come from (empty: that language has none)."""
        if lang in self.by_language:
            return self.by_language[lang]
        return [self.train] if self.train.covers(lang) else []


class NLISources(Section):
    """XNLI: training on the pivot (``{lang}`` is the pivot there), dev and test per language."""

    train: SourceSpec = _local("{root}/xnli/train-{lang}.tsv")
    dev: SourceSpec = _local("{root}/xnli/dev-{lang}.tsv")
    test: SourceSpec = _local("{root}/xnli/test-{lang}.tsv")

    @model_validator(mode="after")
    def _splits_named(self) -> NLISources:
        _held_out_splits_named(dev=self.dev, test=self.test)
        return self


class QASources(Section):
    """XQuAD: SQuAD v1.1 JSON (or the Hub's squad/xquad schema) per split and language."""

    train: SourceSpec = _local("{root}/xquad/train-{lang}.json")
    dev: SourceSpec = _local("{root}/xquad/dev-{lang}.json")
    test: SourceSpec = _local("{root}/xquad/test-{lang}.json")

    @model_validator(mode="after")
    def _splits_named(self) -> QASources:
        _held_out_splits_named(dev=self.dev, test=self.test)
        return self


class DataConfig(Section):
    """Languages and corpora. The pivot plays the role of English: tasks are trained on it."""

    root: str = Field(
        default="demo", description="Fills {root} in paths; 'demo' = the demo world directory."
    )
    pivot: NonBlank = "en"
    languages: list[NonBlank] = Field(default_factory=list, description="Target languages aligned.")
    eval_languages: list[NonBlank] = Field(
        default_factory=list,
        description="Languages evaluated zero-shot besides the pivot (default: data.languages).",
    )
    seen_languages: list[NonBlank] | None = Field(
        default=None,
        description="The targets the 'seen' averages take (default: data.languages, the aligned "
        "ones): LargeWordOT aligns 14 languages and the paper's 'seen' column is still the main "
        "setting's bg de el es fr (the rest then count as unseen).",
    )
    pairs_per_language: PositiveInt | None = Field(
        default=None, description="Sub- or upsample each language pair to this many pairs."
    )
    max_length: PositiveInt = Field(128, description="Tokens per sentence in alignment.")
    cache_dir: str | None = Field(
        default=None, description="Tokenised datasets (default: <output_dir>/cache)."
    )
    parallel: ParallelSources = Field(default_factory=ParallelSources)
    xnli: NLISources = Field(default_factory=NLISources)
    xquad: QASources = Field(default_factory=QASources)
    demo: DemoConfig = Field(default_factory=DemoConfig)

    @model_validator(mode="after")
    def _pivot_not_a_target(self) -> DataConfig:
        if self.pivot in self.languages:
            raise ValueError(f"the pivot language {self.pivot!r} must not be in data.languages")
        if self.seen_languages is not None:
            stray = [lang for lang in self.seen_languages if lang not in self.languages]
            if stray:
                raise ValueError(
                    f"data.seen_languages: {', '.join(stray)} not aligned (not in data.languages)"
                )
        return self

    @field_validator("languages", "eval_languages", "seen_languages")
    @classmethod
    def _each_language_once(cls, named: list[str] | None) -> list[str] | None:
        if named is None:
            return named
        twice = sorted({lang for lang in named if named.count(lang) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} named more than once in {named}")
        return named

    @property
    def seen(self) -> list[str]:
        """The targets of the 'seen' averages."""
        return self.languages if self.seen_languages is None else self.seen_languages

    @property
    def all_eval_languages(self) -> list[str]:
        """The pivot first, then every other evaluated language once."""
        others = self.eval_languages or self.languages
        return [self.pivot] + [lang for lang in dict.fromkeys(others) if lang != self.pivot]
