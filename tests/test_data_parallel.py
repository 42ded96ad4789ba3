"""Parallel corpora from local files: the demo world's real files, and every bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from conftest import refuse_reading, tiny_encoder, write_small_world

from ot_ray.align.quality import AlignmentQuality
from ot_ray.data.parallel import ParallelCorpus, packed, read_line_aligned, read_parallel_tsv
from ot_ray.errors import DataError
from ot_ray.metrics import alignment_error_rate


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_small_world(
        tmp_path_factory.mktemp("world"), seed=1, parallel_pairs=60, parallel_dev_pairs=10
    )


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_reads_the_demo_worlds_parallel_files_with_alignments(world):
    corpus = read_parallel_tsv(world / "parallel/es-en.tsv", world / "parallel/es-en.align")
    assert len(corpus) == 60 and corpus.skipped_empty == 0
    assert corpus.links is not None and all(corpus.links)
    first = corpus.targets[0].split()
    assert max(j for _, j in corpus.links[0]) == len(first) - 1  # the final "." or "?" aligns


def test_line_aligned_files_match_the_tsv(world, tmp_path):
    corpus = read_parallel_tsv(world / "parallel/de-en.tsv")
    source = write(tmp_path / "de.txt", "".join(s + "\n" for s in corpus.sources))
    target = write(tmp_path / "en.txt", "".join(t + "\n" for t in corpus.targets))
    again = read_line_aligned(source, target)
    assert again.sources == corpus.sources and again.targets == corpus.targets


def test_empty_sides_are_skipped_and_counted_with_their_links(tmp_path):
    tsv = write(tmp_path / "c.tsv", "a b\tx y\n\tz\n  \t \nc\tw\n")
    align = write(tmp_path / "c.align", "0-0 1-1\n\n\n0-0\n")
    corpus = read_parallel_tsv(tsv, align)
    assert corpus.sources == ["a b", "c"] and corpus.skipped_empty == 2
    assert corpus.links == [{(0, 0), (1, 1)}, {(0, 0)}]
    assert corpus.rows == [1, 4]  # the input lines the kept pairs came from
    blank = read_parallel_tsv(write(tmp_path / "b.tsv", "a\tx\n\nc\tw\n\n"))
    assert blank.sources == ["a", "c"] and blank.skipped_empty == 2 and blank.rows == [1, 3]


def test_the_first_pairs_count_the_empty_pairs_among_their_lines_only(tmp_path):
    """``alignment.eval_pairs`` keeps the first held-out pairs: their skipped count was the whole
    input's (Europarl's 2,000 held-out lines' for 500 pairs measured)."""
    corpus = read_parallel_tsv(write(tmp_path / "h.tsv", "a\tx\n\tz\nb\ty\n\n\nc\tw\n\n"))
    assert corpus.rows == [1, 3, 6] and corpus.skipped_empty == 4
    assert [corpus.head(n).skipped_empty for n in (1, 2, 3, 9)] == [0, 1, 4, 4]


def test_gold_files_with_possible_links_give_aer_over_sure_and_possible(tmp_path):
    """Hand-aligned gold sets mark uncertain links ``ipj`` (Och & Ney's P); they were refused
    as "not a Pharaoh link", so AER could not be compared with published figures."""
    tsv = write(tmp_path / "c.tsv", "a b\tx y\n\tz\nc d\tw v\n")
    align = write(tmp_path / "c.align", "0-0 1p1\n\n0-0 1p0 1-1 1p1\n")
    corpus = read_parallel_tsv(tsv, align)
    assert corpus.links == [{(0, 0)}, {(0, 0), (1, 1)}]  # sure only: what l2 trains on
    assert corpus.possible == [{(1, 1)}, {(1, 0)}]  # a link marked both ways is sure
    assert corpus.head(1).possible == [{(1, 1)}]
    assert read_parallel_tsv(tsv, write(tmp_path / "s.align", "0-0\n\n0-0\n")).possible is None
    predicted = [{(0, 0), (1, 1)}, {(0, 0), (1, 0)}]  # 2 of 4 sure, 4 of 4 sure or possible
    assert alignment_error_rate(predicted, corpus.links, corpus.possible) == pytest.approx(
        100 * (1 - (2 + 4) / (4 + 3))
    )
    with pytest.raises(DataError, match=r"s2\.align:1: link 2-0 is outside the sentence"):
        read_parallel_tsv(tsv, write(tmp_path / "s2.align", "2p0\n\n\n"))
    with pytest.raises(DataError, match=r"expected i-j \(sure\) or ipj \(possible\)"):
        read_parallel_tsv(tsv, write(tmp_path / "s3.align", "0x0\n\n\n"))


