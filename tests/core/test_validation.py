"""Bad input is named precisely: which field, what was wrong."""

from __future__ import annotations

import json

import pytest

from orc.core.model import TaskEvent
from orc.core.validation import Invalid, check_task_event, decode_task_event

ID = "266592cd-960d-4091-981c-8c25c44b1018"
NEW = "11111111-2222-3333-4444-555555555555"


def _check(body: object) -> TaskEvent:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return check_task_event(decode_task_event(raw), NEW)


def test_the_seed_request_is_accepted_as_a_docker_task() -> None:
    event = _check(
        {
            "ID": ID,
            "State": 2,
            "Task": {
                "State": 1,
                "ID": ID,
                "Name": "test-from-api-777",
                "Image": "strm/helloworld-http",
            },
        }
    )
    assert event.task is not None
    assert event.task.driver == "docker"
    assert event.task.id == ID


def test_process_task_and_generated_id() -> None:
    event = _check({"State": 2, "Task": {"Cmd": ["sleep", "1"], "Env": ["A=1"]}})
    assert event.task is not None
    assert event.task.driver == "process"
    assert event.task.id == NEW
    assert event.id == NEW


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "body is empty"),
        (b"   ", "body is empty"),
        (b"{", "malformed JSON"),
        (b"[1,2]", "Expected object, got array"),
        (
            {"State": 2, "Task": {"Cmd": ["x"], "Memory": "lots"}},
            "Expected int, got str - at $.Task.Memory",
        ),
        ({"State": 2, "Task": {"Cmd": ["x"]}, "Bogus": 1}, "unknown field Bogus"),
        ({"State": 2, "Task": {"Cmd": ["x"], "Colour": "red"}}, "unknown field Colour - at $.Task"),
        (
            {"ID": "nope", "State": 2, "Task": {"Cmd": ["x"]}},
            "Expected a UUID, got 'nope' - at $.ID",
        ),
        ({"State": 2, "Task": {"ID": "x", "Cmd": ["x"]}}, "at $.Task.ID"),
        ({"State": 7, "Task": {"Cmd": ["x"]}}, "at $.State"),
        ({"State": 2}, "missing required field Task"),
        ({"State": 2, "Task": {}}, "needs an Image"),
        ({"State": 2, "Task": {"Cmd": []}}, "non-empty argv"),
        (
            {"State": 2, "Task": {"Cmd": ["x"], "Memory": -1}},
            "Task.Memory: must be a whole number of bytes, 0 to 1125899906842624",
        ),
        (
            {"State": 2, "Task": {"Cmd": ["x"], "CPU": -0.5}},
            "Task.CPU: must be a finite number between 0 and 1024",
        ),
        (
            {"State": 2, "Task": {"Cmd": ["x"], "Env": ["no-equals"]}},
            "Task.Env[0]: must be 'NAME=value'",
        ),
        (
            {"State": 2, "Task": {"Image": "Bad Image!"}},
            "Task.Image: must be an image reference like 'name:tag'",
        ),
        (
            {"State": 2, "Task": {"Image": "x", "ExposedPorts": {"eighty": {}}}},
            "Task.ExposedPorts (a key): must be a port 1-65535",
        ),
        (
            {"State": 2, "Task": {"Image": "x", "PortBindings": {"80/tcp": "99999"}}},
            "Task.PortBindings (a value): must be a host port 1-65535",
        ),
        (
            {"State": 2, "Task": {"Cmd": ["x"], "RestartPolicy": "sometimes"}},
            "Task.RestartPolicy: must be one of '' (no), 'no', 'on-failure'",
        ),
        (
            {"State": 2, "Task": {"Cmd": ["x"], "Driver": "vm"}},
            "Task.Driver: must be one of 'docker', 'process'",
        ),
        ({"State": 2, "Task": {"Cmd": ["x"], "Driver": "docker"}}, "needs an Image"),
    ],
)
def test_bad_input_names_field_and_problem(body: object, needle: str) -> None:
    with pytest.raises(Invalid) as info:
        _check(body)
    assert needle in str(info.value)
