"""Index changes in migrations do not block writers on PostgreSQL, and still run on SQLite."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection


def sql_of(migration: str) -> str:
    out = StringIO()
    call_command("sqlmigrate", "governance", migration, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)  # sqlmigrate may not run inside an atomic block
def test_the_session_index_is_built_and_dropped_concurrently_on_postgresql():
    sql = sql_of("0011")
    if connection.vendor == "postgresql":
        assert 'CREATE INDEX CONCURRENTLY "decision_by_session"' in sql
        assert 'DROP INDEX CONCURRENTLY IF EXISTS "decision_in_session"' in sql
    else:  # the plain operations: SQLite has no CONCURRENTLY
        assert 'CREATE INDEX "decision_by_session"' in sql
        assert 'DROP INDEX "decision_in_session"' in sql
