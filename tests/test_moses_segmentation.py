"""Words of languages written without spaces under ``data.parallel.pretokenize: moses``:
CJK ideographs one word each (zh, ja), Thai by pythainlp's dictionary; other languages are
Moses tokens as before, and a missing pythainlp is one clear error."""

# ruff: noqa: RUF001  (the full-width punctuation of Chinese text is what is tested)

from __future__ import annotations

import sys

import pytest
from sacremoses import MosesTokenizer

from ot_ray.config import load_config
from ot_ray.data.moses import (
    check_word_segmenters,
    is_cjk_ideograph,
    moses_settings,
    moses_tokenized,
    pretokenized_languages,
)
from ot_ray.data.parallel import ParallelCorpus
from ot_ray.errors import ConfigError

UNLINKED = [
    "data.parallel.pretokenize=moses",
    "data.parallel.train={path: a.tsv}",
    "data.parallel.dev={path: b.tsv}",
]


def tokenized(lang: str, sources: list[str], targets: list[str] | None = None, pivot="en"):
    corpus = ParallelCorpus(
        sources=sources,
        targets=targets or ["x"] * len(sources),
        rows=list(range(len(sources))),
        origin="test",
    )
    return moses_tokenized(corpus, lang=lang, pivot=pivot, cache_dir=None)


