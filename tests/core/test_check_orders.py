"""A worker's batch of orders (`POST /orders`): the wire form of each order is the message the
Worker actor takes, and every task in it is checked as `POST /tasks` checks one, each error
naming its order."""

from __future__ import annotations

import msgspec
import pytest

from orc.core.messages import OrderResults, Orders, Reconcile, RunTask, StopTask
from orc.core.model import Task
from orc.core.validation import Invalid, check_orders

ID = "266592cd-960d-4091-981c-8c25c44b1018"
OTHER = "11111111-2222-3333-4444-555555555555"


def test_orders_cross_the_wire_as_they_are() -> None:
    orders = Orders(
        (
            RunTask(Task(id=ID, cmd=["true"], driver="process")),
            StopTask(OTHER),
            Reconcile((Task(id=OTHER, image="busybox", driver="docker"),), exclusive=True),
        )
    )
    wire = msgspec.json.decode(msgspec.json.encode(orders))
    assert [o["Type"] for o in wire["Orders"]] == ["RunTask", "StopTask", "Reconcile"]
    assert wire["Orders"][1] == {"Type": "StopTask", "TaskID": OTHER}
    assert wire["Orders"][2]["Exclusive"] is True
    assert msgspec.json.decode(msgspec.json.encode(orders), type=Orders) == orders
    assert msgspec.json.encode(OrderResults(())) == b'{"Results":[]}'


def test_checked_orders_have_their_driver_decided() -> None:
    checked = check_orders(Orders((RunTask(Task(id=ID, cmd=["true"])), StopTask(ID.upper()))))
    assert checked == Orders((RunTask(Task(id=ID, cmd=["true"], driver="process")), StopTask(ID)))


@pytest.mark.parametrize(
    ("orders", "message"),
    [
        ((StopTask("abc"),), "Expected a UUID, got 'abc' - at $.Orders[0].TaskID"),
        ((RunTask(Task(cmd=["true"])),), "Expected a UUID, got '' - at $.Orders[0].Task.ID"),
        (
            (StopTask(ID), RunTask(Task(id=ID, cmd=["true"], cpu=-1))),
            "Orders[1].Task.CPU: must be a finite number between 0 and 1024",
        ),
        ((RunTask(Task(id=ID)),), "Task needs an Image (run as a Docker container)"),
        (
            (Reconcile((Task(id=ID, cmd=["true"]), Task(id=OTHER, cmd=[]))),),
            "Expected a non-empty argv list, got [] - at $.Orders[0].Tasks[1].Cmd",
        ),
    ],
)
def test_a_bad_order_is_named(
    orders: tuple[RunTask | StopTask | Reconcile, ...], message: str
) -> None:
    with pytest.raises(Invalid) as caught:
        check_orders(Orders(orders))
    assert message in str(caught.value)
