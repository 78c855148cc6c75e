"""Risk detection (pure): the text normaliser, the lexicon format and matcher, number
patterns, scoring, the ``Detector`` plug-in protocol and the per-service risk settings.

Matching works on a *normalised* copy of the text (``normalise``): NFKC, casefold, strip
diacritics, map leetspeak and look-alikes (``0→o 1→i 3→e 4→a 5→s 7→t @→a $→s |→l``),
drop separators inside words (``s.u.i.c.i.d.e`` → ``suicide``), join runs of spaced single
letters (``k i l l`` → ``kill``), collapse every run of a repeated letter to one letter
(``kiiiilll`` → ``kil``; the lexicon is normalised the same way, so ``kill`` → ``kil``) and
turn every other non-alphanumeric run into one space. Lexicon phrases are normalised the
same way and compiled once into a single regular expression (a trie of alternatives), with
word boundaries at both ends and an optional space between the words of a phrase (so
``self harm``, ``self-harm`` and ``selfharm`` all match). Number patterns (weights,
calories, BMI, phone numbers, e-mail addresses, postcodes, NHS-like numbers, street
addresses) run on a lightly normalised copy (NFKC + casefold) where digits keep their value.

A hit has a term (the lexicon phrase, or the pattern's *name* for identifying details:
never the matched phone number or address), a category and a weight in 0..1. The score of
a text is ``1 - prod(1 - w)`` over its distinct hits; its category is the heaviest hit's.

Limits (docs/risk-lexicon.md): no negation or quotation handling ("I would never kill
myself" matches); no spelling-mistake tolerance beyond the mappings above; a lexicon is a
starting point that each service must review.
"""

from __future__ import annotations

import re
import unicodedata
from typing import (
    Any, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable,
)

import attr

from protocol.errors import BadField
from protocol.spaces import register_setting

__all__ = [
    "CATEGORIES", "Hit", "Assessment", "per_mille", "normalise", "light_normalise", "parse_lexicon",
    "LexiconError", "Matcher", "Detector", "LexiconDetector", "combine", "score_of",
    "MAX_EXTRA_TERMS", "MAX_PHRASE_CHARS", "PATTERN_NAMES", "DEFAULT_PATTERN_WEIGHTS",
    "validate_detectors", "validate_threshold", "validate_extra", "over_threshold",
]

CATEGORIES = ("suicide", "self_harm", "eating_disorder", "abuse", "risk_to_others", "identifying")
"""Risk categories, in no particular order of severity (weights carry severity)."""

MAX_EXTRA_TERMS = 200
"""The most phrases a service may add with ``risk_lexicon_extra``."""

MAX_PHRASE_CHARS = 80
MAX_DETECTORS = 10
MAX_TEXT_CHARS = 20_000
"""Only the first this-many characters of a text are assessed (bounded work per event)."""

_NAME = re.compile(r"^[a-z0-9_.\-]{1,40}$")


# -- results ---------------------------------------------------------------------------------
@attr.s(frozen=True, slots=True, auto_attribs=True)
class Hit:
    """One match: the term (phrase or pattern name), its category and weight."""

    term: str
    category: str
    weight: float

    def as_dict(self) -> Dict[str, Any]:
        """Wire form: the weight in per mille (frames carry integers only)."""
        return {"term": self.term, "category": self.category, "weight": per_mille(self.weight)}


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Assessment:
    """What a detector found in one text: a score in 0..1, the main category, the hits."""

    score: float
    category: str
    hits: Tuple[Hit, ...]
    detector: str = "lexicon"

    def as_dict(self) -> Dict[str, Any]:
        """Wire form: score and weights in per mille (frames carry integers only)."""
        return {"score": per_mille(self.score), "category": self.category, "detector": self.detector,
                "hits": [h.as_dict() for h in self.hits]}


def per_mille(value: float) -> int:
    """A 0..1 score or weight as an integer 0..1000 (how frames and settings carry it)."""
    return max(0, min(1000, int(round(value * 1000))))


def score_of(hits: Iterable[Hit]) -> float:
    """``1 - prod(1 - w)`` over the distinct terms (the heaviest weight per term counts)."""
    best: Dict[Tuple[str, str], float] = {}
    for hit in hits:
        key = (hit.category, hit.term)
        if hit.weight > best.get(key, -1.0):
            best[key] = hit.weight
    remain = 1.0
    for w in best.values():
        remain *= (1.0 - w)
    return round(1.0 - remain, 4)