@pytest.fixture
def without_pythainlp(monkeypatch):
    """An environment where ``import pythainlp`` fails, as without the thai extra."""
    for name in [name for name in sys.modules if name.startswith("pythainlp")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pythainlp", None)  # None: ImportError on import


def test_chinese_ideographs_are_one_word_each_and_latin_words_digits_stay_moses_tokens():
    english = "I bought an iPhone, for 6999 yuan (in 2023)."
    out = tokenized(
        "zh",
        [
            "我在2023年买了一部iPhone手机，价格是6999元。",
            "他说：“你好！”然后走了。",
            "我们（中国）的GDP增长了6.5%。",
            "Ray 2.52的新功能iPhone。",
        ],
        [english] * 4,
    )
    assert out.sources == [
        "我 在 2023 年 买 了 一 部 iPhone 手 机 ， 价 格 是 6999 元 。",
        "他 说 ： “ 你 好 ！ ” 然 后 走 了 。",
        "我 们 （ 中 国 ） 的 GDP 增 长 了 6.5 % 。",
        "Ray 2.52 的 新 功 能 iPhone 。",  # "。" no longer the last subword of "iPhone"
    ]
    moses_en = MosesTokenizer(lang="en").tokenize(english, escape=False, return_str=True)
    assert out.targets == [moses_en] * 4 == ["I bought an iPhone , for 6999 yuan ( in 2023 ) ."] * 4


def test_cjk_ideographs_are_the_ranges_bert_splits_off():
    # extension B, the compatibility ideographs, extension E's last one: BERT's ranges;
    # extension F (U+2CEB0), Hangul and kana are not
    assert all(map(is_cjk_ideograph, "中\u3400\U00020000\uf900\U0002ceaf\U0002f800"))
    assert not any(map(is_cjk_ideograph, "\U0002ceb0\u3007한かカa1。"))
    assert tokenized("zh", ["𠀀𠀁豈"]).sources == ["𠀀 𠀁 豈"]


def test_japanese_ideographs_are_words_and_kana_runs_stay_together():
    out = tokenized("ja", ["東京は日本の首都です。", "コンピューターを使う"])
    # no dictionary: a kana run is one word, particle included ("コンピューターを")
    assert out.sources == ["東 京 は 日 本 の 首 都 です 。", "コンピューターを 使 う"]


def test_thai_words_come_from_pythainlps_dictionary():
    pytest.importorskip("pythainlp")
    out = tokenized(
        "th",
        [
            "ผมรักภาษาไทย และฉันชอบกินข้าวผัด",
            "ฉันไม่ได้ไป 3 วันแล้ว, จริงๆ นะ",
            "ผมใช้ iPhone 15 Pro, ราคา 40,000 บาท (แพงมาก).",
            "สวัสดี\u200bครับ",
        ],
    )
    assert [line.split(" ") for line in out.sources] == [
        # I / love / the Thai language / and / I / like / eat / fried rice
        ["ผม", "รัก", "ภาษาไทย", "และ", "ฉัน", "ชอบ", "กิน", "ข้าวผัด"],
        # I / not / did / go / 3 / days / already / , / really / (particle): Moses alone cut
        # words at their tone marks ("ไม ่", "แล ้ ว")
        ["ฉัน", "ไม่", "ได้", "ไป", "3", "วัน", "แล้ว", ",", "จริงๆ", "นะ"],
        # Latin words, numbers and punctuation between Thai runs: Moses tokens
        [
            "ผม",
            "ใช้",
            "iPhone",
            "15",
            "Pro",
            ",",
            "ราคา",
            "40,000",
            "บาท",
            "(",
            "แพง",
            "มาก",
            ")",
            ".",
        ],
        ["สวัสดี", "ครับ"],  # a zero-width space separates, and is no word of its own
    ]


def test_thai_abbreviations_keep_their_full_stops():
    pytest.importorskip("pythainlp")
    out = tokenized(
        "th",
        [
            "พ.ศ. 2564",
            "วันที่ 5 ก.พ. นี้",
            "ในปีพ.ศ.2564",
            "ดร.สมชาย ไปกทม.",
            "เวลา 10.30 น.",
            "1 มี.ค. 2567 ที่อบต.",
            "พล.ต.อ.สมศักดิ์",
            "เวลา ๑๐.๓๐ น.",
        ],
    )
    assert [line.split(" ") for line in out.sources] == [
        ["พ.ศ.", "2564"],  # Buddhist era; Moses alone: "พ . ศ ."
        # the date / 5 / February / this: the chain of stops is one word
        ["วันที่", "5", "ก.พ.", "นี้"],
        # in / year / B.E. 2564, written without spaces: Moses alone glued ".2564"
        ["ใน", "ปี", "พ.ศ.", "2564"],
        # Dr / Somchai / go / Bangkok: one-stop abbreviations from pythainlp's word list
        ["ดร.", "สม", "ชาย", "ไป", "กทม."],
        ["เวลา", "10.30", "น."],  # time / 10.30 / o'clock
        # 1 / March (not in the word list: a chain of short pieces) / 2567 / at / the
        # subdistrict office (newmm cuts the letters "อบ ต", the word list joins them)
        ["1", "มี.ค.", "2567", "ที่", "อบต."],
        ["พล.ต.อ.", "สม", "ศักดิ์"],  # Police General Somsak: a chain of three stops
        ["เวลา", "๑๐.๓๐", "น."],  # Thai digits: a decimal point, not a chain of pieces
    ]


def test_a_full_stop_after_an_ordinary_thai_word_is_split_off_as_moses_does():
    pytest.importorskip("pythainlp")
    lines = [
        "ผมกินข้าว.",
        "ฉันชอบคุณมาก. เขาอยู่บ้าน.",
        "ไปไหน...",
        "แพงมาก.)",
        "ราคา ๑๕.๕๐.",
    ]
    out = tokenized("th", lines)
    assert [line.split(" ") for line in out.sources] == [
        ["ผม", "กินข้าว", "."],  # I / eat rice / .
        # newmm given the stops would cut "มา ก." and "บ้า น." (ก. and น. are abbreviations)
        ["ฉัน", "ชอบ", "คุณ", "มาก", ".", "เขา", "อยู่", "บ้าน", "."],
        ["ไป", "ไหน", "..."],  # an ellipsis stays Moses's one token
        ["แพง", "มาก", ".", ")"],
        ["ราคา", "๑๕.๕๐", "."],  # price / 15.50 / .: the number whole, the stop its own
    ]


def test_european_languages_are_moses_tokens_as_before():
    lines = {
        "de": ['Herr Präsident, die Abstimmung (1999) ist "endgültig".', "Das ist's: 3,5 %!"],
        "fr": ["L'Union européenne, c'est « important » : oui.", "Aujourd'hui (lundi) ..."],
        "en": ["Mr President, the Parliament's vote & result.", "It's 3.5% -- isn't it?"],
    }
    for lang, texts in lines.items():
        moses = MosesTokenizer(lang=lang)
        out = tokenized(lang, texts, pivot="en")
        assert out.sources == [moses.tokenize(t, escape=False, return_str=True) for t in texts]
        # the same cache fingerprint as before segmentation existed: cached corpora reused
        assert set(moses_settings(lang, "en")) == {"lang", "pivot", "escape", "sacremoses", "v"}


def test_the_cache_fingerprint_names_the_segmentation_and_pythainlps_version():
    from importlib.metadata import version

    assert moses_settings("zh", "en")["words"] == {"source": "cjk-1", "target": None}
    pytest.importorskip("pythainlp")
    thai = moses_settings("th", "en")["words"]["source"]
    assert f"pythainlp-{version('pythainlp')}" in thai and "newmm" in thai
    # Thai's abbreviations changed its words: its version is 2, while zh/ja's stays 1, so
    # their cached corpora stay valid
    assert thai.startswith("thai-3/")
    assert moses_settings("en", "ja")["words"] == {"source": None, "target": "cjk-1"}


def test_without_pythainlp_thai_fails_at_once_with_the_key_and_the_install_command(
    without_pythainlp,
):
    with pytest.raises(ConfigError) as caught:
        check_word_segmenters(["en", "de", "th"])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("data.parallel.pretokenize: ")
    assert "th (Thai)" in message and "pip install 'pythainlp>=5'" in message
    with pytest.raises(ConfigError, match=r"th \(Thai\)"):
        tokenized("th", ["สวัสดีครับ"])
    check_word_segmenters(["en", "de", "zh", "ja"])  # the others need no more than Moses
    assert tokenized("zh", ["你好"]).sources == ["你 好"]


def test_the_driver_checks_the_languages_whose_parallel_text_is_tokenised(without_pythainlp):
    """resolve_paths, before any path, model or data: th with parallel text needs pythainlp; th
    only evaluated (the paper's main setting) does not."""
    from ot_ray.launch import resolve_paths

    config = load_config(
        None, [*UNLINKED, "data.languages=[de, th]", "data.eval_languages=[de, th]"]
    )
    assert pretokenized_languages(config.data) == ["en", "de", "th"]
    with pytest.raises(ConfigError, match=r"^data\.parallel\.pretokenize: .*th \(Thai\)"):
        resolve_paths(config)
    evaluated_only = load_config(
        None,
        [*UNLINKED, "data.parallel.dev={path: b.tsv, languages: [de]}", "data.eval_languages=[th]"],
    )
    assert "th" not in pretokenized_languages(evaluated_only.data)
