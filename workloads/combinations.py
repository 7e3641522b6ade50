"""Pure combination-rule matching: plain data in, plain results out (no ORM).

A rule is a list of groups; each group lists alternatives, each a capability class or
`tool:<slug>`. A set of tools trips the rule when every group is matched by some tool.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RuleSpec:
    slug: str
    name: str
    groups: tuple[frozenset[str], ...]
    effect: str
    scope: str


def _labels(tool_slug: str, capability: str) -> set[str]:
    return {capability, f"tool:{tool_slug}"}


def rule_tripped(rule: RuleSpec, tools: Mapping[str, str]) -> bool:
    """`tools` maps tool slug → capability class."""
    labels: set[str] = set()
    for slug, capability in tools.items():
        labels |= _labels(slug, capability)
    return all(group & labels for group in rule.groups)


def rules_tripped(rules: Iterable[RuleSpec], tools: Mapping[str, str]) -> list[RuleSpec]:
    return [rule for rule in rules if rule_tripped(rule, tools)]


def rules_completed_by(
    rules: Iterable[RuleSpec], before: Mapping[str, str], added: Mapping[str, str]
) -> list[RuleSpec]:
    """Rules that `added` tools trip together with `before`, and that `before` alone did not."""
    combined = {**before, **added}
    return [r for r in rules if rule_tripped(r, combined) and not rule_tripped(r, before)]


def tool_matches_every_group(groups: Iterable[Iterable[str]], slug: str, capability: str) -> bool:
    labels = _labels(slug, capability)
    return all(set(group) & labels for group in groups)


def tripped_alone(groups: Iterable[Iterable[str]], tools: Mapping[str, str]) -> str | None:
    """A tool that alone matches every group (`tools`: slug → capability class), or a
    capability class any tool of which would: such a rule forbids a tool, not a combination,
    and would refuse every request for it. Returns what it is, or None."""
    sets = [set(group) for group in groups]
    classes = {label for group in sets for label in group if not label.startswith("tool:")}
    candidates = [({c}, f"Any {c.replace('_', ' ')} tool") for c in sorted(classes)]
    candidates += [(_labels(slug, c), f"The tool {slug}") for slug, c in sorted(tools.items())]
    for labels, name in candidates:
        if all(group & labels for group in sets):
            return name
    return None


def parse_groups(text: str, known_labels: set[str]) -> list[list[str]]:
    """Form input: one group per line, alternatives separated by commas or `|`."""
    groups = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        items = [item.strip() for item in line.replace("|", ",").split(",") if item.strip()]
        if not items:
            continue
        unknown = [item for item in items if item not in known_labels]
        if unknown:
            raise ValueError(f"Line {line_number}: unknown {', '.join(unknown)}")
        groups.append(sorted(set(items)))
    if len(groups) < 2:
        raise ValueError("A rule needs at least two groups that must not meet.")
    return groups
