"""Request ids: the caller's when usable, else new ones that never repeat across workers."""

import os
import re

import pytest

from governance.request_id import request_id_for


def test_a_printable_incoming_id_is_kept_up_to_the_logs_column_size():
    assert request_id_for({"HTTP_X_REQUEST_ID": "trace-42"}) == "trace-42"
    assert request_id_for({"HTTP_X_REQUEST_ID": "x" * 100}) == "x" * 64


@pytest.mark.parametrize("incoming", [None, "", "bad\nid", "tab\there"])
def test_a_missing_or_unprintable_id_is_replaced(incoming):
    meta = {} if incoming is None else {"HTTP_X_REQUEST_ID": incoming}
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_for(meta))


def test_new_ids_do_not_repeat():
    assert len({request_id_for({}) for _ in range(10_000)}) == 10_000


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_forked_workers_do_not_repeat_each_others_ids():
    """gunicorn forks its workers from one process: each must draw its own ids."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, request_id_for({}).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 32 and child != request_id_for({})
