"""The pytest plugin as a user's project meets it: its own namespace per test, and the
Django ``TestCase`` + ``captureOnCommitCallbacks`` + ``drain()`` pattern on SQLite's
in-memory test database (issue 16). Each runs pytest in a subprocess on a small project."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SETTINGS = """
SECRET_KEY = "plugin-test"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "redrelay.contrib.django", "shop"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "shop.sqlite3"}}
REDRELAY = {"default": {"OPTIONS": {"retries": 0}}, "audit": {}}
"""

CONSUMERS = """
from django.contrib.contenttypes.models import ContentType
from redrelay.contrib.django import consumer, enqueue_on_commit

seen = []
receipts = []

@consumer("orders")
def order(message):
    model = ContentType.objects.get(pk=message.body["pk"]).model
    seen.append(model)
    enqueue_on_commit("receipts", {"model": model})

@consumer("receipts")
def receipt(message):
    receipts.append(message.body["model"])
"""

CONFTEST = """
import pytest

@pytest.fixture(autouse=True)
def _redrelay(django_redrelay):
    return django_redrelay
"""

TESTS = """
import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import TestCase

from redrelay.contrib.django import enqueue_on_commit, get_relay
from shop import consumers


class OrderTests(TestCase):
    def setUp(self):
        consumers.seen.clear()
        consumers.receipts.clear()

    def test_the_handler_sees_the_tests_uncommitted_rows(self):
        with self.captureOnCommitCallbacks(execute=True):
            with transaction.atomic():
                row = ContentType.objects.create(app_label="shop", model="order1")
                enqueue_on_commit("orders", {"pk": row.pk})
        get_relay().drain()
        assert consumers.seen == ["order1"]
        assert ContentType.objects.filter(model="order1").exists()  # still usable

    def test_on_commit_sends_of_handlers_run_after_a_captured_drain(self):
        with self.captureOnCommitCallbacks(execute=True):
            row = ContentType.objects.create(app_label="shop", model="order2")
            enqueue_on_commit("orders", {"pk": row.pk})
        with self.captureOnCommitCallbacks(execute=True):
            get_relay().drain()      # the handler's enqueue_on_commit waits for the test
        assert consumers.receipts == []
        get_relay().drain()
        assert consumers.receipts == ["order2"]


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_has_its_own_namespace(run):
    relay = get_relay()
    relay.queue("mail").put("hello", dedup_key="welcome:42")
    assert relay.queue("mail").stats().ready == 1  # a shared namespace would dedup run 2
    assert relay.namespace.startswith("test-")
    assert get_relay("audit").namespace == relay.namespace + "-audit"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "consumers.py").write_text(textwrap.dedent(CONSUMERS))
    (tmp_path / "settings_shop.py").write_text(textwrap.dedent(SETTINGS))
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_shop.py").write_text(textwrap.dedent(TESTS))
    return tmp_path


def run_pytest(
    project: Path, subprocess_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    env = dict(subprocess_env)
    env["DJANGO_SETTINGS_MODULE"] = "settings_shop"
    env["PYTHONPATH"] = os.pathsep.join([str(project), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_django_project_tests_with_the_plugin(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    done = run_pytest(project, subprocess_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
