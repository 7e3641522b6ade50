"""Intent drift: the final action against the original request and the declared purpose.

Three signals, any of which fires the finding (the finding lists which did):
- capability: the final action's capability class is one neither the request nor the purpose
  asks for (from the action's tool, else from words in the action);
- targets: e-mail addresses, domains or paths in the action that appear in neither text;
- similarity: the pluggable scorer rates the action below the configured minimum against both.
"""

from __future__ import annotations

import re
from datetime import datetime

from governance.evaluation.detectors.severity import severity_for
from governance.evaluation.detectors.types import FindingDraft, PolicySnapshot
from governance.evaluation.scoring import SimilarityScorer, TfCosineScorer, tokens

# Words that show a text asks for (or an action does) something of a capability class.
CAPABILITY_WORDS: dict[str, frozenset[str]] = {
    "web_access": frozenset(
        ["web", "internet", "online", "browse", "search", "url", "website", "http", "https"]
    ),
    "file_read": frozenset(
        ["file", "files", "document", "documents", "read", "open", "attachment", "attachments"]
    ),
    "file_write": frozenset(["write", "save", "overwrite", "delete", "upload", "store"]),
    "code_execution": frozenset(
        ["execute", "run", "script", "code", "shell", "command", "compute", "python"]
    ),
    "downstream_api": frozenset(
        ["api", "crm", "ticket", "tickets", "update", "record", "records", "system"]
    ),
    "messaging": frozenset(
        [
            "email",
            "emails",
            "mail",
            "send",
            "message",
            "messages",
            "notify",
            "slack",
            "sms",
            "reply",
            "replies",
            "post",
            "forward",
        ]
    ),
    "data_store": frozenset(["database", "sql", "query", "warehouse", "table", "tables", "report"]),
}

# Starting only where an address can start (not inside a run of name characters): without
# the lookbehind the pattern backtracked quadratically over a long run. No length bounds, so
# an overlong local part (a way to smuggle data out) is still found.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# What cannot be part of an address: pieces between these are the candidates.
_NOT_ADDRESS = re.compile(r"[^\w.+@-]+")
_URL = re.compile(r"https?://([\w.-]+)", re.IGNORECASE)
_PATH = re.compile(r"(?<![\w/])/(?:[\w.-]+/)+[\w.-]+")


_SUFFIXES = (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""))


# The irregular past forms of the listed verbs, which no suffix rule reaches: "sent the
# file" must count as sending. ("read" is its own past.)
_IRREGULAR = {
    "sent": "send",
    "wrote": "write",
    "written": "write",
    "overwrote": "overwrite",
    "overwritten": "overwrite",
    "ran": "run",
}


def stem(word: str) -> str:
    """A crude English stem, applied alike to the vocabulary and the text, so "emailed",
    "searching", "deletes" and "replies" count as the words listed; without it the capability
    signal saw only the exact forms."""
    word = _IRREGULAR.get(word, word)
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + replacement
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # running -> runn -> run
    return word


_CAPABILITY_STEMS: dict[str, frozenset[str]] = {
    cls: frozenset(stem(word) for word in vocabulary)
    for cls, vocabulary in CAPABILITY_WORDS.items()
}


def capabilities_named(text: str) -> set[str]:
    words = {stem(word) for word in tokens(text)}
    return {cls for cls, vocabulary in _CAPABILITY_STEMS.items() if words & vocabulary}


def emails_in(text: str) -> set[str]:
    """Addresses in client-written text (compact JSON, paths and punctuation included). The
    pattern only reads the pieces holding an "@", so a long run of text without one costs a
    split, not a scan."""
    return {
        match.lower()
        for piece in _NOT_ADDRESS.split(text)
        if "@" in piece
        for match in _EMAIL.findall(piece)
    }


def targets_in(text: str) -> set[str]:
    found = emails_in(text)
    found |= {m.lower() for m in _URL.findall(text)}
    found |= set(_PATH.findall(text))
    return found


def check_drift(
    *,
    request: str,
    purpose: str,
    action: str,
    action_capability: str,
    policy: PolicySnapshot,
    event_id: int,
    moment: datetime,
    scorer: SimilarityScorer | None = None,
    tool: str = "",
) -> FindingDraft | None:
    if not action.strip() or not request.strip():
        return None
    scorer = scorer or TfCosineScorer()
    signals: list[str] = []
    details: dict = {}

    allowed = capabilities_named(request) | capabilities_named(purpose) | {"generation"}
    used = {action_capability} if action_capability else capabilities_named(action)
    outside = sorted(used - allowed)
    if outside:
        signals.append("capability")
        details["capabilities_outside_request"] = outside

    known_text = f"{request}\n{purpose}".lower()
    new_targets = sorted(t for t in targets_in(action) if t.lower() not in known_text)
    if new_targets:
        signals.append("targets")
        details["targets_outside_request"] = new_targets[:20]

    similarity = max(scorer.score(request, action), scorer.score(purpose, action))
    details["similarity"] = round(similarity, 3)
    details["min_similarity"] = policy.drift_min_similarity
    if similarity < policy.drift_min_similarity:
        signals.append("similarity")

    if not signals:
        return None
    details["signals"] = signals
    return FindingDraft(
        kind="intent_drift",
        key="intent_drift",
        severity=severity_for("intent_drift", policy.tier_position),
        summary=f"The final action drifted from the request ({', '.join(signals)}).",
        evidence=(event_id,),
        occurred_at=moment,
        tool=tool,
        details=details,
    )
