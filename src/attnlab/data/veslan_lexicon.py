"""The lexicon of "Veslan", the made-up target language of :mod:`attnlab.data.synthetic_translation`.

Fixed (not drawn from the seed): the language is the same for every corpus seed. Each entry pairs
the English forms with a Veslan stem; Veslan endings mark gender (m/f) and number on nouns,
adjectives, determiners and relative pronouns (:data:`ENDINGS`, :func:`agree`) and person/number
on verbs (:data:`PERSON_ENDINGS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# English singular, English plural, Veslan stem, gender. Veslan nouns: masculine stem + "o"
# (plural "i"), feminine stem + "a" (plural "e"); adjectives take the same four endings.
_ANIMATE = """
man men varn m | woman women selm f | boy boys dusk m | girl girls mir f | child children tobin m
teacher teachers ular f | doctor doctors medok m | farmer farmers polen m | king kings korol m
queen queens rin f | dog dogs hasp m | cat cats mizr f | horse horses lovak m | bird birds pits f
wolf wolves vuk m | fox foxes lis f | student students skolar m | baker bakers pekar f
"""
_THINGS = """
book books knig f | letter letters pism m | ball balls topk f | apple apples jabuk f
box boxes kutij f | key keys kljuc m | hat hats sesir m | cup cups salic f | picture pictures slik f
chair chairs stol m | table tables trapez f | basket baskets kosar m | lamp lamps lamb f
coat coats kaput m | bottle bottles flas f | flower flowers cvet m
"""
_PLACES = """
garden gardens gard m | house houses kuc f | park parks parken m | river rivers rek f
forest forests sum f | city cities grad m | school schools skol f | kitchen kitchens kuhin f
market markets pazar m | village villages sel m | tower towers kul f | field fields polj m
"""
_ADJECTIVES = """
big velk | small mal | old star | young mlad | red crven | blue plav | green zelen | happy vesel
sad tuzn | tall visok | quiet tih | loud glasn | clever pamet | lazy lenj | brave hrabr
strange cudn | dark tamn | bright svetl | heavy tesk | cold hladn | warm topl | beautiful lep
angry ljut | hungry gladn
"""
# English base, 3rd singular, past; Veslan stem (person endings below).
_INTRANSITIVE = """
sleep sleeps slept spav | run runs ran trc | laugh laughs laughed smej | sing sings sang pev
dance dances danced plas | swim swims swam pliv | wait waits waited cek | cry cries cried plak
smile smiles smiled osmeh | walk walks walked setal | jump jumps jumped skak | sit sits sat sed
"""
_TRANSITIVE = """
see sees saw vid | like likes liked vol | find finds found nahod | take takes took uzim
bring brings brought donos | carry carries carried nos | follow follows followed sled
watch watches watched gled | help helps helped pomag | call calls called zov
paint paints painted slikov | sell sells sold prodav | buy buys bought kup | hold holds held drz
visit visits visited poset | clean cleans cleaned cist | open opens opened otvar
love loves loved ljub | draw draws drew crt | push pushes pushed gur
"""


def _rows(table: str) -> list[list[str]]:
    return [row.split() for row in re.split(r"[|\n]", table) if row.strip()]


@dataclass(frozen=True)
class Noun:
    sg: str
    pl: str
    stem: str
    gender: str  # "m" | "f"
    kind: str  # "animate" | "thing" | "place"

    def src(self, plural: bool) -> str:
        return self.pl if plural else self.sg

    def tgt(self, plural: bool) -> str:
        return self.stem + ENDINGS[(self.gender, plural)]


@dataclass(frozen=True)
class Verb:
    base: str
    third: str
    past: str
    stem: str
    transitive: bool


# Agreement endings shared by nouns and adjectives: (gender, plural) -> ending.
ENDINGS = {("m", False): "o", ("f", False): "a", ("m", True): "i", ("f", True): "e"}

NOUNS: tuple[Noun, ...] = tuple(
    Noun(sg, pl, stem, g, kind)
    for kind, table in (("animate", _ANIMATE), ("thing", _THINGS), ("place", _PLACES))
    for sg, pl, stem, g in _rows(table)
)
ADJECTIVES: dict[str, str] = {en: stem for en, stem in _rows(_ADJECTIVES)}
VERBS: tuple[Verb, ...] = tuple(
    Verb(b, t, p, stem, trans)
    for trans, table in ((False, _INTRANSITIVE), (True, _TRANSITIVE))
    for b, t, p, stem in _rows(table)
)

# Determiners: English (singular, plural) -> Veslan forms indexed like ENDINGS.
DETERMINERS: dict[str, tuple[tuple[str, str], dict[tuple[str, bool], str]]] = {}
for _key, _en, _ves in (
    ("def", ("the", "the"), "lo la li le"),
    ("indef", ("a", "some"), "uno una neki neke"),
    ("this", ("this", "these"), "ovo ova ovi ove"),
    ("that", ("that", "those"), "tono tona toni tone"),
    ("my", ("my", "my"), "mojo moja moji moje"),
    ("our", ("our", "our"), "naso nasa nasi nase"),
):
    _forms = _ves.split()
    DETERMINERS[_key] = (_en, dict(zip(ENDINGS, _forms, strict=True)))

# Pronouns: English subject, English object, person/number class, Veslan subject, Veslan object.
# "you" is one person class in Veslan too (English does not mark its number).
PRONOUNS: tuple[tuple[str, str, str, str, str], ...] = (
    ("i", "me", "1s", "jas", "mene"),
    ("you", "you", "2", "tis", "tebe"),
    ("he", "him", "3s", "onk", "njeg"),
    ("she", "her", "3s", "onka", "njej"),
    ("we", "us", "1p", "mis", "nams"),
    ("they", "them", "3p", "onki", "njih"),
)
# Veslan verb endings by person/number class.
PERSON_ENDINGS = {"1s": "em", "2": "es", "3s": "et", "1p": "emo", "3p": "ent"}

PREPOSITIONS = {"in": "vu", "near": "kraj", "behind": "zad", "under": "pod", "beside": "pokraj", "around": "okol"}
WITH = ("with", "sas")
# Relative pronouns inflect like adjectives: "who" (subject relative), "which" (object relative).
REL_SUBJECT = ("who", "koj")
REL_OBJECT = ("which", "cij")
COORDINATORS = {"and": "pa", "but": "no"}
SUBORDINATORS = {"because": "zasto", "while": "dodek", "although": "makar", "when": "kogat"}
FREQUENCY_ADVERBS = {
    "often": "cesto",
    "always": "vinag",
    "sometimes": "ponjak",
    "rarely": "retko",
    "usually": "obicno",
    "never": "nikog",
}
TIME_ADVERBS = {
    "yesterday": "vcera",
    "today": "dnesk",
    "now": "sega",
    "again": "pakot",
    "later": "posle",
    "tonight": "vecer",
}
NEGATION = "ne"
PAST = "ta"
PERIOD = "."
VOWELS = frozenset("aeiou")

ANIMATES = tuple(n for n in NOUNS if n.kind == "animate")
OBJECT_NOUNS = tuple(n for n in NOUNS if n.kind in ("animate", "thing"))
THING_NOUNS = tuple(n for n in NOUNS if n.kind == "thing")
PLACE_NOUNS = tuple(n for n in NOUNS if n.kind == "place")
INTRANSITIVE_VERBS = tuple(v for v in VERBS if not v.transitive)
TRANSITIVE_VERBS = tuple(v for v in VERBS if v.transitive)
ADJECTIVE_KEYS = tuple(ADJECTIVES)
DETERMINER_KEYS = tuple(DETERMINERS)


def agree(stem: str, gender: str, plural: bool) -> str:
    return stem + ENDINGS[(gender, plural)]
