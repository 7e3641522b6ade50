"""Offline text-similarity scorers for intent drift, behind one small interface.

`MANDATE_DRIFT_SCORER` names the class to use (a dotted path); the default is a term-frequency
cosine over word tokens. Anything with `score(a, b) -> float in [0, 1]` fits, e.g. an embedding
model kept on the machine.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Protocol

_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "please",
        "that",
        "the",
        "their",
        "them",
        "then",
        "this",
        "to",
        "was",
        "we",
        "were",
        "will",
        "with",
        "you",
        "your",
    ]
)


def tokens(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


class SimilarityScorer(Protocol):
    def score(self, a: str, b: str) -> float: ...


class TfCosineScorer:
    """Cosine of the two texts' term-frequency vectors (light suffix stemming)."""

    @staticmethod
    def _stem(word: str) -> str:
        for suffix in ("ing", "ed", "es", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                return word[: -len(suffix)]
        return word

    def score(self, a: str, b: str) -> float:
        va = Counter(self._stem(w) for w in tokens(a))
        vb = Counter(self._stem(w) for w in tokens(b))
        if not va or not vb:
            return 0.0
        dot = sum(va[w] * vb[w] for w in va.keys() & vb.keys())
        norm = math.sqrt(sum(v * v for v in va.values())) * math.sqrt(
            sum(v * v for v in vb.values())
        )
        return dot / norm if norm else 0.0


class TokenSetScorer:
    """Jaccard overlap of the two texts' word sets."""

    def score(self, a: str, b: str) -> float:
        sa, sb = set(tokens(a)), set(tokens(b))
        if not sa or not sb:
            return 0.0
        return len(sa & sb) / len(sa | sb)


def scorer_from_settings() -> SimilarityScorer:
    from django.conf import settings
    from django.utils.module_loading import import_string

    path = getattr(settings, "MANDATE_DRIFT_SCORER", "governance.evaluation.scoring.TfCosineScorer")
    return import_string(path)()
