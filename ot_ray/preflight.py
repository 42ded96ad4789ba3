"""Pre-flight checks, run in the driver before any worker starts: every input the trial will
read, and the encoder it will load.

Bad data or a wrong model then fails at once with its file, line or config key, instead of
minutes later in each Ray worker (where the traceback can bury the message).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import transformers

from ot_ray.config import Config
from ot_ray.data.overlap import read_eval_set, read_train_set, task_train_without_eval
from ot_ray.data.sources import (
    data_root,
    load_tokenizer,
    model_path,
    read_parallel,
    read_parallel_sources,
)
from ot_ray.errors import ConfigError
from ot_ray.training import batch_count


def check_data(config: Config) -> None:
    """Read every input the trial will read, so bad data fails in the driver with its file and
    line before any worker starts (and before a Ray worker's traceback can bury the message)."""
    root, data = data_root(config), config.data
    pivot = data.pivot
    evaluated = data.all_eval_languages
    _check_alignment_data(config, root)
    for lang in evaluated[1:]:
        if data.parallel.dev.covers(lang):
            read_parallel(data.parallel.dev, root=root, lang=lang, pivot=pivot)
    for task in config.task.tasks:
        sources = getattr(data, task)
        train = read_train_set(config, task, root=root)
        if getattr(config.task, task).select_every and not sources.dev.covers(pivot):
            raise ConfigError(
                f"selecting the {task} model on the pivot's dev set needs one, and "
                f"data.{task}.dev.languages leaves out {pivot}",
                key=f"task.{task}.select_every",
            )
        # every dev and test set is read (each once), checked, and compared with the training
        # set: one its evaluation sets hold whole fails here, not after stage 1 (the trial
        # warns of a part, with its metric)
        held_out = partial(read_eval_set, config, task, root=root)
        train, _ = task_train_without_eval(config, task, train, held_out)
        if task == "xnli":
            _check_one_task_step(config, task, len(train.head(config.task.xnli.max_train)))


def _check_alignment_data(config: Config, root: str) -> None:
    """Stage 1 (if this trial or the search runs it) has target languages whose training pairs
    each fill a batch, and enough batches for one optimizer step: the stage draws whole
    batches per language, and a language without one would silently never be aligned."""
    data, alignment = config.data, config.alignment
    searched = config.tune.search_space.get("alignment.method")
    sampled = searched is not None and set(searched.choices or []) - {"none"}
    if alignment.method == "none" and not alignment.joint_weight and not sampled:
        return
    if not data.languages:
        raise ConfigError(
            f"alignment.method {alignment.method} needs at least one target language to align",
            key="data.languages",
        )
    batch_size = _largest(config, "alignment.batch_size", alignment.batch_size)
    pack = _largest(config, "alignment.pack_sentences", alignment.pack_sentences)
    batches = 0
    for lang in data.languages:
        sources = data.parallel.train_sources(lang)
        if not sources:
            raise ConfigError(
                f"{lang} has no training pairs (data.parallel.train.languages or "
                "data.parallel.by_language leave it out), so it would never be aligned",
                key="data.languages",
            )
        corpus = read_parallel_sources(sources, root=root, lang=lang, pivot=data.pivot)
        rows = math.ceil((data.pairs_per_language or len(corpus)) / pack)
        if rows < batch_size:
            raise ConfigError(
                f"{batch_size} is more than the {rows} training rows of {lang} "
                f"({corpus.origin}), which would never be aligned",
                key="alignment.batch_size",
            )
        batches += batch_count(rows, batch_size, alignment.epochs)
    grad_accum = _largest(config, "alignment.grad_accum", alignment.grad_accum)
    if batches < grad_accum:
        raise ConfigError(
            f"{grad_accum} micro-batches per step, but stage 1 has only {batches}",
            key="alignment.grad_accum",
        )


def _check_one_task_step(config: Config, task: str, examples: int) -> None:
    """The task stage keeps whole batches only, so fewer examples than one optimizer step's
    would fail after the alignment stage has run; XNLI's count is known now (XQuAD's windows
    are known only once tokenised, so its stage says so itself)."""
    settings = getattr(config.task, task)
    batch_size = _largest(config, f"task.{task}.batch_size", settings.batch_size)
    grad_accum = _largest(config, f"task.{task}.grad_accum", settings.grad_accum)
    if batch_count(examples, batch_size, settings.epochs) < grad_accum:
        raise ConfigError(
            f"{examples} training examples make fewer than one optimizer step of "
            f"{grad_accum} batches of {batch_size}; use more data or a smaller batch",
            key=f"task.{task}.batch_size",
        )


def _largest(config: Config, key: str, value: float) -> int:
    """``value``, or the largest the search can sample for ``key`` (checks hold for all)."""
    spec = config.tune.search_space.get(key)
    if spec is None:
        return int(value)
    return int(max(spec.choices) if spec.choices is not None else spec.high)


def check_model(config: Config) -> None:
    """The encoder's config can be loaded (a misspelt id, or one not cached offline, fails here
    rather than in every worker) and ``alignment.layers`` are layers it has."""
    name = model_path(config)
    if _names_a_folder(name) and not Path(name).expanduser().exists():
        raise ConfigError(
            f"{name}: no such folder (a Hub id has the form org/name)", key="model.name_or_path"
        )
    try:
        model_config = transformers.AutoConfig.from_pretrained(
            name,
            revision=config.model.revision,
            trust_remote_code=config.model.trust_remote_code,
        )
    except (OSError, ValueError) as err:
        message = " ".join(str(err).split())[:300]
        raise ConfigError(f"cannot load {name!r}: {message}", key="model.name_or_path") from None
    _check_weights_and_tokenizer(config, name, model_config)
    _check_lengths(config, name, model_config)
    layers = getattr(model_config, "num_hidden_layers", None)
    if layers is None:
        return
    for layer in config.alignment.layers:
        if not -(layers + 1) <= layer <= layers:
            raise ConfigError(
                f"layer {layer} does not exist: {config.model.name_or_path!r} has the "
                f"embeddings (0) and {layers} "
                f"layers (1 to {layers}, or -1 to -{layers + 1} from the top)",
                key="alignment.layers",
            )


#: Models whose position ids start after the padding index (``pad_token_id + 1``), as
#: RoBERTa's do: two of XLM-R's 514 position embeddings are never a token's.
OFFSET_POSITIONS = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "xmod"}
)


