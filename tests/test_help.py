"""Every task documents itself: `inv --list` and `inv --help TASK`."""

import inspect

import pytest

import tasks


def _all_tasks(collection, prefix=""):
    for name, task in collection.tasks.items():
        yield prefix + name, task
    for name, sub in collection.collections.items():
        yield from _all_tasks(sub, prefix + name + ".")


TASKS = sorted(_all_tasks(tasks.ns), key=lambda pair: pair[0])


@pytest.mark.parametrize(("name", "task"), TASKS, ids=[n for n, _ in TASKS])
def test_task_has_a_short_summary_and_help_for_every_parameter(name, task):
    doc = inspect.getdoc(task.body) or ""
    summary = doc.splitlines()[0] if doc else ""
    # Not task.get_arguments(): it consumes task.help (invoke 3.0.3).
    params = list(inspect.signature(task.body).parameters)[1:]

    assert summary, f"{name} has no docstring"
    assert len(summary) <= 60, f"{name}: summary longer than 60 characters"
    assert sorted(task.help) == sorted(params), f"{name}: help does not match params"
    assert all(text.strip() for text in task.help.values())


def test_the_release_path_tasks_exist():
    names = {name for name, _ in TASKS}

    assert {
        "preflight",
        "auth.check",
        "secrets.check",
        "deploy.api",
        "deploy.worker",
        "verify.api",
        "verify.worker",
        "release.run",
    } <= names
