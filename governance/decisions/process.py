"""This process's id, kept current across forks without a getpid() call on the hot path.

Threads (the decision log writer, the version listener) do not survive a fork: the runtime
and the log compare `process.pid` with the pid they started in to know when to start anew.
"""

import os

pid = os.getpid()


def _forked() -> None:
    global pid
    pid = os.getpid()


os.register_at_fork(after_in_child=_forked)