def _assessment(hits: Sequence[Hit], detector: str) -> Optional[Assessment]:
    if not hits:
        return None
    distinct: Dict[Tuple[str, str], Hit] = {}
    for hit in hits:
        key = (hit.category, hit.term)
        old = distinct.get(key)
        if old is None or hit.weight > old.weight:
            distinct[key] = hit
    ordered = tuple(sorted(distinct.values(), key=lambda h: (-h.weight, h.category, h.term)))
    return Assessment(score_of(ordered), ordered[0].category, ordered, detector)


def combine(assessments: Iterable[Optional[Assessment]]) -> Optional[Assessment]:
    """One assessment from several detectors' (None when none found anything)."""
    found = [a for a in assessments if a is not None]
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    hits = [h for a in found for h in a.hits]
    names = "+".join(sorted({a.detector for a in found}))
    return _assessment(hits, names)


# -- normalisation ---------------------------------------------------------------------------
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                       "@": "a", "$": "s", "|": "l"})
# letters that look alike across scripts and that NFKC leaves alone (Cyrillic, Greek)
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "к": "k", "м": "m", "т": "t", "в": "b", "н": "h", "ԁ": "d", "ɩ": "i",
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ß": "ss", "ł": "l", "ø": "o", "đ": "d", "æ": "ae", "œ": "oe",
})
_LEET_CHAR = re.compile("[" + re.escape("".join(chr(c) for c in _LEET)) + "]")
_CONFUSABLE_CHAR = re.compile("[" + re.escape("".join(chr(c) for c in _CONFUSABLES)) + "]")
_SEPS = r"[.\-_*'’`~^·•,:;/\\]"
# starts with the separator class (rare characters, found by a fast scan), then looks back
# for the letter before it: much cheaper than a pattern that starts with a look-behind
_IN_WORD_SEP = re.compile(rf"{_SEPS}(?<=[a-z]{_SEPS}){_SEPS}*(?=[a-z])")
_SPACED_LETTERS = re.compile(r"(?<![a-z0-9])(?:[a-z] ){2,}[a-z](?![a-z0-9])")
_REPEATS = re.compile(r"([a-z])\1+")
_COLLAPSE = re.compile(r"(?<=([a-z]))\1+")
"""Removed, collapses runs of a letter like ``_REPEATS.sub(r"\1", ...)``, without a
template expansion per run (2-3 times faster on long runs such as "xxxxxxxx")."""
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _join_spaced(m: "re.Match[str]") -> str:
    return m.group(0).replace(" ", "")


def light_normalise(text: str) -> str:
    """NFKC and casefold, whitespace runs made single spaces: what number patterns see."""
    if not text.isascii():
        return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return " ".join(text.lower().split())


