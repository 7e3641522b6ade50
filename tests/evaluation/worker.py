"""A real Celery worker as a subprocess, against the test database and a Redis broker db."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

BROKER_URL = os.environ.get("MANDATE_TEST_BROKER_URL", "redis://127.0.0.1:6379/14")
ROOT = Path(__file__).resolve().parents[2]


def redis_reachable(url: str = BROKER_URL) -> bool:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return False
    return True


def flush_broker(url: str = BROKER_URL) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def database_url_for_worker() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"Timed out waiting for {what}")


class Worker:
    def __init__(self, process: subprocess.Popen, log: Path):
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def kill_child(self) -> int:
        (pid,) = self.children()
        os.kill(pid, signal.SIGKILL)
        return pid


@contextmanager
def celery_worker(concurrency: int = 1):
    """Start `celery -A governance worker` on the broker db; stop it (and only it) after."""
    log = Path(tempfile.mkstemp(prefix="mandate-worker-", suffix=".log")[1])
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_worker(),
        "DATABASE_POOL": "0",
        "CELERY_BROKER_URL": BROKER_URL,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "worker-test-secret-key-0123456789-abcdefghij"),
        "MANDATE_SWEEP_GRACE_SECONDS": "0",
    }
    env.pop("DATABASE_TEST_NAME", None)
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "governance",
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, log)
    try:
        wait_for(lambda: "ready." in worker.output(), timeout=60, what="the worker to start")
        yield worker
    except BaseException:
        print(worker.output()[-4000:])
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)


@contextmanager
def broker(url: str):
    """Point this process's Celery app at another broker for a while."""
    from governance.celery import app

    # Celery reads CELERY_BROKER_URL from the environment before its own config.
    saved, saved_env = app.conf.broker_url, os.environ.get("CELERY_BROKER_URL")
    # Shared tasks publish through the *current* app, and another test may have made a Celery
    # app of its own current: make ours current again.
    app.set_current()
    app.conf.broker_url = url
    os.environ["CELERY_BROKER_URL"] = url
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield app
    finally:
        app.conf.broker_url = saved
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        app._pool = None
        app.amqp._producer_pool = None