def position_limit(model_config: transformers.PretrainedConfig) -> int | None:
    """The longest input, special tokens included, the model's position embeddings hold
    (RoBERTa-style models start after the padding index); None for models without absolute
    positions (DeBERTa-v2's ``position_biased_input: false``), which have no such limit."""
    positions = getattr(model_config, "max_position_embeddings", None)
    relative_only = getattr(model_config, "position_biased_input", True) is False
    if not isinstance(positions, int) or relative_only:
        return None
    if getattr(model_config, "model_type", "") in OFFSET_POSITIONS:
        positions -= (getattr(model_config, "pad_token_id", None) or 0) + 1
    return positions


def _check_lengths(config: Config, name: str, model_config: transformers.PretrainedConfig) -> None:
    """Every sequence length asked for fits the model's position embeddings: a longer one
    failed at the first batch of its stage (QA windows are padded to their full length), after
    the stages before it had run."""
    positions = position_limit(model_config)
    if positions is None:
        return
    lengths = {
        "data.max_length": config.data.max_length,
        "task.xnli.max_length": config.task.xnli.max_length,
        "task.xquad.max_length": config.task.xquad.max_length,
    }
    for key, value in lengths.items():
        if key.startswith("task.") and key.split(".")[1] not in config.task.tasks:
            continue
        longest = _largest(config, key, value)
        if longest > positions:
            asked = (
                f"{longest} tokens"
                if longest == value
                else (f"the search samples up to {longest} tokens (tune.search_space.{key})")
            )
            raise ConfigError(
                f"{asked}: {name!r} has position embeddings for {positions} "
                f"(max_position_embeddings); at most {positions}",
                key=key,
            )


def _names_a_folder(name: str) -> bool:
    """A path, not a Hub id (``org/name``): transformers would report a missing folder as an
    invalid repo id."""
    return name.startswith(("/", "~", ".")) or name.count("/") > 1


#: The files a local model folder keeps its weights in (one of them, or its shard index).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _check_weights_and_tokenizer(config: Config, name: str, model_config) -> None:
    """A local folder has weights, and the tokenizer fits the embeddings: without its files
    transformers builds a near-empty tokenizer that reads every word as [UNK] and trains on."""
    folder = Path(name)
    if folder.is_dir() and not any(
        (folder / f).is_file() or (folder / f"{f}.index.json").is_file() for f in WEIGHT_FILES
    ):
        raise ConfigError(
            f"{name} has no weights ({' or '.join(WEIGHT_FILES)}, or a shard index)",
            key="model.name_or_path",
        )
    try:
        tokenizer = load_tokenizer(name, config)
    except (OSError, ValueError, TypeError) as err:
        message = " ".join(str(err).split())[:300]
        raise ConfigError(
            f"cannot load the tokenizer of {name!r}: {message}", key="model.name_or_path"
        ) from None
    if not tokenizer.is_fast:  # word ids and overflow rows come from the Rust tokenizers only
        raise ConfigError(
            f"the tokenizer of {name!r} is not a fast (tokenizers) one: ot-ray needs its word "
            "ids; save the model with a tokenizer.json, or convert it (AutoTokenizer "
            "from_pretrained(..., use_fast=True) then save_pretrained)",
            key="model.name_or_path",
        )
    vocab = getattr(model_config, "vocab_size", None)
    if vocab and not vocab // 2 <= len(tokenizer) <= vocab:
        raise ConfigError(
            f"the tokenizer of {name!r} has {len(tokenizer)} tokens for embeddings of {vocab}: "
            "its files are missing or belong to another model",
            key="model.name_or_path",
        )