# The matcher's own pass over a text: the same mappings as ``normalise`` but cheaper (two
# byte-table translations for ASCII text), leaving repeated letters and space runs in place:
# the compiled phrase regex tolerates them (each letter ``c+``, each space `` *``).
_ASCII_LOWER_LEET = str.maketrans({**{chr(c): chr(c + 32) for c in range(65, 91)},
                                   "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                                   "@": "a", "$": "s", "|": "l"})
_ASCII_PUNCT_SPACE = str.maketrans({chr(c): " " for c in range(128)
                                    if not (48 <= c <= 57 or 97 <= c <= 122)})


def _byte_table(table: Mapping[int, str]) -> bytes:
    out = bytearray(range(256))
    for code, to in table.items():
        out[code] = ord(to)
    return bytes(out)


_B_LOWER_LEET = _byte_table(_ASCII_LOWER_LEET)
_B_PUNCT_SPACE = _byte_table(_ASCII_PUNCT_SPACE)
_B_IN_WORD_SEP = re.compile(rb"[.\-_*'`~^,:;/\\](?<=[a-z][.\-_*'`~^,:;/\\])[.\-_*'`~^,:;/\\]*(?=[a-z])")
"""``_IN_WORD_SEP`` for ASCII bytes (its non-ASCII separators cannot occur there)."""
_SPACED_RUN = re.compile(r"(?<![a-z0-9])(?:[a-z] +){2,}[a-z](?![a-z0-9])")
_SPACED_HINT = re.compile(r" [a-z] +[a-z] +[a-z](?![a-z0-9])")
"""True on ``" " + s`` exactly when ``_SPACED_RUN`` finds a run in ``s`` (it starts with a
literal, so the engine skips to candidates fast; ``_SPACED_RUN`` starts with a look-behind)."""


_TYPOGRAPHIC = str.maketrans({"\u2019": "'", "\u2018": " ", "\u201c": " ", "\u201d": " ",
                              "\u2013": " ", "\u2014": " ", "\u00a0": " "})
"""Punctuation that phones and editors put in everyday text (’ ‘ “ ” – — and the no-break
space), mapped to ASCII that behaves the same in ``_match_form`` (’ and ' are both in-word
separators; the rest are neither letters nor separators, as a space): such text then takes
the fast ASCII path instead of NFKC and NFD."""


def _match_form(text: str) -> str:
    if not text.isascii():
        plain = text.translate(_TYPOGRAPHIC)
        if plain.isascii():
            text = plain
    if text.isascii():
        s = _B_IN_WORD_SEP.sub(b"", text.encode("ascii").translate(_B_LOWER_LEET)).translate(
            _B_PUNCT_SPACE).decode("ascii")
    else:
        # (str.translate with a dict costs ~50 ns a character on non-ASCII text: each table
        # is applied only if the text has one of its characters, found by a regex scan)
        s = unicodedata.normalize("NFKC", text).casefold()
        if _CONFUSABLE_CHAR.search(s):
            s = s.translate(_CONFUSABLES)
        s = unicodedata.normalize("NFD", s)
        # drop combining marks, looking at each distinct character once
        marks = {ord(c): None for c in set(s) if c > "\x7f" and unicodedata.combining(c)}
        if marks:
            s = s.translate(marks)
        if _LEET_CHAR.search(s):
            s = s.translate(_LEET)
        s = _NON_ALNUM.sub(" ", _IN_WORD_SEP.sub("", s))
    if _SPACED_HINT.search(" " + s):
        s = _SPACED_RUN.sub(lambda m: m.group(0).replace(" ", ""), s)
    return s


def _key(matched: str) -> str:
    """The lookup key of a phrase or a matched span: no spaces, no repeated letters."""
    return _REPEATS.sub(r"\1", matched.replace(" ", ""))


def normalise(text: str) -> str:
    """The form phrases are matched in (see the module docstring); idempotent."""
    s = text
    if not s.isascii():
        s = unicodedata.normalize("NFKC", s).casefold().translate(_CONFUSABLES)
        s = "".join(c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c))
    else:
        s = s.lower()
    s = s.translate(_LEET)
    s = _IN_WORD_SEP.sub("", s)
    s = _NON_ALNUM.sub(" ", s)
    s = _REPEATS.sub(r"\1", s)
    if _SPACED_LETTERS.search(s):
        s = _REPEATS.sub(r"\1", _SPACED_LETTERS.sub(_join_spaced, s))
    return s.strip()


# -- number and identifying-detail patterns ----------------------------------------------
_UNIT_KG = r"(?:kg|kgs|kilo|kilos|kilograms?)"
_UNIT_LB = r"(?:lb|lbs|pounds?)"
_STREET = (r"(?:street|st|road|rd|avenue|ave|lane|ln|close|drive|dr|way|crescent|court|place|"
           r"terrace|gardens|grove|mews|hill|row|walk|square)")
# (Patterns used on most texts start with a character class, not a look-behind: the regex
# engine then skips quickly to candidate positions.)
_PATTERNS: Tuple[Tuple[str, str, str], ...] = (
    ("weight_kg", "eating_disorder", rf"(?<![\d.])\d{{2,3}}(?:[.,]\d)?\s?{_UNIT_KG}(?![a-z])"),
    ("weight_lb", "eating_disorder", rf"(?<![\d.])\d{{2,3}}(?:[.,]\d)?\s?{_UNIT_LB}(?![a-z])"),
    ("weight_stone", "eating_disorder",
     rf"(?<![\d.])\d{{1,2}}\s?(?:st|stone)(?:\s?\d{{1,2}}(?:\s?{_UNIT_LB})?)?(?![a-z\d])"),
    ("calories", "eating_disorder",
     r"(?<![\d.])\d{2,4}\s?(?:k?cals?|kcals?|calories|kilocalories)(?![a-z])"),
    ("bmi", "eating_disorder", r"(?<![a-z])bmi\s?(?:of|is|was|=|:|at|now)?\s?\d{1,2}(?:[.,]\d+)?(?![\d])"),
    ("email", "identifying", r"[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}"),
    ("phone_number", "identifying",
     r"(?<![\d])(?:\+44\s?\(?0?\)?\s?|0)(?:\d[\s\-]?){9,10}(?![\d])"),
    ("nhs_number", "identifying", r"(?<![\d])\d{3}[\s\-]?\d{3}[\s\-]?\d{4}(?![\d])"),
    ("postcode", "identifying",
     r"[a-z](?<![a-z0-9][a-z])[a-z]?\d[a-z\d]?\s?\d[abd-hjlnp-uw-z]{2}(?![a-z0-9])"),
    ("street_address", "identifying",
     rf"\d(?<!\d\d)\d{{0,3}}[a-z]?,?\s(?:[a-z]+\s){{1,2}}{_STREET}(?![a-z])"),
)
PATTERN_NAMES = tuple(p[0] for p in _PATTERNS)
DEFAULT_PATTERN_WEIGHTS: Dict[str, float] = {
    "weight_kg": 0.3, "weight_lb": 0.3, "weight_stone": 0.3, "calories": 0.3, "bmi": 0.4,
    "email": 0.4, "phone_number": 0.5, "nhs_number": 0.5, "postcode": 0.4, "street_address": 0.4,
}
_DIGIT_OR_AT = re.compile(r"[\d@]")
_DROP_DIGITS = str.maketrans("", "", "0123456789")
_INWARD_CODE = re.compile(r"\d[abd-hjlnp-uw-z]{2}(?![a-z0-9])")
"""The tail of every ``postcode`` match (its inward code): a guard that starts at a digit,
so it is much cheaper than the postcode pattern, which starts at every letter."""


def _after_number(light: str, words: Tuple[str, ...]) -> bool:
    """True if one of ``words`` directly follows a digit (``45kg``, ``45 kg``)."""
    for word in words:
        i = light.find(word)
        while i > 0:
            before = light[i - 1]
            if before.isdigit() or (before == " " and i > 1 and light[i - 2].isdigit()):
                return True
            i = light.find(word, i + 1)
    return False


_GUARDS: Dict[str, Any] = {
    "weight_kg": lambda s, d: d >= 2 and _after_number(s, ("kg", "kilo")),
    "weight_lb": lambda s, d: d >= 2 and _after_number(s, ("lb", "pound")),
    "weight_stone": lambda s, d: _after_number(s, ("st",)),
    "calories": lambda s, d: d >= 2 and _after_number(s, ("cal", "kcal")),
    "bmi": lambda s, d: "bmi" in s,
    "email": lambda s, d: "@" in s,
    "phone_number": lambda s, d: d >= 9,
    "nhs_number": lambda s, d: d >= 10,
    "postcode": lambda s, d: d >= 2 and _INWARD_CODE.search(s) is not None,
    "street_address": lambda s, d: d >= 1,  # the pattern itself is as cheap as any guard
}
"""Cheap necessary conditions (``guard(light_text, digit_count)``) checked before a
pattern's regex runs: most texts with a number skip every pattern."""


# -- the lexicon ---------------------------------------------------------------------------------
class LexiconError(ValueError):
    """A lexicon file or extra-terms list is malformed (the message names where)."""


def _weight(value: Any, where: str) -> float:
    if type(value) not in (int, float) or not 0 <= value <= 1:
        raise LexiconError(f"{where}: the weight must be a number from 0 to 1")
    return float(value)


def parse_lexicon(doc: Mapping[str, Any]) -> Tuple[Dict[str, Tuple[str, float]], Dict[str, float]]:
    """A parsed TOML lexicon -> ({phrase: (category, weight)}, pattern weights).

    Format: one table per category mapping phrase -> weight, and an optional ``[patterns]``
    table mapping pattern name -> weight (0 turns a pattern off). Unknown tables are errors,
    so a typo cannot silently drop a category. ``version`` and ``about`` keys are ignored.
    """
    phrases: Dict[str, Tuple[str, float]] = {}
    seen: Dict[str, str] = {}
    patterns = dict(DEFAULT_PATTERN_WEIGHTS)
    for key, table in doc.items():
        if key in ("version", "about"):
            continue
        if not isinstance(table, Mapping):
            raise LexiconError(f"{key}: expected a table of phrase = weight")
        if key == "patterns":
            for name, w in table.items():
                if name not in DEFAULT_PATTERN_WEIGHTS:
                    raise LexiconError(f"patterns.{name}: unknown pattern (known: {', '.join(PATTERN_NAMES)})")
                patterns[name] = _weight(w, f"patterns.{name}")
            continue
        if key not in CATEGORIES:
            raise LexiconError(f"{key}: unknown category (known: {', '.join(CATEGORIES)})")
        for phrase, w in table.items():
            where = f"{key}.{phrase!r}"
            norm = normalise(str(phrase))
            if not norm or len(phrase) > MAX_PHRASE_CHARS:
                raise LexiconError(f"{where}: a phrase must have 1..{MAX_PHRASE_CHARS} characters with a letter or digit")
            weight = _weight(w, where)
            old = seen.get(norm)
            if old is not None and phrases[old][1] >= weight:
                continue
            if old is not None:
                del phrases[old]
            seen[norm] = str(phrase)
            phrases[str(phrase)] = (key, weight)
    return phrases, patterns


def _chains(words: Sequence[str]) -> List[List[str]]:
    """Every way the text may write the phrase ``words`` (normalised words) as text words:
    any run of its words may be run together (``selfharm``), their junction letters then
    collapsing like any repeat. Each way is a list of text words, repeats collapsed."""
    if not words:
        return [[]]
    out = []
    for j in range(1, len(words) + 1):
        head = _key(" ".join(words[:j]))
        out.extend([head] + rest for rest in _chains(words[j:]))
    return out


_PRE_WORDS = 3
"""The pre-filter looks at up to this many text words from each word start."""


def _prefilter(norms: Iterable[str]) -> Optional[Tuple[Tuple[frozenset, frozenset], ...]]:
    """Word-sequence sets that a text must hit to possibly match one of ``norms``.

    A match starts at a word start and ends at a word end, so (repeats collapsed) the text
    words it covers are exactly one of the phrase's ``_chains``. For k = 1.._PRE_WORDS the
    k-th level holds (``done``, ``more``): the first k words (joined by one space) of the
    chains that end there (or are cut there, at the last level), and of those that go on.
    None (no pre-filter) if a phrase has a digit (the regex lets digits repeat, ``_key``
    does not collapse them) or the phrase has too many words to enumerate.
    """
    done: List[set] = [set() for _ in range(_PRE_WORDS)]
    more: List[set] = [set() for _ in range(_PRE_WORDS)]
    for norm in norms:
        words = norm.split()
        if any(c.isdigit() for c in norm) or len(words) > 12:
            return None
        for chain in _chains(words):
            k = min(len(chain), _PRE_WORDS)
            done[k - 1].add(" ".join(chain[:k]))
            for i in range(1, k if len(chain) <= _PRE_WORDS else _PRE_WORDS):
                more[i - 1].add(" ".join(chain[:i]))
    return tuple((frozenset(d), frozenset(m)) for d, m in zip(done, more))


def _trie_regex(words: Iterable[str]) -> str:
    """A regex alternation of ``words`` factored as a trie (fast to reject a position)."""
    trie: Dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = True

    def emit(node: Dict[str, Any]) -> str:
        end = "" in node
        branches = []
        for ch in sorted(k for k in node if k != ""):
            if ch != " ":
                # a letter may be repeated in the text ("kiiill"); the space between two
                # words may be absent ("selfharm") or several
                branches.append(re.escape(ch) + "+" + emit(node[ch]))
            else:
                branches.append(" *" + emit(node[ch]))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if end:
            return "(?:" + body + ")?"
        return body

    return emit(trie)


class Matcher:
    """A compiled lexicon: ``match(text)`` returns the hits (empty for clean text)."""

    def __init__(self, phrases: Mapping[str, Tuple[str, float]],
                 patterns: Optional[Mapping[str, float]] = None) -> None:
        self.phrases: Dict[str, Tuple[str, float]] = {}
        self._by_key: Dict[str, Tuple[str, float, str]] = {}
        for phrase, (category, weight) in phrases.items():
            norm = normalise(phrase)
            if weight <= 0 or not norm:
                continue
            self.phrases[phrase] = (category, weight)
            # spaces may be absent ("selfharm") in the text: look hits up without them
            key = _key(norm)
            old = self._by_key.get(key)
            if old is None or weight > old[1]:
                self._by_key[key] = (category, weight, phrase)
        norms = {normalise(p) for p in self.phrases}
        regex = _trie_regex(norms) if norms else None
        self._regex = re.compile(rf"(?<![a-z0-9])(?:{regex})(?![a-z0-9])") if regex else None
        self._pre = _prefilter(norms) if norms else None
        weights = dict(DEFAULT_PATTERN_WEIGHTS if patterns is None else patterns)
        self._patterns = [(name, category, re.compile(rx), weights.get(name, 0.0))
                          for name, category, rx in _PATTERNS if weights.get(name, 0.0) > 0]

    def __len__(self) -> int:
        return len(self.phrases)

    def match(self, text: str) -> List[Hit]:
        """Every lexicon and pattern hit in ``text`` (the first MAX_TEXT_CHARS characters)."""
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS]
        hits: List[Hit] = []
        if self._regex is not None:
            form = _match_form(text)
            if self._pre is None or self._may_match(form):
                hits.extend(self._phrase_hits(form))
        if self._patterns and _DIGIT_OR_AT.search(text):
            light = light_normalise(text)
            digits = len(light) - len(light.translate(_DROP_DIGITS))
            for name, category, rx, weight in self._patterns:
                if not _GUARDS[name](light, digits):
                    continue
                if rx.search(light):
                    hits.append(Hit(name, category, weight))
        return hits

    def _may_match(self, form: str) -> bool:
        """The pre-filter: False if no phrase can match the match-form text ``form``
        (nearly every clean text), from set lookups instead of a regex pass."""
        (done1, more1), (done2, more2), (done3, _) = self._pre  # type: ignore[misc]
        words = _COLLAPSE.sub("", form).split()
        keys = set(words)
        if not keys.isdisjoint(done1):
            return True
        if keys.isdisjoint(more1):
            return False
        keys = {a + " " + b for a, b in zip(words, words[1:]) if a in more1}
        if not keys.isdisjoint(done2):
            return True
        if keys.isdisjoint(more2):
            return False
        return not done3.isdisjoint({a + " " + b + " " + c for a, b, c in zip(words, words[1:], words[2:])
                                     if a in more1 and a + " " + b in more2})

    def _phrase_hits(self, form: str) -> List[Hit]:
        hits = []
        for m in self._regex.finditer(form):  # type: ignore[union-attr]
            found = self._by_key.get(_key(m.group(0)))
            if found is not None:
                category, weight, phrase = found
                hits.append(Hit(phrase, category, weight))
        return hits

    def assess(self, text: str, detector: str = "lexicon") -> Optional[Assessment]:
        """The assessment of ``text``, or None when nothing matched."""
        return _assessment(self.match(text), detector)


