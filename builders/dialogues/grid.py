"""The topic x country grid: two YAML files of data (``grid/topics.yaml``, ``grid/countries.yaml``) and the
(topic, country, seed) cells sampled from them.

A cell's seed is derived from (topic, country, index) and the run's base seed, so a cell always gets the same seed
whatever else is in the run, and its ``source_id`` (a hash of topic, country, index and prompt version) is stable:
the same cell generated twice is the same conversation id.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

GRID_DIR = Path(__file__).resolve().parent / "grid"
TOPIC_FIELDS = ("key", "name_en", "name_ar", "description_en", "description_ar")
COUNTRY_FIELDS = ("key", "iso2", "name_en", "name_ar", "region", "arab_league", "dialect_en", "dialect_ar",
                  "dialect_code")
MSA_CODE = "arb"  # ISO 639-3 Standard Arabic
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class GridError(ValueError):
    """A grid file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Topic:
    key: str
    name_en: str
    name_ar: str
    description_en: str
    description_ar: str


@dataclass(frozen=True)
class Country:
    key: str
    iso2: str
    name_en: str
    name_ar: str
    region: str
    arab_league: bool
    dialect_en: str
    dialect_ar: str
    dialect_code: str

    @property
    def is_msa(self) -> bool:
        return self.dialect_code == MSA_CODE


@dataclass(frozen=True)
class Cell:
    """One conversation to generate: a topic, a country and the index of the conversation in that pair."""

    topic: Topic
    country: Country
    index: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.topic.key}/{self.country.key}/{self.index}"


def _load(path: Path, list_key: str, fields: tuple[str, ...], cls):
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise GridError(f"{path}: cannot read: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get(list_key), list):
        raise GridError(f"{path}: expected a mapping with a '{list_key}' list")
    items, seen = [], set()
    for i, raw in enumerate(doc[list_key]):
        where = f"{path.name} entry {i} ({raw.get('key', '?') if isinstance(raw, dict) else repr(raw)})"
        if not isinstance(raw, dict):
            raise GridError(f"{where}: expected a mapping")
        missing = [f for f in fields if raw.get(f) is None or (isinstance(raw.get(f), str) and not raw[f].strip())]
        if missing:
            raise GridError(f"{where}: missing or empty {missing}")
        extra = sorted(set(raw) - set(fields))
        if extra:
            raise GridError(f"{where}: unknown fields {extra}")
        if not _KEY.match(str(raw["key"])):
            raise GridError(f"{where}: key must be snake_case ascii")
        if raw["key"] in seen:
            raise GridError(f"{where}: duplicate key '{raw['key']}'")
        seen.add(raw["key"])
        items.append(cls(**{f: raw[f] for f in fields}))
    return items


@lru_cache(maxsize=8)
def load_topics(path: str | Path | None = None) -> tuple[Topic, ...]:
    return tuple(_load(Path(path) if path else GRID_DIR / "topics.yaml", "topics", TOPIC_FIELDS, Topic))


@lru_cache(maxsize=8)
def load_countries(path: str | Path | None = None) -> tuple[Country, ...]:
    return tuple(_load(Path(path) if path else GRID_DIR / "countries.yaml", "countries", COUNTRY_FIELDS, Country))


def _pick(items, keys: list[str] | None, what: str):
    if not keys:
        return list(items)
    by_key = {x.key: x for x in items}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise GridError(f"unknown {what} {unknown}; known: {sorted(by_key)[:10]}...")
    return [by_key[k] for k in keys]


def cell_seed(base_seed: int, topic: str, country: str, index: int) -> int:
    digest = hashlib.sha256(f"{base_seed}\x1f{topic}\x1f{country}\x1f{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")  # 32 bits: what every backend's seed accepts


def make_cells(per_cell: int = 1, seed: int = 0, topics: list[str] | None = None, countries: list[str] | None = None,
               max_cells: int | None = None, topics_file: str | None = None,
               countries_file: str | None = None) -> list[Cell]:
    """Every (topic, country) pair x ``per_cell`` conversations, or a seeded random sample of ``max_cells`` pairs.

    The order is deterministic (topic, country, index), so a run can be split into datatrove tasks by position.
    """
    if per_cell < 1:
        raise GridError(f"--per-cell must be at least 1, not {per_cell}")
    ts = _pick(load_topics(topics_file), topics, "topics")
    cs = _pick(load_countries(countries_file), countries, "countries")
    pairs = [(t, c) for t in ts for c in cs]
    if max_cells is not None and max_cells < len(pairs):
        pairs = [pairs[i] for i in sorted(random.Random(seed).sample(range(len(pairs)), max_cells))]
    return [Cell(t, c, i, cell_seed(seed, t.key, c.key, i)) for t, c in pairs for i in range(per_cell)]
