"""Reading event records that older versions of orc wrote: upcasting them to today's events.

The log's own decoder (`msgspec.msgpack.Decoder(list[AnyEvent])`, in `eventlog`) reads a frame
of current records at full speed and knows nothing of versions. Only when it refuses a frame
(a record of an older version, or in the older map form) does the log hand that frame to an
`Upcaster`, which decodes its records without a schema and brings each one up to date:

- a record in the **map form** orc wrote before events were stored as arrays
  (`{"Type": "TaskStarted", "TaskID": ..., "At": ...}`, the same keys as on the wire): its
  fields are the map itself, its version is its tag's (`TaskStarted`: 1);
- an **array** record of an older version (`["TaskStarted", ...]` once `TaskStarted` is at
  version 2): its fields are named by the event's `fields_vN`, the field names of version N in
  order;
- an array record of the current version (in a frame beside older ones) decodes directly.

The fields (a dict keyed by wire name) then go through the event's upcasters in turn,
`upcast_v1_v2`, `upcast_v2_v3`, ... up to its `class_version`, and are converted, with every
field's type checked, into the current event. Pure: msgspec only, no I/O.
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

import msgspec

from orc.core.events import Event, from_wire, parse_tag, wire_type

# How the refusal of a newer record ends: `orc replay` tells such a log from a foreign one.
NEWER = "the log was written by a newer orc"


def event_types(record_type: Any) -> tuple[type[Event], ...]:
    """The event classes of a union of events (or of a single event class)."""
    members = get_args(record_type) or (record_type,)
    for cls in members:
        if not (isinstance(cls, type) and issubclass(cls, Event)):
            raise TypeError(f"{cls!r} is not an orc event type")
    return members


class Upcaster:
    """Decodes a frame of records of any version of the events of `record_type`.

    Called by the event log with a frame's payload (a msgpack array of records) that the
    current decoder refused; raises `msgspec.ValidationError` for a record it cannot read (an
    unknown event, a version newer than this orc's, a field of the wrong type).
    """

    def __init__(self, record_type: Any) -> None:
        self._types = {cls.__name__: cls for cls in event_types(record_type)}
        self._schemaless = msgspec.msgpack.Decoder()

    def __call__(self, payload: bytes) -> list[Any]:
        records = self._schemaless.decode(payload)
        if not isinstance(records, list):
            raise msgspec.ValidationError("a frame must hold an array of records")
        return [self.record(raw) for raw in records]

    def record(self, raw: object) -> Any:
        """One record, in any form and version orc wrote, as the current event."""
        if isinstance(raw, dict):
            fields = dict(raw)
            tag = fields.pop("Type", None)
            cls, version = self._event(tag)
        elif isinstance(raw, list) and raw:
            tag = raw[0]
            cls, version = self._event(tag)
            if version == cls.class_version:
                return msgspec.convert(raw, cls)
            names: tuple[str, ...] = getattr(cls, f"fields_v{version}")
            fields = dict(zip(names, raw[1:], strict=False))  # trailing defaults may be left out
        else:
            raise msgspec.ValidationError(f"not an event record: {raw!r:.80}")
        for old in range(version, cls.class_version):
            fields = getattr(cls, f"upcast_v{old}_v{old + 1}")(fields)
        return from_wire(msgspec.convert(fields, wire_type(cls)))

    def _event(self, tag: object) -> tuple[type[Event], int]:
        if not isinstance(tag, str):
            raise msgspec.ValidationError(f"an event record starts with its type, not {tag!r:.80}")
        name, version = parse_tag(tag)
        cls = self._types.get(name)
        if cls is None:
            raise msgspec.ValidationError(f"unknown event type {tag!r}")
        if not 1 <= version <= cls.class_version:
            raise msgspec.ValidationError(
                f"{tag!r} is version {version} of {name}, and this orc knows versions 1 to"
                f" {cls.class_version}: {NEWER}"
            )
        return cls, version


@cache
def upcaster(record_type: Any) -> Upcaster:
    """The upcaster for a union of events, made once: pass it as the log's `older`."""
    return Upcaster(record_type)