# -- plug-ins ------------------------------------------------------------------------------------
@runtime_checkable
class Detector(Protocol):
    """A risk classifier: ``name`` (listed in a service's ``risk_detectors``) and ``assess``.

    ``assess(text, context)`` must be fast and synchronous (it runs on the send path before
    the event is committed, without awaits); ``context`` carries ``room_id``, ``service_id``,
    ``sender``, ``etype`` and ``kind``. Return None for clean text.
    """

    name: str

    def assess(self, text: str, context: Mapping[str, Any]) -> Optional[Assessment]:
        ...


class LexiconDetector:
    """The built-in detector: a Matcher, plus each service's ``risk_lexicon_extra`` terms."""

    name = "lexicon"

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher
        self._extra: Dict[str, Tuple[Any, Optional[Matcher]]] = {}

    def extra_matcher(self, service_id: Optional[str], extra: Any) -> Optional[Matcher]:
        """The compiled extra terms of a service (cached until its list changes)."""
        if not extra or service_id is None:
            return None
        cached = self._extra.get(service_id)
        if cached is not None and cached[0] is extra:
            return cached[1]
        phrases = {t["phrase"]: (t["category"], t["weight"] / 1000.0) for t in extra}
        matcher = Matcher(phrases, {}) if phrases else None
        if len(self._extra) >= 10_000:
            self._extra.clear()
        self._extra[service_id] = (extra, matcher)
        return matcher

    def assess(self, text: str, context: Mapping[str, Any]) -> Optional[Assessment]:
        hits = self.matcher.match(text)
        extra = self.extra_matcher(context.get("service_id"), context.get("lexicon_extra"))
        if extra is not None:
            hits.extend(extra.match(text))
        return _assessment(hits, self.name)


