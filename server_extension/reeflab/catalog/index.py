"""Search over the catalogue: free text, facet filters with counts, sorting and pages.

A `CatalogIndex` is built once from the entries and rebuilt when the catalogue is refreshed; it never
changes afterwards, so one index can serve concurrent searches and be swapped for a new one atomically.

Sets of entries are Python ints used as bitsets: entry i is bit i, and entries are numbered in title
order. AND, OR and bit_count() over a few hundred machine words answer "which entries" and "how many"
at C speed, and reading bits from the low end lists entries by title. Precomputed: a bitset per word
(where it occurs at all, and in the title, the tags, the summary), one per facet value, the counts of
every facet value, and the order by last update. The bench catalogue of 10,000 modules takes about 35 MB.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date
from functools import lru_cache, reduce
from itertools import chain, islice
from operator import and_, or_
from typing import Any

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from ..errors import BadRequest
from .models import FACETS, ModuleEntry

SORTS = ("relevance", "title", "updated")
MAX_PER_PAGE = 100
MAX_QUERY_CHARS = 500
# What a query word found in an entry earns it (times the word's rarity, idf): 1 for being anywhere
# (title, summary, tags, module id or description), plus these for the fields that say most about a module.
BONUS = {"title": 7.0, "tags": 3.0, "summary": 1.0}
# A word that only starts with the last query word ("plankton" for "plank") earns this share of the word itself.
PREFIX_FACTOR = 0.75
# Words a query may contain that need not be found (except as the last word, which may be unfinished).
STOPWORDS = frozenset("a an and are as at by for from in into is of on or the to with".split())

_WORD = re.compile(r"[^\W_]+")
_URL = re.compile(r"https?://\S+|www\.\S+")


class FacetCount(TypedDict):
    value: str  # as spelled in the catalogue (its most common spelling)
    count: int  # entries with it among those matching the query and the other facets' filters


class SearchResult(BaseModel):
    total: int = Field(description="Entries matching the query and all filters")
    page: int
    per_page: int
    pages: int = Field(description="Number of pages of results; 0 when nothing matches")
    items: list[ModuleEntry] = Field(description="This page's entries, in the requested order")
    facets: dict[str, list[FacetCount]] = Field(
        description="Per facet: values with counts, by count descending then value; selected values always listed"
    )


# the combining accents that decomposing Latin, Greek and Cyrillic letters leaves (other scripts keep their marks)
_ACCENTS = dict.fromkeys(
    cp
    for lo, hi in ((0x300, 0x370), (0x1AB0, 0x1B00), (0x1DC0, 0x1E00), (0x20D0, 0x2100), (0xFE20, 0xFE30))
    for cp in range(lo, hi)
    if unicodedata.combining(chr(cp))
)


def fold(text: str) -> str:
    """Lower case without accents: 'Écologie Marine' -> 'ecologie marine'."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKD", text).translate(_ACCENTS).casefold()


@lru_cache(maxsize=65536)
def _word(token: str) -> str:
    """Light plural folding, the same on both sides: 'models' -> 'model', 'images' -> 'image'."""
    if len(token) > 3 and token[-1] == "s" and token[-2].isalpha() and token[-2] not in "sui":
        return token[:-1]
    return token


def words(text: str) -> list[str]:
    """The searchable words of a text, in order."""
    return [_word(t) for t in _WORD.findall(fold(text))]


@lru_cache(maxsize=4096)
def _clean_value(raw: str) -> tuple[str, str]:
    """A facet value with its spacing tidied, and the key it compares by: case, accents and spacing do not matter."""
    value = " ".join(raw.split())
    return value, fold(value)


