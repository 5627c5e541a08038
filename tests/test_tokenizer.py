"""TextTokenizer: fixed special ids, exact round trips (word-level and BPE), on-disk caching."""

from __future__ import annotations

import json
import pickle

import pytest

from attnlab.data.synthetic_translation import generate_corpus
from attnlab.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, TextTokenizer

# Punctuation glued to words, accents, non-Latin punctuation, symbols and digits.
REAL_TEXT = [
    "Hello, world! How are you?",
    "L'été dernier, nous sommes allés à Montréal.",
    "«Très bien», a-t-elle répondu… puis elle est partie.",
    "¿Dónde está la estación? ¡Allí!",
    "Die Größe beträgt 1,000.5 € (ungefähr).",
    "Ça coûte 5 $ — pas plus; d'accord?",
    "Zoë's naïve café serves crème brûlée.",
]


@pytest.fixture(scope="module")
def synthetic_src() -> list[str]:
    return [src for src, _ in generate_corpus(400, seed=3)]


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_special_ids_are_fixed_and_encode_adds_none(kind: str) -> None:
    tok = TextTokenizer.train(REAL_TEXT * 3, kind=kind, vocab_size=400)
    assert (tok.PAD_ID, tok.UNK_ID, tok.BOS_ID, tok.EOS_ID) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    ids = tok.encode(REAL_TEXT[0])
    assert ids and not set(ids) & {PAD_ID, UNK_ID, BOS_ID, EOS_ID}
    assert max(ids) < tok.vocab_size


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_round_trip_is_exact_with_punctuation_and_accents(kind: str, synthetic_src: list[str]) -> None:
    texts = REAL_TEXT + synthetic_src
    tok = TextTokenizer.train(texts, kind=kind, vocab_size=300 if kind == "bpe" else 8000)
    for text in texts:
        assert tok.decode(tok.encode(text)) == text
    # Punctuation is split off (a vocabulary must not hold "world!" as one piece).
    pieces = tok.tokens("Hello, world!")
    assert "," in pieces and "!" in pieces
    if kind == "word":
        assert pieces == ["▁Hello", ",", "▁world", "!"]


def test_bpe_round_trips_unseen_words_from_known_characters() -> None:
    tok = TextTokenizer.train(REAL_TEXT * 5, kind="bpe", vocab_size=200)
    unseen = "Lé monde, à Montréal? non; réalité."  # every character occurs in training
    ids = tok.encode(unseen)
    assert UNK_ID not in ids
    assert tok.decode(ids) == unseen


def test_word_level_maps_unknown_words_to_unk_and_decode_drops_specials(synthetic_src: list[str]) -> None:
    tok = TextTokenizer.train(synthetic_src, kind="word")
    ids = tok.encode("the zebra sleeps .")
    assert ids[1] == UNK_ID and ids.count(UNK_ID) == 1
    the, sleeps = tok.encode("the")[0], tok.encode("sleeps")[0]
    # <bos>/<pad>/<unk> dropped, everything after the first <eos> ignored.
    assert tok.decode([BOS_ID, the, UNK_ID, PAD_ID, sleeps, EOS_ID, the, the]) == "the sleeps"
    torch = pytest.importorskip("torch")
    assert tok.decode_batch(torch.tensor([[BOS_ID, the, EOS_ID], [sleeps, PAD_ID, PAD_ID]])) == ["the", "sleeps"]


def test_word_fast_path_matches_the_hf_pipeline(synthetic_src: list[str]) -> None:
    """encode_batch's dictionary shortcut for word-level must give the tokenizer's own ids."""
    tok = TextTokenizer.train(synthetic_src + REAL_TEXT, kind="word")
    probes = (
        synthetic_src[:50]
        + REAL_TEXT
        + [
            "the  cat",
            " the",
            "the .. zebra",
            "",
            "can't",
            "a , b",
            "the cat.",
            "the zebra.",
            "the cat..",
            "the .",
            ".",
            "the cat!",
            "the cat.x",
            "the,",
        ]
    )
    assert tok.encode_batch(probes) == [tok.encode(t) for t in probes]


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_json_and_pickle_round_trip(kind: str, synthetic_src: list[str]) -> None:
    tok = TextTokenizer.train(synthetic_src, kind=kind, vocab_size=300)
    again = TextTokenizer.from_json(tok.to_json())
    clone = pickle.loads(pickle.dumps(tok))
    for other in (again, clone):
        assert other.vocab_size == tok.vocab_size
        assert other.encode(synthetic_src[0]) == tok.encode(synthetic_src[0])
        assert other.decode(tok.encode(synthetic_src[1])) == synthetic_src[1]
    assert json.loads(tok.to_json())["model"]["type"] == ("WordLevel" if kind == "word" else "BPE")


def test_cache_hit_returns_the_same_tokenizer(tmp_path, synthetic_src: list[str]) -> None:
    first = TextTokenizer.train(synthetic_src, kind="bpe", vocab_size=300, cache_dir=tmp_path)
    assert not first.from_cache
    assert first.cache_path is not None and first.cache_path.is_file()
    assert first.cache_path.parent == tmp_path / "tokenizers"
    second = TextTokenizer.train(synthetic_src, kind="bpe", vocab_size=300, cache_dir=tmp_path)
    assert second.from_cache and second.cache_path == first.cache_path
    assert second.to_json() == first.to_json()
    # The key covers the text and every setting: a change trains a new file.
    other_text = TextTokenizer.train(synthetic_src[:-1], kind="bpe", vocab_size=300, cache_dir=tmp_path)
    other_size = TextTokenizer.train(synthetic_src, kind="bpe", vocab_size=280, cache_dir=tmp_path)
    other_kind = TextTokenizer.train(synthetic_src, kind="word", vocab_size=300, cache_dir=tmp_path)
    paths = {first.cache_path, other_text.cache_path, other_size.cache_path, other_kind.cache_path}
    assert len(paths) == 4 and not any(t.from_cache for t in (other_text, other_size, other_kind))
    assert len(list((tmp_path / "tokenizers").glob("*.json"))) == 4


def test_damaged_cache_entry_is_retrained(tmp_path, synthetic_src: list[str]) -> None:
    first = TextTokenizer.train(synthetic_src, kind="word", cache_dir=tmp_path)
    assert first.cache_path is not None
    first.cache_path.write_text("{not json")
    again = TextTokenizer.train(synthetic_src, kind="word", cache_dir=tmp_path)
    assert not again.from_cache
    assert again.to_json() == first.to_json()
    assert json.loads(first.cache_path.read_text())  # rewritten whole


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer kind 'char'"):
        TextTokenizer.train(["a b"], kind="char")
    with pytest.raises(ValueError, match="vocab_size must exceed"):
        TextTokenizer.train(["a b"], kind="bpe", vocab_size=4)