# -- per-service settings -------------------------------------------------------------------------
def validate_detectors(value: Any, field: str) -> List[str]:
    """``risk_detectors``: a list of detector names (unknown names are skipped at run time)."""
    if type(value) is not list or len(value) > MAX_DETECTORS or any(
            type(v) is not str or not _NAME.match(v) for v in value):
        raise BadField(f"{field} must be a list of at most {MAX_DETECTORS} detector names "
                       "(lowercase letters, digits, '_', '.', '-')", field)
    return sorted(set(value), key=value.index)


def validate_threshold(value: Any, field: str) -> int:
    """A score threshold in per mille (0..1000) of the 0..1 score: 500 means 0.5.

    Per mille like the triage feature's ``risk_hold_threshold`` (protocol/triage.py), so
    the two thresholds of a service read the same way.
    """
    if type(value) is not int or not 0 <= value <= 1000:
        raise BadField(f"{field} must be an integer 0..1000 (per mille of the risk score)", field)
    return value


def over_threshold(score: float, threshold: Any) -> bool:
    """True if a 0..1 score reaches a per-mille threshold."""
    return type(threshold) is int and round(score * 1000) >= threshold


def validate_extra(value: Any, field: str) -> List[Dict[str, Any]]:
    """``risk_lexicon_extra``: ``[{"phrase": str, "category": CATEGORY, "weight": 1..1000}]``
    (weights in per mille, like every number in frames)."""
    if type(value) is not list or len(value) > MAX_EXTRA_TERMS:
        raise BadField(f"{field} must be a list of at most {MAX_EXTRA_TERMS} terms", field)
    out = []
    for i, term in enumerate(value):
        where = f"{field}[{i}]"
        if type(term) is not dict or set(term) - {"phrase", "category", "weight"}:
            raise BadField(f"{where} must be an object with phrase, category and weight", where)
        phrase = term.get("phrase")
        if type(phrase) is not str or not 1 <= len(phrase) <= MAX_PHRASE_CHARS or not normalise(phrase):
            raise BadField(f"{where}.phrase must be 1..{MAX_PHRASE_CHARS} characters with a letter or digit",
                           f"{where}.phrase")
        category = term.get("category")
        if category not in CATEGORIES:
            raise BadField(f"{where}.category must be one of: {', '.join(CATEGORIES)}", f"{where}.category")
        weight = term.get("weight")
        if type(weight) is not int or not 0 < weight <= 1000:
            raise BadField(f"{where}.weight must be an integer 1..1000 (per mille)", f"{where}.weight")
        out.append({"phrase": phrase, "category": category, "weight": weight})
    return out


