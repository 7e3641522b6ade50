"""Index changes that do not stop writes to a busy table.

A plain CREATE INDEX holds a lock that blocks every INSERT into the table while it builds:
on the decision log or the usage events that means the writers queue for minutes. On
PostgreSQL these build and drop indexes CONCURRENTLY (the migration must say
`atomic = False`); elsewhere (SQLite, the embedded default) they are the plain operations.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db.migrations.operations import AddIndex, RemoveIndex


def _postgresql(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


class AddIndexOnline(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgresql(schema_editor):
            return AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)
        return super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgresql(schema_editor):
            return AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
        return super().database_backwards(app_label, schema_editor, from_state, to_state)


class RemoveIndexOnline(RemoveIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgresql(schema_editor):
            return RemoveIndex.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )
        return super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgresql(schema_editor):
            return RemoveIndex.database_backwards(
                self, app_label, schema_editor, from_state, to_state
            )
        return super().database_backwards(app_label, schema_editor, from_state, to_state)
