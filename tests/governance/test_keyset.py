"""Keyset pages of the logs: every row once, in order, both ways, ties broken by id."""

from datetime import UTC, datetime, timedelta

import pytest

from governance.keyset import BadCursor, keyset_page
from governance.models import Decision

pytestmark = pytest.mark.django_db

FIELDS = ("decided_at", "id")


@pytest.fixture
def decisions():
    start = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    # Pairs of rows share a timestamp (microsecond included): the id must break the tie.
    rows = [
        Decision(
            decided_at=start + timedelta(seconds=n // 2, microseconds=7),
            workload="w",
            tool=f"t{n}",
            decision="allow",
            reason_code="allowed",
            policy_version=1,
            latency_us=1,
        )
        for n in range(23)
    ]
    Decision.objects.bulk_create(rows)
    return list(Decision.objects.order_by("-decided_at", "-id"))


def walk_older(size):
    seen, pages, cursor = [], 0, None
    while True:
        page = keyset_page(Decision.objects.all(), fields=FIELDS, size=size, before=cursor)
        seen += page.rows
        pages += 1
        if page.older is None:
            return seen, pages, page
        cursor = page.older


def test_walking_older_sees_every_row_once_in_order(decisions):
    seen, pages, _last = walk_older(5)
    assert [d.id for d in seen] == [d.id for d in decisions]
    assert pages == 5


def test_walking_newer_from_the_oldest_page_comes_back_to_the_first(decisions):
    _seen, _pages, page = walk_older(5)
    assert [d.id for d in page.rows] == [d.id for d in decisions[20:]]
    seen = page.rows
    while page.newer is not None:
        page = keyset_page(Decision.objects.all(), fields=FIELDS, size=5, after=page.newer)
        seen = page.rows + seen
    # Whole pages on the way, ending on the newest page with nothing newer.
    assert [d.id for d in seen] == [d.id for d in decisions]
    assert [d.id for d in page.rows] == [d.id for d in decisions[:5]]


def test_a_page_newer_than_a_cursor_is_the_page_just_above_it(decisions):
    every = Decision.objects.all()
    second = keyset_page(
        every, fields=FIELDS, size=5, before=keyset_page(every, fields=FIELDS, size=5).older
    )
    third = keyset_page(every, fields=FIELDS, size=5, before=second.older)
    assert [d.id for d in third.rows] == [d.id for d in decisions[10:15]]
    page = keyset_page(every, fields=FIELDS, size=5, after=third.newer)
    assert [d.id for d in page.rows] == [d.id for d in decisions[5:10]]
    assert (page.older, page.newer) == (second.older, second.newer)


def test_filters_apply_before_the_page(decisions):
    odd = Decision.objects.filter(tool__in=[f"t{n}" for n in range(1, 23, 2)])
    page = keyset_page(odd, fields=FIELDS, size=4)
    assert [d.tool for d in page.rows] == ["t21", "t19", "t17", "t15"]
    page = keyset_page(odd, fields=FIELDS, size=4, before=page.older)
    assert [d.tool for d in page.rows] == ["t13", "t11", "t9", "t7"]


@pytest.mark.parametrize(
    "cursor",
    [
        "x",
        "1-2-3",
        "-5-1",
        "99999999999999999999999-1",
        "1-" + "9" * 30,
        "1-" + "9" * 20,
        "²-1",  # str.isdigit() says yes, int() says no
        "1-²",
        "\N{ARABIC-INDIC DIGIT ONE}-1",
        " 1-1",
    ],
)
def test_a_cursor_that_is_not_ours_is_refused(decisions, cursor):
    with pytest.raises(BadCursor):
        keyset_page(Decision.objects.all(), fields=FIELDS, size=5, before=cursor)