def _text(value: Any) -> str:
    """Text of a metadata field that may be malformed (the entry can be invalid)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return " ".join(v for v in value if isinstance(v, str))
    return ""


def _updated(entry: ModuleEntry) -> str:
    """ISO date the entry was last updated (or created); '' when missing or not a date."""
    dates = entry.metadata.get("dates")
    if not isinstance(dates, dict):
        return ""
    for key in ("updated", "created"):
        value = dates.get(key)
        if isinstance(value, date):
            return value.isoformat()[:10]
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()[:10]).isoformat()
            except ValueError:
                continue
    return ""


# the positions of the set bits of each byte value
_BYTE_BITS = tuple(tuple(j for j in range(8) if byte >> j & 1) for byte in range(256))


def _bitset(positions: list[int]) -> int:
    """The bitset of the given entry positions."""
    if not positions:
        return 0
    data = bytearray((max(positions) >> 3) + 1)
    for pos in positions:
        data[pos >> 3] |= 1 << (pos & 7)
    return int.from_bytes(data, "little")


def _members(bits: int, limit: int | None = None) -> list[int]:
    """Positions of the set bits, ascending (so in title order); only the first `limit` if given."""
    found: list[int] = []
    for i, byte in enumerate(bits.to_bytes((bits.bit_length() + 7) >> 3, "little")):
        if byte:
            found += [(i << 3) + j for j in _BYTE_BITS[byte]]
            if limit is not None and len(found) >= limit:
                return found[:limit]
    return found


# A query word's matches: every entry holding it, and (entries, weight) pairs adding up to what sets entries
# apart (a weight every match earns alike changes no order and is left out).
_Term = tuple[int, tuple[tuple[int, float], ...]]


class CatalogIndex:
    """Immutable search index over a list of module entries."""

    def __init__(self, entries: Iterable[ModuleEntry]):
        entries = list(entries)
        seen: set[str] = set()
        for entry in entries:
            if entry.id in seen:
                raise ValueError(f"module id {entry.id!r} appears twice in the catalogue")
            seen.add(entry.id)
        # positions are title order: the lowest bits of a result come first when sorting by title
        self._entries = tuple(sorted(entries, key=lambda e: (fold(e.title), e.title, e.id)))
        self._by_id = {entry.id: pos for pos, entry in enumerate(self._entries)}
        self._all = (1 << len(self._entries)) - 1
        self._build_text()
        self._build_facets()
        updated = [_updated(e) for e in self._entries]
        # newest first, undated last, same date by title (the sort is stable, also when reversed)
        self._by_updated = sorted(range(len(self._entries)), key=updated.__getitem__, reverse=True)
        self._updated_rank = [0] * len(self._entries)
        for rank, pos in enumerate(self._by_updated):
            self._updated_rank[pos] = rank
        self._term = lru_cache(maxsize=256)(self._make_term)

    def _build_text(self) -> None:
        # token -> positions of the entries holding it anywhere, then in the title, the tags (and id), the summary
        postings: dict[str, tuple[list[int], list[int], list[int], list[int]]] = {}
        for pos, entry in enumerate(self._entries):
            meta = entry.metadata
            title = set(words(entry.title))
            tags = set(words(f"{_text(meta.get('tags'))} {entry.id}"))
            summary = set(words(entry.summary))
            anywhere = title | tags | summary | set(words(_URL.sub(" ", _text(meta.get("description")))))
            for token in anywhere:
                slots = postings.get(token)
                if slots is None:
                    slots = postings[token] = ([], [], [], [])
                slots[0].append(pos)
            for field, tokens in enumerate((title, tags, summary), start=1):
                for token in tokens:
                    postings[token][field].append(pos)
        self._vocab = sorted(postings)
        self._postings = {t: tuple(map(_bitset, slots)) for t, slots in postings.items()}

    def _build_facets(self) -> None:
        self._facet_bits: dict[str, dict[str, int]] = {}
        self._facet_keys: dict[str, list[tuple[str, ...]]] = {}  # per entry, its values' keys
        self._display: dict[str, dict[str, str]] = {}
        for facet in FACETS:
            spellings: dict[str, Counter[str]] = {}
            positions: dict[str, list[int]] = {}
            keys_of = self._facet_keys[facet] = []
            shared: dict[tuple[str, ...], tuple[str, ...]] = {}  # entries with the same values share one tuple
            for pos, entry in enumerate(self._entries):
                keys: dict[str, None] = {}
                for raw in entry.facet_values(facet):
                    value, key = _clean_value(raw)
                    if key:
                        spellings.setdefault(key, Counter())[value] += 1
                        keys[key] = None
                for key in keys:
                    positions.setdefault(key, []).append(pos)
                keys_of.append(shared.setdefault(tuple(keys), tuple(keys)))
            self._facet_bits[facet] = {k: _bitset(p) for k, p in positions.items()}
            # shown with the most common spelling; ties go to the first in code-point order
            self._display[facet] = {k: min(c, key=lambda s, c=c: (-c[s], s)) for k, c in spellings.items()}
        self._value_order = {
            f: {k: i for i, k in enumerate(sorted(d, key=lambda k, d=d: (fold(d[k]), d[k])))}
            for f, d in self._display.items()
        }
        self._all_counts = {f: {k: b.bit_count() for k, b in self._facet_bits[f].items()} for f in FACETS}
        self._values_per_entry = {f: sum(map(len, self._facet_keys[f])) / max(1, len(self._entries)) for f in FACETS}

    # -- lookups

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, module_id: str) -> ModuleEntry | None:
        pos = self._by_id.get(module_id)
        return None if pos is None else self._entries[pos]

    # -- searching

    def search(
        self,
        query: str = "",
        filters: Mapping[str, list[str]] | None = None,
        sort: str = "relevance",
        page: int = 1,
        per_page: int = 20,
        facet_limit: int | None = None,
    ) -> SearchResult:
        """Entries matching every word of `query` and the filters (OR within a facet, AND across facets).

        The last query word also matches longer words it starts ("plank" finds "plankton"). Facet counts
        for each facet are over the entries matching the query and the *other* facets' filters, so the
        alternatives to a selected value keep their counts. `facet_limit` keeps the most frequent values
        per facet (selected values are always listed). Raises BadRequest on arguments a user can fix.
        """
        _check_page(page, per_page)
        if sort not in SORTS:
            raise BadRequest(f"Unknown sort {sort!r}. Sort by one of: {', '.join(SORTS)}.")
        if facet_limit is not None and (isinstance(facet_limit, bool) or not isinstance(facet_limit, int)):
            raise BadRequest(f"facet_limit must be a whole number of 1 or more (got {facet_limit!r}).")
        if facet_limit is not None and facet_limit < 1:
            raise BadRequest(f"facet_limit must be a whole number of 1 or more (got {facet_limit!r}).")
        wanted = _parse_filters(filters)
        terms = self._query_terms(query)
        text = reduce(and_, (bits for bits, _ in terms), self._all)
        selected = {f: reduce(or_, (self._facet_bits[f].get(k, 0) for k in keys), 0) for f, keys in wanted.items()}
        results = reduce(and_, selected.values(), text)

        facets = {}
        for facet in FACETS:
            base = results
            if facet in selected:
                base = reduce(and_, (bits for f, bits in selected.items() if f != facet), text)
            facets[facet] = self._facet_counts(facet, self._count(facet, base), wanted.get(facet, {}), facet_limit)

        total = results.bit_count()
        start, stop = (page - 1) * per_page, page * per_page
        if sort == "relevance" and terms:
            positions = self._by_relevance(terms, results, start, stop)
        elif sort == "updated":
            positions = self._by_update(results, total, start, stop)
        else:
            positions = _members(results, stop)[start:]
        return SearchResult.model_construct(
            total=total,
            page=page,
            per_page=per_page,
            pages=math.ceil(total / per_page),
            items=[self._entries[p] for p in positions],
            facets=facets,
        )

    def _query_terms(self, query: str) -> list[_Term]:
        if query is None:
            return []
        if not isinstance(query, str):
            raise BadRequest("The search text must be a string.")
        if len(query) > MAX_QUERY_CHARS:
            raise BadRequest(f"The search text is too long ({len(query)} characters); use at most {MAX_QUERY_CHARS}.")
        tokens = words(query)
        if not tokens:
            return []
        *leading, last = tokens
        leading = [t for t in dict.fromkeys(leading) if t not in STOPWORDS]
        return [self._term(t, False) for t in leading] + [self._term(last, True)]

    def _make_term(self, token: str, prefix: bool) -> _Term:
        """Entries matching one query word, with the weights it earns them."""
        exact = self._postings.get(token)
        matched = [token] if exact else []
        if prefix:
            lo = bisect_left(self._vocab, token)
            matched = self._vocab[lo : bisect_left(self._vocab, token + "\U0010ffff", lo)]
        if not matched:
            return 0, ()
        if len(matched) == 1:  # the word itself, or the only word starting with it
            found = self._postings[matched[0]]
            idf = math.log(1 + len(self._entries) / found[0].bit_count())
            factor = 1.0 if exact else PREFIX_FACTOR
            return found[0], tuple((found[i], w * idf * factor) for i, w in enumerate(BONUS.values(), 1) if found[i])
        # several words start with it: the word itself earns its full weight, the longer ones a share of it
        found = tuple(reduce(or_, (self._postings[t][i] for t in matched)) for i in range(len(BONUS) + 1))
        idf = math.log(1 + len(self._entries) / found[0].bit_count())
        weighted = [(found[i], w * idf * PREFIX_FACTOR) for i, w in enumerate(BONUS.values(), 1) if found[i]]
        if exact:
            share = idf * (1 - PREFIX_FACTOR)
            weighted.append((exact[0], share))
            weighted += [(exact[i], w * share) for i, w in enumerate(BONUS.values(), 1) if exact[i]]
        return found[0], tuple(weighted)

    def _count(self, facet: str, base: int) -> Mapping[str, int]:
        """Value -> number of entries in `base` with it."""
        if base == self._all:
            return self._all_counts[facet]
        values = self._facet_bits[facet]
        size = base.bit_count()
        if size * (1 + self._values_per_entry[facet]) < len(values):  # few entries, many values: read entries
            keys_of = self._facet_keys[facet]
            return Counter(chain.from_iterable(keys_of[p] for p in _members(base)))
        counts = {}
        if size:
            for key, bits in values.items():
                if count := (base & bits).bit_count():
                    counts[key] = count
        return counts

    def _facet_counts(
        self, facet: str, counts: Mapping[str, int], chosen: Mapping[str, str], limit: int | None
    ) -> list[FacetCount]:
        order = self._value_order[facet]
        keys = sorted(counts, key=lambda k: (-counts[k], order[k]))
        if limit is not None and len(keys) > limit:
            keys = keys[:limit] + [k for k in keys[limit:] if k in chosen]
        display = self._display[facet]
        rows = [FacetCount(value=display[k], count=counts[k]) for k in keys]
        # a selected value stays visible (with 0 when nothing has it) so the user can unselect it
        listed = set(keys)
        missing = sorted((display.get(k, raw) for k, raw in chosen.items() if k not in listed), key=fold)
        return rows + [FacetCount(value=value, count=0) for value in missing]

    def _by_relevance(self, terms: list[_Term], results: int, start: int, stop: int) -> list[int]:
        """Highest score first, then by title."""
        # split the results into buckets of equal score, one weighted set after the other (scores are
        # rounded so that equal sums reached in a different order share a bucket, then go by title)
        buckets = {0.0: results}
        for _, weighted in terms:
            for bits, weight in weighted:
                split: dict[float, int] = {}
                for score, members in buckets.items():
                    if inside := members & bits:
                        more = round(score + weight, 9)
                        split[more] = split.get(more, 0) | inside
                        members ^= inside
                    if members:
                        split[score] = split.get(score, 0) | members
                buckets = split
        page: list[int] = []
        skip, want = start, stop - start
        for score in sorted(buckets, reverse=True):
            members = buckets[score]
            size = members.bit_count()
            if skip >= size:
                skip -= size
                continue
            page += _members(members, skip + want - len(page))[skip:]
            skip = 0
            if len(page) >= want:
                break
        return page

    def _by_update(self, results: int, total: int, start: int, stop: int) -> list[int]:
        """Newest first, then by title."""
        if total * 16 >= len(self._entries):  # dense: walk the precomputed order, stop at the page's end
            data = results.to_bytes((len(self._entries) + 7) >> 3, "little")
            found = (p for p in self._by_updated if data[p >> 3] >> (p & 7) & 1)
            return list(islice(found, start, stop))
        return sorted(_members(results), key=self._updated_rank.__getitem__)[start:stop]


def _check_page(page: Any, per_page: Any) -> None:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise BadRequest(f"page must be a whole number of 1 or more (got {page!r}).")
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
        raise BadRequest(f"per_page must be a whole number from 1 to {MAX_PER_PAGE} (got {per_page!r}).")


def _parse_filters(filters: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """facet -> {folded value: value as given}; facets without values are left out."""
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise BadRequest("Filters must map a facet name to a list of values, e.g. {'tasks': ['Classification']}.")
    wanted: dict[str, dict[str, str]] = {}
    for facet, values in filters.items():
        if facet not in FACETS:
            close = difflib.get_close_matches(str(facet), FACETS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise BadRequest(f"Unknown filter {facet!r}.{hint} Filter on one of: {', '.join(FACETS)}.")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list | tuple | set | frozenset) or not all(isinstance(v, str) for v in values):
            raise BadRequest(f"Filter {facet!r} needs a list of values, e.g. {{{facet!r}: ['a value']}}.")
        keys = {key: value for value, key in map(_clean_value, values) if key}
        if keys:
            wanted[facet] = keys
    return wanted
