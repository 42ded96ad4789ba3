"""The demo world's tiny multilingual encoder: WordPiece + a small BERT pre-trained with MLM.

Like mBERT it sees only monolingual text of every language, never a translation, so whatever
cross-lingual similarity it has comes from shared tokens (digits, names, punctuation) and shared
parameters. Consecutive lines are packed into sequences of ``max_length`` tokens (BERT's recipe),
so every position the tasks use is trained.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from tqdm.auto import tqdm
from transformers import (
    BertConfig,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerFast,
    get_linear_schedule_with_warmup,
)

from ot_ray.config import EncoderPretraining
from ot_ray.demo.seeding import keeps_global_rngs
from ot_ray.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: Threads of the pre-training: CPU kernels split their sums by thread, so another count trains
#: another encoder from the same seed (measured: 1 and 2 threads differ). Two is what the
#: README's demo tables were built with, on 2-core machines.
PRETRAINING_THREADS = 2


def train_tokenizer(
    lines: list[str], vocab_size: int, max_length: int, whole_words: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """A cased WordPiece tokenizer with BERT's pre-tokenisation and [CLS]/[SEP] templates.

    ``WordPieceTrainer`` alone is not deterministic: it numbers the ``##`` pieces in hash-map
    order and breaks ties by those numbers (huggingface/tokenizers#1794). Declaring every
    character and ``##`` character up front fixes the numbering, hence the vocabulary; the
    trained vocabulary is then loaded into a fresh WordPiece model, where those pieces are
    ordinary tokens again (not special ones that masking and decoding would skip).
    ``whole_words`` the trainer did not keep whole are added to that vocabulary, so they are
    one piece each (WordPiece matches the longest piece first).
    """
    characters = sorted({c for line in lines for c in line if not c.isspace()})
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)],
        show_progress=False,
    )
    trained = _bert_like(Tokenizer(models.WordPiece(unk_token="[UNK]")))
    trained.train_from_iterator(lines, trainer)
    vocab = trained.get_vocab()
    for word in whole_words:
        vocab.setdefault(word, len(vocab))
    backend = _bert_like(Tokenizer(models.WordPiece(vocab, unk_token="[UNK]")))
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=max_length,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def _bert_like(tokenizer: Tokenizer) -> Tokenizer:
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def read_documents(path: Path) -> list[list[str]]:
    """BERT's pre-training format: one sentence per line, a blank line between documents."""
    documents, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            current.append(line)
        elif current:
            documents.append(current)
            current = []
    if current:
        documents.append(current)
    return documents


def _heldout_split(documents: list[list[str]], sentences: int) -> int:
    """Index of the first held-out document: the last ones, about ``sentences`` lines in all."""
    split, count = len(documents), 0
    while split > 1 and count < sentences:
        split -= 1
        count += len(documents[split])
    return split


def pack_lines(tokenizer: PreTrainedTokenizerFast, lines: list[str], max_length: int):
    """Token id sequences ``[CLS] line line ... [SEP]`` of at most ``max_length`` tokens."""
    ids = tokenizer(lines, add_special_tokens=False)["input_ids"]
    budget = max_length - 2
    sequences, current = [], []
    for piece in ids:
        piece = piece[:budget]
        if current and len(current) + len(piece) > budget:
            sequences.append(current)
            current = []
        current = current + piece
    if current:
        sequences.append(current)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    return [[cls, *seq, sep] for seq in sequences]


@keeps_global_rngs
def pretrain_encoder(
    mono_files: list[Path],
    out: Path,
    settings: EncoderPretraining,
    seed: int,
    whole_words: Sequence[str] = (),
) -> dict[str, float]:
    """Train tokenizer and MLM on ``mono_files``; save an HF directory; report held-out accuracy.

    ``whole_words`` get one vocabulary entry each (see ``train_tokenizer``). Runs on
    :data:`PRETRAINING_THREADS` threads whatever the caller's setting (a Ray worker's is its
    CPU share), so that every process that builds a world builds the same encoder. It seeds the
    global generators it draws from, and gives the caller's back (``keeps_global_rngs``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAINING_THREADS)
    try:
        return _pretrain(mono_files, out, settings, seed, whole_words)
    finally:
        torch.set_num_threads(threads)


def _pretrain(
    mono_files: list[Path],
    out: Path,
    settings: EncoderPretraining,
    seed: int,
    whole_words: Sequence[str],
) -> dict[str, float]:
    random.seed(seed)
    torch.random.default_generator.manual_seed(seed)  # CPU only: see seeding.py
    train_docs, heldout_docs = [], []
    for path in mono_files:
        documents = read_documents(path)
        split = _heldout_split(documents, settings.heldout_sentences)
        train_docs += documents[:split]
        heldout_docs += documents[split:]
    random.Random(seed).shuffle(train_docs)
    train_lines = [line for document in train_docs for line in document]
    heldout_lines = [line for document in heldout_docs for line in document]

    tokenizer = train_tokenizer(train_lines, settings.vocab_size, settings.max_length, whole_words)
    train = pack_lines(tokenizer, train_lines, settings.max_length)
    heldout = pack_lines(tokenizer, heldout_lines, settings.max_length)
    if len(train) < settings.batch_size:  # not one batch: pre-training would wait forever
        raise UserError(
            f"data.demo: the monolingual text left for pre-training packs into {len(train)} "
            f"sequences, fewer than data.demo.encoder.batch_size ({settings.batch_size}): "
            "raise data.demo.sizes.mono_sentences or lower data.demo.encoder.heldout_sentences"
        )
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=settings.hidden_size,
            num_hidden_layers=settings.num_layers,
            num_attention_heads=settings.num_heads,
            intermediate_size=settings.intermediate_size,
            max_position_embeddings=settings.max_length,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=settings.mlm_probability, return_tensors="pt"
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
    order = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    model.train()
    batches = _batches(train, settings.batch_size, order)
    progress = tqdm(range(settings.steps), desc="pre-training the demo encoder", unit="step")
    for _ in progress:
        batch = collator([{"input_ids": seq} for seq in next(batches)])
        loss = masked_lm_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    seconds = time.perf_counter() - started

    accuracy = mlm_accuracy(model, collator, heldout, settings.batch_size, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {
        "heldout_mlm_accuracy": accuracy,
        "pretraining_seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_sequences": len(train),
        "vocab_size": len(tokenizer),
    }


def masked_lm_loss(model: BertForMaskedLM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """MLM loss with the vocabulary projection on masked positions only (~30% faster here)."""
    hidden = model.bert(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    masked = batch["labels"] != -100
    logits = model.cls(hidden[masked])
    return torch.nn.functional.cross_entropy(logits, batch["labels"][masked])


def _batches(sequences: list[list[int]], size: int, generator: torch.Generator):
    """Endless shuffled batches (a new permutation every epoch)."""
    while True:
        permutation = torch.randperm(len(sequences), generator=generator).tolist()
        for start in range(0, len(permutation) - size + 1, size):
            yield [sequences[i] for i in permutation[start : start + size]]


@torch.no_grad()
def mlm_accuracy(model, collator, sequences: list[list[int]], batch_size: int, seed: int) -> float:
    """Share of masked tokens predicted exactly, on text the model never trained on."""
    model.eval()
    torch.random.default_generator.manual_seed(seed + 1)  # CPU only: see seeding.py
    correct = total = 0
    for start in range(0, len(sequences), batch_size):
        batch = collator([{"input_ids": s} for s in sequences[start : start + batch_size]])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        masked = batch["labels"] != -100
        correct += (logits.argmax(-1)[masked] == batch["labels"][masked]).sum().item()
        total += masked.sum().item()
    return round(correct / max(total, 1), 4) if not math.isnan(total) else 0.0
