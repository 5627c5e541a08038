"""A generated English -> "Veslan" parallel corpus on which attention visibly matters.

The source is a small English-like grammar; the target ("Veslan", a made-up language with a
fixed lexicon, :mod:`attnlab.data.veslan_lexicon`) says the same thing with a different word order and with agreement:

========================  =====================================  ===============================
phenomenon                English (source)                       Veslan (target)
========================  =====================================  ===============================
clause order              S [Adv] V O [PP] [Time]                [Time] S [PP] O [Adv] [ne] V [ta]
noun phrase               det adj1 adj2 noun [with NP] [rel]     det noun adj2 adj1 [NP sas] [rel]
agreement                 --                                     det/adj/rel pronoun inflect for the
                                                                 noun's gender (m/f) and number;
                                                                 verbs for subject person/number
tense / negation          sees / saw / does not see / did not    verb [ta]  /  ne verb [ta]
relative clauses          who V O  /  which S V                  koj- O V  /  cij- S V  (verb-final)
prepositions              in the big garden                      lo gardo velko vu (postpositions)
subordinate clauses       A because B                            A B zasto (subordinator last)
========================  =====================================  ===============================

So a decoder must look far back (the time adverb at the end of an English clause comes first in
Veslan; the verb comes after a possibly long object; a determiner needs the gender of a noun it
precedes), and long sentences are built from coordinated and subordinate clauses.

The grammar is unambiguous (prepositional phrases attach only to clauses, ``with`` only to noun
phrases; relative clauses hold only simple noun phrases and no adverbs), so the translation is a
function of the source string and a perfect model reaches BLEU 100. Tokens are separated by
single spaces and every sentence ends with `` .`` on both sides: one whitespace word is one
word-level token, so attention heat maps are labelled by words.

Everything is drawn from ``random.Random(seed)``, so a seed gives the same corpus on every
machine and process (DDP ranks build identical data without talking to each other).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from attnlab.data.veslan_lexicon import (
    ADJECTIVE_KEYS,
    ADJECTIVES,
    ANIMATES,
    COORDINATORS,
    DETERMINER_KEYS,
    DETERMINERS,
    ENDINGS,
    FREQUENCY_ADVERBS,
    NEGATION,
    NOUNS,
    OBJECT_NOUNS,
    PAST,
    PERIOD,
    PERSON_ENDINGS,
    PLACE_NOUNS,
    PREPOSITIONS,
    PRONOUNS,
    REL_OBJECT,
    REL_SUBJECT,
    SUBORDINATORS,
    THING_NOUNS,
    TIME_ADVERBS,
    TRANSITIVE_VERBS,
    VERBS,
    VOWELS,
    WITH,
    Noun,
    agree,
)

# ---------------------------------------------------------------------------------------------
# Generation. Each builder returns (source tokens, target tokens) for one constituent.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Complexity:
    """Per-sentence knobs, drawn once per sentence so lengths spread widely (3 to 50 words)."""

    adj: float  # chance of each further adjective (up to 3)
    rel: float  # chance that a noun phrase gets a relative clause
    with_pp: float  # chance that a noun phrase gets a "with" phrase
    pp: float  # chance of a locative phrase per clause
    time: float  # chance of a time adverb per clause


class _Builder:
    def __init__(self, rng: random.Random, cx: Complexity) -> None:
        self.rng = rng
        self.cx = cx

    def _adjectives(self) -> list[str]:
        out: list[str] = []
        while len(out) < 3 and self.rng.random() < self.cx.adj:
            adj = self.rng.choice(ADJECTIVE_KEYS)
            if adj not in out:
                out.append(adj)
        return out

    def simple_np(self, nouns: tuple[Noun, ...]) -> tuple[list[str], list[str], Noun, bool]:
        """det adj* noun  ->  det noun adj* (mirrored). Returns (src, tgt, noun, plural)."""
        rng = self.rng
        noun = rng.choice(nouns)
        plural = rng.random() < 0.35
        det_en, det_ves = DETERMINERS[rng.choice(DETERMINER_KEYS)]
        adjs = self._adjectives()
        src_det = det_en[1] if plural else det_en[0]
        first = adjs[0] if adjs else noun.sg
        if src_det == "a" and first[0] in VOWELS:
            src_det = "an"
        src = [src_det, *adjs, noun.src(plural)]
        tgt = [det_ves[(noun.gender, plural)], noun.tgt(plural)]
        tgt += [agree(ADJECTIVES[a], noun.gender, plural) for a in reversed(adjs)]
        return src, tgt, noun, plural

    def np(self, nouns: tuple[Noun, ...]) -> tuple[list[str], list[str], Noun, bool]:
        """A full noun phrase: simple NP [with simple NP] [relative clause]."""
        src, tgt, noun, plural = self.simple_np(nouns)
        if self.rng.random() < self.cx.with_pp:
            s2, t2, _, _ = self.simple_np(THING_NOUNS)
            src += [WITH[0], *s2]
            tgt += [*t2, WITH[1]]
        if self.rng.random() < self.cx.rel:
            s3, t3 = self.relative(noun, plural)
            src += s3
            tgt += t3
        return src, tgt, noun, plural

    def relative(self, head: Noun, plural: bool) -> tuple[list[str], list[str]]:
        """Subject relative for animate heads (who V [O]), object relative otherwise (which S V)."""
        rng = self.rng
        past = rng.random() < 0.4
        if head.kind == "animate":
            verb = rng.choice(VERBS)
            src = [REL_SUBJECT[0], verb.past if past else (verb.base if plural else verb.third)]
            tgt = [agree(REL_SUBJECT[1], head.gender, plural)]
            if verb.transitive:
                s_obj, t_obj, _, _ = self.simple_np(OBJECT_NOUNS)
                src += s_obj
                tgt += t_obj
            tgt += [verb.stem + PERSON_ENDINGS["3p" if plural else "3s"]]
        else:
            verb = rng.choice(TRANSITIVE_VERBS)
            s_subj, t_subj, _, subj_plural = self.simple_np(ANIMATES)
            src = [REL_OBJECT[0], *s_subj, verb.past if past else (verb.base if subj_plural else verb.third)]
            tgt = [agree(REL_OBJECT[1], head.gender, plural), *t_subj]
            tgt += [verb.stem + PERSON_ENDINGS["3p" if subj_plural else "3s"]]
        if past:
            tgt.append(PAST)
        return src, tgt

    def clause(self) -> tuple[list[str], list[str]]:
        rng = self.rng
        # Subject: a pronoun (any person) or a noun phrase (3rd person).
        if rng.random() < 0.3:
            p_src, _, person, p_tgt, _ = rng.choice(PRONOUNS)
            s_subj, t_subj = [p_src], [p_tgt]
        else:
            s_subj, t_subj, _, plural = self.np(ANIMATES)
            person = "3p" if plural else "3s"
        verb = rng.choice(VERBS)
        past = rng.random() < 0.4
        r = rng.random()
        negated = r < 0.15
        adverb = rng.choice(tuple(FREQUENCY_ADVERBS)) if 0.15 <= r < 0.35 else None

        # English verb group (do-support under negation).
        if negated:
            aux = "did" if past else ("does" if person == "3s" else "do")
            s_verb = [aux, "not", verb.base]
        else:
            s_verb = [verb.past if past else (verb.third if person == "3s" else verb.base)]
        if adverb:
            s_verb = [adverb, *s_verb]
        t_verb = ([FREQUENCY_ADVERBS[adverb]] if adverb else []) + ([NEGATION] if negated else [])
        t_verb += [verb.stem + PERSON_ENDINGS[person]] + ([PAST] if past else [])

        s_obj: list[str] = []
        t_obj: list[str] = []
        if verb.transitive:
            if rng.random() < 0.12:
                _, p_obj, _, _, p_obj_tgt = rng.choice(PRONOUNS)
                s_obj, t_obj = [p_obj], [p_obj_tgt]
            else:
                s_obj, t_obj, _, _ = self.np(OBJECT_NOUNS)
        s_pp: list[str] = []
        t_pp: list[str] = []
        if rng.random() < self.cx.pp:
            prep = rng.choice(tuple(PREPOSITIONS))
            s_np, t_np, _, _ = self.np(PLACE_NOUNS)
            s_pp, t_pp = [prep, *s_np], [*t_np, PREPOSITIONS[prep]]
        s_time: list[str] = []
        t_time: list[str] = []
        if rng.random() < self.cx.time:
            when = rng.choice(tuple(TIME_ADVERBS))
            s_time, t_time = [when], [TIME_ADVERBS[when]]

        src = s_subj + s_verb + s_obj + s_pp + s_time
        tgt = t_time + t_subj + t_pp + t_obj + t_verb
        return src, tgt

    def sentence(self, n_clauses: int) -> tuple[list[str], list[str]]:
        src, tgt = self.clause()
        for _ in range(n_clauses - 1):
            s2, t2 = self.clause()
            if self.rng.random() < 0.5:
                conj = self.rng.choice(tuple(COORDINATORS))
                src += [conj, *s2]
                tgt += [COORDINATORS[conj], *t2]
            else:
                conj = self.rng.choice(tuple(SUBORDINATORS))
                src += [conj, *s2]
                tgt += [*t2, SUBORDINATORS[conj]]
        return src, tgt


# Number of clauses per sentence and the complexity regimes: tuned so that lengths spread from
# 3 to 50 source words with about 30% over 20 and about 12% over 30 (see corpus_statistics).
_CLAUSE_WEIGHTS = (0.42, 0.32, 0.18, 0.08)
_REGIMES = (
    Complexity(adj=0.15, rel=0.05, with_pp=0.03, pp=0.2, time=0.2),
    Complexity(adj=0.35, rel=0.15, with_pp=0.1, pp=0.35, time=0.3),
    Complexity(adj=0.5, rel=0.3, with_pp=0.2, pp=0.5, time=0.4),
)


def generate_pair(rng: random.Random, min_len: int = 3, max_len: int = 50) -> tuple[str, str]:
    """One (source, target) pair whose source has ``min_len <= words <= max_len`` (whitespace-separated
    words, the final ``.`` included: ``"he sleeps ."`` has 3)."""
    if min_len < 3 or max_len < min_len:
        raise ValueError(f"need 3 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    for _ in range(10_000):
        n_clauses = rng.choices(range(1, len(_CLAUSE_WEIGHTS) + 1), weights=_CLAUSE_WEIGHTS)[0]
        builder = _Builder(rng, rng.choice(_REGIMES))
        src, tgt = builder.sentence(n_clauses)
        if min_len <= len(src) + 1 <= max_len:
            return " ".join([*src, PERIOD]), " ".join([*tgt, PERIOD])
    raise ValueError(f"could not generate a sentence with {min_len}..{max_len} words; widen the range")


def generate_corpus(n: int, seed: int = 0, min_len: int = 3, max_len: int = 50) -> list[tuple[str, str]]:
    """``n`` pairs drawn from ``random.Random(seed)`` (duplicates possible, as in real corpora)."""
    rng = random.Random(seed)
    return [generate_pair(rng, min_len, max_len) for _ in range(n)]


def make_splits(
    n_train: int, n_val: int, n_test: int, seed: int = 0, min_len: int = 3, max_len: int = 50
) -> dict[str, list[tuple[str, str]]]:
    """Train/val/test pairs from one seeded stream. Val and test hold no source sentence seen in
    train (nor test one seen in val), so evaluation measures generalisation, not recall."""
    rng = random.Random(seed)
    train = [generate_pair(rng, min_len, max_len) for _ in range(n_train)]
    seen = {src for src, _ in train}
    splits: dict[str, list[tuple[str, str]]] = {"train": train}
    for name, n in (("val", n_val), ("test", n_test)):
        pairs: list[tuple[str, str]] = []
        # Bounded: a tiny length range can run out of novel sentences.
        for _ in range(50 * n + 1000):
            if len(pairs) >= n:
                break
            src, tgt = generate_pair(rng, min_len, max_len)
            if src not in seen:
                seen.add(src)
                pairs.append((src, tgt))
        if len(pairs) < n:
            raise ValueError(
                f"only {len(pairs)} novel {name} sentences of {min_len}..{max_len} words; "
                "widen min_len/max_len or lower n_val/n_test"
            )
        splits[name] = pairs
    return splits


# ---------------------------------------------------------------------------------------------
# Inspection helpers (statistics for reports, and the lexical gloss the tests use).
# ---------------------------------------------------------------------------------------------


def _content_stems() -> tuple[dict[str, str], dict[str, str]]:
    """Maps each source content word and each target content form to a shared concept id."""
    src_map: dict[str, str] = {}
    tgt_map: dict[str, str] = {}
    for noun in NOUNS:
        for plural in (False, True):
            src_map[noun.src(plural)] = tgt_map[noun.tgt(plural)] = f"N:{noun.sg}"
    for en, stem in ADJECTIVES.items():
        src_map[en] = f"A:{en}"
        for g, pl in ENDINGS:
            tgt_map[agree(stem, g, pl)] = f"A:{en}"
    for verb in VERBS:
        for form in (verb.base, verb.third, verb.past):
            src_map[form] = f"V:{verb.base}"
        for ending in PERSON_ENDINGS.values():
            tgt_map[verb.stem + ending] = f"V:{verb.base}"
    for table in (FREQUENCY_ADVERBS, TIME_ADVERBS, PREPOSITIONS):
        for en, ves in table.items():
            src_map[en] = tgt_map[ves] = f"X:{en}"
    return src_map, tgt_map


_SRC_CONCEPT, _TGT_CONCEPT = _content_stems()


def content_concepts(sentence: str, side: str) -> list[str]:
    """The content words (nouns, adjectives, verbs, adverbs, adpositions) of a sentence as
    language-neutral concept ids, in sentence order; ``side`` is ``"src"`` or ``"tgt"``.

    Comparing the two sides' orders shows the reordering: a word-by-word translation would keep
    the source order.
    """
    table = _SRC_CONCEPT if side == "src" else _TGT_CONCEPT
    return [table[w] for w in words(sentence) if w in table]


def words(sentence: str) -> list[str]:
    """The words of a sentence, a final ``.`` counted as a word of its own even when attached."""
    if sentence.endswith(PERIOD):
        return [*sentence[: -len(PERIOD)].split(), PERIOD]
    return sentence.split()


def vocabulary(pairs: Iterable[tuple[str, str]]) -> tuple[set[str], set[str]]:
    """Source and target word types in ``pairs``."""
    src_vocab: set[str] = set()
    tgt_vocab: set[str] = set()
    for src, tgt in pairs:
        src_vocab.update(words(src))
        tgt_vocab.update(words(tgt))
    return src_vocab, tgt_vocab


def corpus_statistics(pairs: list[tuple[str, str]]) -> dict[str, object]:
    """Sizes, vocabularies (final ``.`` counted as a word type), the histogram of source lengths in
    whitespace words (bins of 5) and the shares of long sentences."""
    src_lens = [len(s.split()) for s, _ in pairs]
    tgt_lens = [len(t.split()) for _, t in pairs]
    src_vocab, tgt_vocab = vocabulary(pairs)
    n = max(1, len(pairs))
    hist = Counter(5 * (length // 5) for length in src_lens)
    reordered = sum(content_concepts(s, "src") != content_concepts(t, "tgt") for s, t in pairs)
    return {
        "n_pairs": len(pairs),
        "src_vocab": len(src_vocab),
        "tgt_vocab": len(tgt_vocab),
        "src_len_min": min(src_lens, default=0),
        "src_len_max": max(src_lens, default=0),
        "src_len_mean": sum(src_lens) / n,
        "tgt_len_mean": sum(tgt_lens) / n,
        "share_gt_20": sum(x > 20 for x in src_lens) / n,
        "share_gt_30": sum(x > 30 for x in src_lens) / n,
        "share_gt_40": sum(x > 40 for x in src_lens) / n,
        "share_reordered": reordered / n,
        "src_len_hist": {f"{b}-{b + 4}": hist[b] for b in sorted(hist)},
    }
