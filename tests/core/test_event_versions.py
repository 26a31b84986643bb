"""Event versions: tags, the pinned layout of every event, upcasting older records, the wire.

Pure: msgspec only, no trio, no files (the golden log's test, tests/replay/test_golden_log.py,
reads a real old log through the real reading paths).
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import pytest

from orc.core.events import (
    ALL_EVENTS,
    AnyEvent,
    Event,
    JobDecided,
    JobRegistered,
    JobScaled,
    JobStopped,
    NodeDown,
    NodeJoined,
    NodeLogReset,
    StateDigest,
    TaskExited,
    TaskFailed,
    TaskHealthy,
    TaskLost,
    TaskPurged,
    TaskRestarted,
    TaskRestarting,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnhealthy,
    TaskUnplaced,
    WireEvent,
    _check_versions,
    from_wire,
    log_tag,
    parse_tag,
    to_wire,
)
from orc.core.jobspec import JobSpec, TemplateSpec
from orc.core.model import NodeInfo, State, Task
from orc.core.upcast import Upcaster, event_types, upcaster

AT = "2026-11-28T12:00:00.000000+00:00"
TASK_ID = "aaaaaaaa-0000-4000-8000-000000000001"
PORTS = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32789"}]}

# One of each event, with every field away from its default where it has one.
EXAMPLES: list[AnyEvent] = [
    NodeJoined(at=AT, node=NodeInfo("w1", "10.0.0.1:8888", ("process", "docker"), 4, 8 << 30)),
    NodeDown(at=AT, node="w1", reason="no heartbeat for 15s"),
    NodeLogReset(at=AT, node="w1", seq=3, reason="its data directory was replaced"),
    TaskSubmitted(
        at=AT,
        task=Task(
            id=TASK_ID,
            name="web",
            state=State.PENDING,
            cmd=["httpd", "-f"],
            env=["A=1"],
            cpu=0.5,
            memory=64 << 20,
            exposed_ports={"80/tcp": {}},
            port_bindings={"80/tcp": "8080"},
            driver="process",
            created_at=AT,
            updated_at=AT,
        ),
    ),
    TaskUnplaced(at=AT, task_id=TASK_ID, reason="no node has 64 CPUs free"),
    TaskScheduled(at=AT, task_id=TASK_ID, node="w1"),
    TaskStarted(
        at=AT, task_id=TASK_ID, node="w1", container_id="c0ffee", host_ports=PORTS, worker_seq=7
    ),
    TaskExited(
        at=AT, task_id=TASK_ID, node="w1", exit_code=1, error="exit 1", stopped=True, worker_seq=8
    ),
    TaskStopRequested(at=AT, task_id=TASK_ID),
    TaskFailed(at=AT, task_id=TASK_ID, error="lost"),
    TaskLost(at=AT, task_id=TASK_ID, node="w1", error="no such process", worker_seq=9),
    TaskRestarting(
        at=AT,
        task_id=TASK_ID,
        node="w1",
        reason="exit status 1",
        restart_count=2,
        streak=2,
        delay=2.0,
        not_before="2026-11-28T12:00:02+00:00",
        exit_code=1,
    ),
    TaskRestarted(at=AT, task_id=TASK_ID, node="w2"),
    TaskHealthy(at=AT, task_id=TASK_ID, node="w2", starts_at=AT),
    TaskUnhealthy(
        at=AT, task_id=TASK_ID, node="w1", reason="GET /health: 503", failures=3, stop=True
    ),
    TaskPurged(at=AT, task_id=TASK_ID, reason="ended more than 1d ago"),
    StateDigest(at=AT, seq=42, digest="0123456789abcdef0123456789abcdef"),
    JobRegistered(
        at=AT,
        job=JobSpec(id="web", count=3, task=TemplateSpec(name="web", cmd=["httpd"])),
        version=2,
        reason="submitted",
        parent="nightly",
    ),
    JobScaled(at=AT, job_id="web", count=5, reason="scaled by request"),
    JobStopped(at=AT, job_id="web", reason="stopped by request"),
    JobDecided(
        at=AT,
        job_id="web",
        action="place",
        reason="slot 2 is empty",
        task_id=TASK_ID,
        slot=2,
        version=2,
    ),
]

# The version and the record layout (array order, by wire name) of every event, pinned. A record
# in the log is `[tag, *fields]` in this order, with no names: change an event's fields, or their
# order, and the records already written no longer fit. Then bump its `class_version`, keep the
# old layout as `fields_vN`, write `upcast_vN_vM`, and change the line here (docs/replay.md).
LAYOUTS: dict[str, tuple[int, tuple[str, ...]]] = {
    "NodeJoined": (1, ("Node", "At")),
    "NodeDown": (1, ("Node", "Reason", "At")),
    "NodeLogReset": (1, ("Node", "Seq", "Reason", "At")),
    "TaskSubmitted": (1, ("Task", "At")),
    "TaskUnplaced": (1, ("TaskID", "Reason", "At")),
    "TaskScheduled": (1, ("TaskID", "Node", "At")),
    "TaskStarted": (1, ("TaskID", "Node", "ContainerID", "HostPorts", "WorkerSeq", "At")),
    "TaskExited": (
        1,
        ("TaskID", "Node", "ExitCode", "Error", "Stopped", "WorkerSeq", "At"),
    ),
    "TaskStopRequested": (1, ("TaskID", "At")),
    "TaskFailed": (1, ("TaskID", "Error", "At")),
    "TaskLost": (1, ("TaskID", "Node", "Error", "WorkerSeq", "At")),
    "TaskRestarting": (
        1,
        (
            "TaskID",
            "Node",
            "Reason",
            "RestartCount",
            "Streak",
            "Delay",
            "NotBefore",
            "ExitCode",
            "At",
        ),
    ),
    "TaskRestarted": (1, ("TaskID", "Node", "At")),
    "TaskHealthy": (1, ("TaskID", "Node", "StartsAt", "At")),
    "TaskUnhealthy": (1, ("TaskID", "Node", "Reason", "Failures", "Stop", "At")),
    "TaskPurged": (1, ("TaskID", "Reason", "At")),
    "StateDigest": (1, ("Seq", "Digest", "At")),
    "JobRegistered": (1, ("Job", "Version", "Reason", "Parent", "At")),
    "JobScaled": (1, ("JobID", "Count", "Reason", "At")),
    "JobStopped": (1, ("JobID", "Reason", "At")),
    "JobDecided": (1, ("JobID", "Action", "Reason", "TaskID", "Slot", "Version", "At")),
}


def test_every_event_has_an_example() -> None:
    assert [type(e) for e in EXAMPLES] == list(ALL_EVENTS)


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda cls: cls.__name__)
def test_layout_is_pinned(cls: type[Event]) -> None:
    assert (cls.class_version, cls.__struct_encode_fields__) == LAYOUTS[cls.__name__], (
        f"{cls.__name__} changed: records already in logs no longer fit it. Bump its"
        " class_version and write an upcaster (docs/replay.md), then update LAYOUTS"
    )


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda cls: cls.__name__)
def test_log_tag_says_name_and_version(cls: type[Event]) -> None:
    tag = cls.__struct_config__.tag
    assert tag == log_tag(cls.__name__, cls.class_version)
    assert parse_tag(str(tag)) == (cls.__name__, cls.class_version)


def test_tags() -> None:
    assert log_tag("TaskStarted", 1) == "TaskStarted"
    assert log_tag("TaskStarted", 2) == "TaskStarted.v2"
    assert parse_tag("TaskStarted.v12") == ("TaskStarted", 12)
    assert parse_tag("TaskStarted") == ("TaskStarted", 1)
    assert parse_tag("Task.vx") == ("Task.vx", 1)


# -- the log: arrays, decoded at full speed ------------------------------------------------------


def test_current_records_are_arrays_that_decode_directly() -> None:
    frame = msgspec.msgpack.encode(EXAMPLES)
    for record, event in zip(msgspec.msgpack.decode(frame), EXAMPLES, strict=True):
        assert isinstance(record, list)
        assert record[0] == type(event).__name__  # the tag, then the fields, unnamed
        assert len(record) == 1 + len(LAYOUTS[type(event).__name__][1])
        assert record[-1] == event.at
    assert msgspec.msgpack.Decoder(list[AnyEvent]).decode(frame) == EXAMPLES


def test_the_fast_decoder_refuses_old_records_so_the_log_upcasts_them() -> None:
    """A record in the old map form is refused with a ValidationError, the log's cue to hand
    the frame to the upcaster: never misread."""
    old_frame = msgspec.msgpack.encode([to_wire(e) for e in EXAMPLES])
    with pytest.raises(msgspec.ValidationError, match="Expected `array`, got `object`"):
        msgspec.msgpack.Decoder(list[AnyEvent]).decode(old_frame)
    assert upcaster(AnyEvent)(old_frame) == EXAMPLES


def test_a_frame_of_old_and_new_records() -> None:
    frame = msgspec.msgpack.encode([to_wire(EXAMPLES[0]), *EXAMPLES[1:]])
    assert upcaster(AnyEvent)(frame) == EXAMPLES


def test_upcaster_is_made_once_per_record_type() -> None:
    assert upcaster(AnyEvent) is upcaster(AnyEvent)
    assert event_types(TaskStarted) == (TaskStarted,)
    with pytest.raises(TypeError, match="not an orc event type"):
        event_types(int)


# -- upcasting: an event with three versions -----------------------------------------------------


class Reading(Event, frozen=True, tag="Reading.v3"):
    """A made-up event at version 3: version 1 held `Value` as a string, version 2 made it a
    number, version 3 added `Unit` (readings were in Celsius until then)."""

    class_version: ClassVar[int] = 3
    fields_v1: ClassVar[tuple[str, ...]] = ("Sensor", "Value", "At")
    fields_v2: ClassVar[tuple[str, ...]] = ("Sensor", "Value", "At")

    sensor: str
    value: float
    unit: str

    @staticmethod
    def upcast_v1_v2(fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, "Value": float(fields["Value"])}

    @staticmethod
    def upcast_v2_v3(fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, "Unit": "C"}


class Alarm(Event, frozen=True):
    sensor: str


Readings = Reading | Alarm
CURRENT = Reading(at=AT, sensor="s1", value=21.5, unit="C")


def test_upcast_each_older_form_and_version() -> None:
    records = [
        {"Type": "Reading", "Sensor": "s1", "Value": "21.5", "At": AT},  # v1, map form
        ["Reading", "s1", "21.5", AT],  # v1, array form
        ["Reading.v2", "s1", 21.5, AT],  # v2
        ["Reading.v3", "s1", 21.5, "C", AT],  # current, beside older ones in a frame
        ["Alarm", "s1", AT],  # another event, current
    ]
    frame = msgspec.msgpack.encode(records)
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.Decoder(list[Readings]).decode(frame)  # the log's fast path refuses
    assert Upcaster(Readings)(frame) == [CURRENT] * 4 + [Alarm(at=AT, sensor="s1")]


def test_current_records_of_an_upcast_event_decode_directly() -> None:
    assert msgspec.msgpack.encode(CURRENT) == msgspec.msgpack.encode(
        ["Reading.v3", "s1", 21.5, "C", AT]
    )
    frame = msgspec.msgpack.encode([CURRENT, Alarm(at=AT, sensor="s2")])
    assert msgspec.msgpack.Decoder(list[Readings]).decode(frame)[0] == CURRENT


def test_upcast_result_is_type_checked() -> None:
    frame = msgspec.msgpack.encode([["Reading.v2", "s1", "not a number", AT]])
    with pytest.raises(msgspec.ValidationError, match="Expected `float`, got `str`"):
        Upcaster(Readings)(frame)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (["Reading.v4", "s1", 1.0, "C", "K", AT], "version 4 of Reading.*written by a newer orc"),
        (["Humidity", 0.4, AT], "unknown event type 'Humidity'"),
        ({"Sensor": "s1"}, "starts with its type, not None"),
        ([7, "s1"], "starts with its type, not 7"),
        ("Reading", "not an event record"),
    ],
)
def test_records_it_cannot_read(record: object, message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        Upcaster(Readings)(msgspec.msgpack.encode([record]))


def test_a_version_needs_its_tag_old_layouts_and_upcasters() -> None:
    _check_versions((Reading, Alarm))

    class Untagged(Event, frozen=True):
        class_version: ClassVar[int] = 2

    class NoUpcaster(Event, frozen=True, tag="NoUpcaster.v2"):
        class_version: ClassVar[int] = 2
        fields_v1: ClassVar[tuple[str, ...]] = ("At",)

    class NoLayout(Event, frozen=True, tag="NoLayout.v2"):
        class_version: ClassVar[int] = 2

        @staticmethod
        def upcast_v1_v2(fields: dict[str, Any]) -> dict[str, Any]:
            return fields

    with pytest.raises(TypeError, match=r"Untagged is version 2: its tag must be 'Untagged\.v2'"):
        _check_versions((Untagged,))
    with pytest.raises(TypeError, match="NoUpcaster is version 2 but has no upcast_v1_v2"):
        _check_versions((NoUpcaster,))
    with pytest.raises(TypeError, match="NoLayout is version 2 but has no fields_v1"):
        _check_versions((NoLayout,))


# -- the wire: one definition, two encodings -----------------------------------------------------


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_the_wire_is_an_object_with_type(event: AnyEvent) -> None:
    body = msgspec.json.decode(msgspec.json.encode(to_wire(event)))
    keys = LAYOUTS[type(event).__name__][1]
    assert list(body) == ["Type", *keys]
    assert body["Type"] == type(event).__name__
    assert from_wire(msgspec.json.decode(msgspec.json.encode(to_wire(event)), type=WireEvent)) == (
        event
    )


def test_an_event_itself_encodes_as_the_log_stores_it() -> None:
    """Why nothing may JSON-encode an event directly: it is an array."""
    started = EXAMPLES[6]
    assert msgspec.json.encode(started).startswith(b'["TaskStarted","aaaaaaaa')
    assert msgspec.json.encode(to_wire(started)).startswith(b'{"Type":"TaskStarted","TaskID":')