register_setting("risk_detectors", ["lexicon"], validate_detectors)
register_setting("risk_alert_threshold", 500, validate_threshold)
# ``risk_hold_threshold`` (per mille, default 800) is registered by protocol/triage.py, whose
# out-of-hours hold rule is its only reader.
register_setting("risk_lexicon_extra", [], validate_extra)


# -- staff operations -------------------------------------------------------------------------
from protocol.frames import (  # noqa: E402
    RequestId, read_int, read_room_id, read_str, register_request,
)
from protocol.ids import RoomID, UserID  # noqa: E402

MAX_ASSESS_CHARS = 4000
MAX_FLAGS_PAGE = 50


@attr.s(frozen=True, slots=True, auto_attribs=True)
class RiskAssess:
    """``risk_assess``: staff try a text against their service's detectors (nothing stored)."""

    id: RequestId
    service_id: RoomID
    text: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class RiskFlags:
    """``risk_flags``: staff list a service's newest flagged events (one member's, optionally)."""

    id: RequestId
    service_id: RoomID
    user_id: Optional[UserID]
    limit: int


def _opt_user(frame: Dict[str, Any]) -> Optional[UserID]:
    value = frame.get("user_id")
    return None if value is None else UserID.parse(value, field="user_id")


register_request("risk_assess", lambda f, rid: RiskAssess(
    rid, read_room_id(f, "service_id"), read_str(f, "text", min_len=1, max_len=MAX_ASSESS_CHARS)))
register_request("risk_flags", lambda f, rid: RiskFlags(
    rid, read_room_id(f, "service_id"), _opt_user(f), read_int(f, "limit", 20, 1, MAX_FLAGS_PAGE)))