def test_written_links_keep_the_input_line_numbering_where_pairs_were_skipped(tmp_path):
    """Line k of predicted Pharaoh links must align line k of the input (as the gold file
    does), also when an empty pair in the middle was skipped."""
    corpus = read_parallel_tsv(write(tmp_path / "c.tsv", "a b\tx y\n\tz\nc\tw\n"))
    quality = AlignmentQuality(retrieval=100.0, aer=None, links=[{(1, 1), (0, 0)}, {(0, 0)}])
    assert quality.pharaoh(corpus.rows) == "0-0 1-1\n\n0-0\n"
    assert quality.pharaoh() == "0-0 1-1\n0-0\n"  # no rows: one line per pair
    # skipped pairs at the end of the input keep their (empty) lines too
    ended = read_parallel_tsv(write(tmp_path / "e.tsv", "a b\tx y\n\tz\nc\tw\n\t\n\n"))
    assert ended.input_lines == 5 and ended.head(1).input_lines == 1
    assert quality.pharaoh(ended.rows, ended.input_lines) == "0-0 1-1\n\n0-0\n\n\n"
    assert packed(corpus, 2).rows is None and corpus.resized(5, seed=0).rows is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a\tb\nno tab here\n", r"c\.tsv:2: expected source<TAB>target, found no tab"),
        ("a\tb\tc\n", r"c\.tsv:1: expected source<TAB>target, found 2 tabs"),
        (b"a\tb\nbad \xff byte\tc\n", r"c\.tsv:2: not UTF-8 \(byte 0xff at column 5\)"),
        # characters, not bytes, as an editor counts them
        ("a\tb\ncafé ".encode() + b"\xff\tc\n", r"c\.tsv:2: not UTF-8 \(byte 0xff at column 6\)"),
        (gzip.compress(b"a\tb\n"), r"c\.tsv:1: not UTF-8 .*\(the file is gzip-compressed"),
    ],
)
def test_bad_tsv_names_file_and_line(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        read_parallel_tsv(write(tmp_path / "c.tsv", content))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.tsv: no such file"):
        read_parallel_tsv(tmp_path / "nope.tsv")


def test_sides_of_different_length(tmp_path):
    source = write(tmp_path / "de.txt", "a\nb\nc\n")
    target = write(tmp_path / "en.txt", "x\ny\n")
    with pytest.raises(DataError, match=r"de\.txt: has 3 lines but its other side .*en\.txt has 2"):
        read_line_aligned(source, target)


@pytest.mark.parametrize(
    ("alignment", "message"),
    [
        ("0-0\n", r"c\.align: has 1 lines but the corpus .* has 2 pairs"),
        ("0-0\n0-2\n", r"c\.align:2: link 0-2 is outside the sentence pair \(2 source, 2 target"),
        ("0-0\n0:1\n", r"c\.align:2: not a Pharaoh link: '0:1'"),
    ],
)
def test_bad_alignments_name_file_and_line(tmp_path, alignment, message):
    tsv = write(tmp_path / "c.tsv", "a b\tx y\nc d\tz w\n")
    with pytest.raises(DataError, match=message):
        read_parallel_tsv(tsv, write(tmp_path / "c.align", alignment))


def test_resizing_subsamples_or_upsamples_deterministically(world):
    corpus = read_parallel_tsv(world / "parallel/fr-en.tsv", world / "parallel/fr-en.align")
    small = corpus.resized(25, seed=0)
    assert len(small) == 25 and small.sources == corpus.resized(25, seed=0).sources
    assert set(small.sources) <= set(corpus.sources) and len(set(small.sources)) == 25
    big = corpus.resized(150, seed=0)
    assert len(big) == 150 and big.sources[:60] == corpus.sources
    assert big.links is not None and big.links[60:120] == corpus.links


def test_packing_joins_neighbours_and_shifts_their_links(world):
    corpus = read_parallel_tsv(world / "parallel/fr-en.tsv", world / "parallel/fr-en.align")
    joined = packed(corpus, 3)
    assert len(joined) == -(-len(corpus) // 3)
    assert joined.sources[0] == " ".join(corpus.sources[:3])
    assert joined.targets[-1] == " ".join(corpus.targets[(len(joined) - 1) * 3 :])
    shift_s = len(corpus.sources[0].split())
    shift_t = len(corpus.targets[0].split())
    second = {(s + shift_s, t + shift_t) for s, t in corpus.links[1]}
    assert joined.links[0] == corpus.links[0] | second | {
        (s + shift_s + len(corpus.sources[1].split()), t + shift_t + len(corpus.targets[1].split()))
        for s, t in corpus.links[2]
    }
    for source, target, links in zip(joined.sources, joined.targets, joined.links, strict=True):
        assert all(s < len(source.split()) and t < len(target.split()) for s, t in links)
    assert packed(corpus, 1) is corpus


def test_a_directory_or_an_unreadable_file_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "corpus.tsv"
    folder.mkdir()
    with pytest.raises(DataError, match=r"corpus\.tsv: is a directory, not a file"):
        read_parallel_tsv(folder)
    source = write(tmp_path / "de.txt", "a\n")
    with pytest.raises(DataError, match=r"corpus\.tsv: is a directory"):
        read_line_aligned(source, folder)
    locked = write(tmp_path / "locked.tsv", "a\tb\n")
    refuse_reading(monkeypatch)
    with pytest.raises(DataError, match=r"locked\.tsv: cannot read the file: Permission denied"):
        read_parallel_tsv(locked)


def test_resizing_an_empty_corpus_names_its_files(tmp_path):
    tsv = write(tmp_path / "empty.tsv", "\tx\ny\t\n")
    corpus = read_parallel_tsv(tsv)
    with pytest.raises(DataError, match=r"empty\.tsv: no sentence pairs to resize to 10 \(2 skip"):
        corpus.resized(10, seed=0)
    source, target = write(tmp_path / "de.txt", ""), write(tmp_path / "en.txt", "")
    with pytest.raises(DataError, match=r"de\.txt \+ .*en\.txt: no sentence pairs to resize"):
        read_line_aligned(source, target).resized(10, seed=0)
    with pytest.raises(DataError, match=r"empty\.tsv: no sentence pairs"):
        packed(corpus, 2).resized(10, seed=0)


def test_a_byte_order_mark_is_not_read_as_a_word(tmp_path):
    """Windows editors start UTF-8 files with one; kept, it became the first word of the first
    sentence, and the gold link 0-0 pointed at it."""
    tsv = read_parallel_tsv(
        write(tmp_path / "c.tsv", "\ufeffhello world\tbonjour\n"),
        write(tmp_path / "c.pharaoh", "\ufeff0-0\n"),
    )
    assert tsv.sources == ["hello world"] and tsv.links == [{(0, 0)}]
    aligned = read_line_aligned(
        write(tmp_path / "de.txt", "\ufeffhallo welt\n"), write(tmp_path / "en.txt", "\ufeffhi\n")
    )
    assert (aligned.sources, aligned.targets) == (["hallo welt"], ["hi"])


def test_a_file_of_old_mac_line_endings_is_refused(tmp_path):
    """Carriage returns only: the whole file read as one line ("found 2 tabs" before). Windows
    endings, doubled ones and a stray ``\\r`` (whitespace to the tokenizers) are read."""
    crlf = read_parallel_tsv(write(tmp_path / "crlf.tsv", "a b\tc d\r\ne f\tg h\r\r\n"))
    assert crlf.sources == ["a b", "e f"] and crlf.targets == ["c d", "g h"]
    with pytest.raises(DataError, match=r"cr\.tsv:1: the whole file is one line .* old Mac"):
        read_parallel_tsv(write(tmp_path / "cr.tsv", "a b\tc d\re f\tg h\r"))
    write(tmp_path / "en.txt", "one\ntwo\n")
    stray = read_line_aligned(write(tmp_path / "de.txt", "eins\nzwe\ri\n"), tmp_path / "en.txt")
    assert stray.sources == ["eins", "zwe\ri"] and stray.targets == ["one", "two"]


def test_pairs_without_a_word_on_a_side_are_dropped_with_their_links(tmp_path):
    """A side the tokenizer keeps no word of (a zero-width space is removed as a control
    character) has nothing to transport; its pair goes, and the later pairs keep their links."""
    from transformers import AutoTokenizer

    from ot_ray.data.tokenized import pairs_with_words, tokenize_parallel

    tiny_encoder(tmp_path / "encoder")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "encoder")
    corpus = ParallelCorpus(
        sources=["ein satz", "\u200b", "the dog runs"],
        targets=["a sentence", "the dog", "dog runs"],
        links=[{(0, 0)}, {(0, 1)}, {(1, 0), (2, 1)}],
    )
    dataset = tokenize_parallel(corpus, tokenizer, 16, cache_dir=None)
    assert dataset["src_has_words"] == [True, False, True]
    kept, links, dropped = pairs_with_words(dataset, corpus.links)
    assert dropped == 1 and len(kept) == 2
    assert kept["src_input_ids"] == [dataset["src_input_ids"][0], dataset["src_input_ids"][2]]
    assert links == [{(0, 0)}, {(1, 0), (2, 1)}]
    same, same_links, none = pairs_with_words(kept, links)
    assert none == 0 and same is kept and same_links is links


def test_moses_pretokenisation_splits_punctuation_off_words_and_is_cached(tmp_path):
    from ot_ray.data.moses import moses_tokenized
    from ot_ray.data.parallel import ParallelCorpus

    corpus = ParallelCorpus(
        sources=['Herr Präsident, die Abstimmung (1999) ist "endgültig".'],
        targets=["Mr President, the Parliament's vote & result."],
        rows=[7],
        origin="europarl",
    )
    first = moses_tokenized(corpus, lang="de", pivot="en", cache_dir=tmp_path)
    assert first.sources == ['Herr Präsident , die Abstimmung ( 1999 ) ist " endgültig " .']
    assert first.targets == ["Mr President , the Parliament 's vote & result ."]  # not &amp;
    assert first.rows == [7] and first.origin == "europarl"
    cached = list(tmp_path.glob("moses-*.arrow"))
    assert len(cached) == 1
    again = moses_tokenized(corpus, lang="de", pivot="en", cache_dir=tmp_path)
    assert again == first and list(tmp_path.glob("moses-*.arrow")) == cached


def test_training_pairs_that_repeat_a_held_out_sentence_are_dropped_with_their_links():
    """Europarl's held-out pairs are its last lines, and it repeats sentences ("(Applause)"):
    training on them would flatter the retrieval and AER measured there."""
    train = ParallelCorpus(
        sources=["a b", "(Beifall)", "c d", "e f", "g"],
        targets=["x y", "(Applause)", "z w", "thank you", "h"],
        links=[{(0, 0)}, {(0, 0)}, {(1, 1)}, {(0, 1)}, {(0, 0)}],
        origin="train.tsv",
        rows=[1, 2, 3, 4, 5],
    )
    kept, dropped = train.without_sentences_of(
        ["(Beifall)", "danke", "g"], ["(Applause)", "thank you", "gut"]
    )
    assert dropped == 3  # a whole pair, a pair sharing its target, one sharing its source
    assert (kept.sources, kept.targets) == (["a b", "c d"], ["x y", "z w"])
    assert kept.links == [{(0, 0)}, {(1, 1)}] and kept.rows == [1, 3]
    same, none = train.without_sentences_of(["q"], ["r"])
    assert none == 0 and same is train
