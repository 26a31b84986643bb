"""The reconciler (orc.core.reconcile), rule by rule, on states built by applying events: the
reconciler's own, fed back, and those of simulated workers and nodes (tests/core/jobstates.py).
"""

from __future__ import annotations

import msgspec
import pytest

from orc.core.events import (
    JobDecided,
    JobRegistered,
    JobScaled,
    JobStopped,
    NodeJoined,
    TaskHealthy,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnhealthy,
)
from orc.core.jobs import COMPLETE, DEPLOYED, FAILED, LIVE, RUNNING, job_view, task_id_for
from orc.core.jobspec import (
    ConstraintSpec,
    PeriodicSpec,
    RescheduleSpec,
    SpreadSpec,
    UpdateSpec,
)
from orc.core.model import Constraint, HostPort, State
from orc.core.reconcile import Pass, plan, reconcile, stopped_on_request
from orc.core.snapshot import state_digest
from orc.core.state import STOPPED_ON_REQUEST, ClusterState, apply
from orc.core.transitions import ACTIVE
from tests.core.jobstates import T0, Sim, at, big_state, node, spec

FAST = UpdateSpec(max_parallel=1, min_healthy_time=10, healthy_deadline=60)


def decided(p: Pass, action: str | None = None) -> list[JobDecided]:
    return [e for e in p.events if isinstance(e, JobDecided) and action in (None, e.action)]


def actions(p: Pass) -> list[str]:
    return [e.action for e in decided(p)]


def submitted(p: Pass) -> list[TaskSubmitted]:
    return [e for e in p.events if isinstance(e, TaskSubmitted)]


def stopped(p: Pass) -> list[str]:
    return [e.task_id for e in p.events if isinstance(e, TaskStopRequested)]


def deployed_service(count: int = 3, nodes: int = 3, **fields: object) -> Sim:
    """A service of `count` Running tasks whose first deployment succeeded, at `at(20)`."""
    sim = Sim()
    sim.join(*(node(f"n{i}") for i in range(nodes)))
    fields.setdefault("update", FAST)
    sim.register(spec("web", count=count, **fields))
    sim.round(T0)
    sim.round(at(20))
    job = sim.state.jobs["web"]
    assert job.deployment is not None and job.deployment.state == DEPLOYED
    assert job.stable == 0
    return sim


# -- service ------------------------------------------------------------------------------------


def test_a_new_service_places_each_slot_with_the_task_fields_set() -> None:
    sim = Sim()
    sim.join(node("n0"))
    job = spec(
        "web",
        name="Web",
        count=2,
        constraints=[ConstraintSpec(attribute="rack", value="a")],
        spread=SpreadSpec(attribute="rack"),
    )
    sim.register(job)
    p = reconcile(sim.state, at(1))
    assert [type(e).__name__ for e in p.events] == [
        "JobDecided",
        "TaskSubmitted",
        "JobDecided",
        "TaskSubmitted",
        "JobDecided",  # wait: the deployment waits for its tasks' health
    ]
    first, second = submitted(p)
    assert first.task.id == task_id_for("web", 0) and second.task.id == task_id_for("web", 1)
    assert decided(p, "place")[1].task_id == second.task.id
    assert decided(p, "place")[1].slot == 1
    t = second.task
    assert (t.job_id, t.job_version, t.slot, t.name) == ("web", 0, 1, "Web[1]")
    assert t.state == State.PENDING and t.created_at == t.updated_at == at(1)
    assert t.constraints == (Constraint("rack", "a", "="),)
    assert t.spread == "rack" and t.cmd == ["sleep", "1000"] and t.driver == "process"
    assert decided(p, "wait")[0].reason.startswith("deployment of version 0: waiting")


def test_a_pass_on_an_unchanged_state_decides_nothing_new() -> None:
    sim = Sim()
    sim.join(node("n0"))
    sim.register(spec("web", count=3, update=FAST))
    sim.reconcile(T0)
    again = reconcile(sim.state, T0)
    assert again.events == []
    assert reconcile(sim.state, T0) == again  # and the same pass every time


def test_the_first_deployment_marks_the_version_stable_once_its_tasks_are_healthy() -> None:
    sim = Sim()
    sim.join(node("n0"))
    sim.register(spec("web", count=2, update=FAST))
    sim.round(T0)
    p = sim.round(at(5))
    assert p.events == [] and p.wake == {"web": at(10)}  # MinHealthyTime from StartsAt
    p = sim.round(at(10))
    assert actions(p) == ["healthy", "healthy", "deployed", "wait"]
    assert decided(p, "wait")[0].reason == ""
    job = sim.state.jobs["web"]
    assert job.stable == 0 and job.deployment is not None and job.deployment.state == DEPLOYED
    assert p.wake == {}


def test_scale_up_fills_the_new_slots_and_scale_down_stops_the_highest_first() -> None:
    sim = deployed_service(count=3)
    sim.apply([JobScaled(at=at(30), job_id="web", count=5, reason="scale")])
    p = sim.round(at(30))
    assert [e.slot for e in decided(p, "place")] == [3, 4]
    assert len(sim.running("web")) == 5
    sim.apply([JobScaled(at=at(40), job_id="web", count=2, reason="scale")])
    p = sim.round(at(40))
    assert [e.slot for e in decided(p, "stop")] == [4, 3, 2]
    assert decided(p, "stop")[0].reason == "scaled to 2: slot 4 is not needed"
    assert sorted(t.slot for t in sim.running("web")) == [0, 1]
    # the tasks stopped were asked to: scaling up again places at once, no delay
    sim.apply([JobScaled(at=at(41), job_id="web", count=3, reason="scale")])
    p = sim.round(at(41))
    assert [(e.action, e.slot) for e in decided(p, "place")] == [("place", 2)]


def test_count_zero_and_a_stopped_job_stop_every_task_and_place_none() -> None:
    sim = deployed_service(count=2)
    sim.apply([JobStopped(at=at(30), job_id="web", reason="stopped by request")])
    p = sim.round(at(30))
    assert actions(p) == ["stop", "stop"]
    assert all(e.reason == "job stopped" for e in decided(p))
    assert sim.filling("web") == []
    assert sim.round(at(60)).events == []  # and nothing more
    # registered again: it runs again, without delay (its tasks were stopped on request)
    sim.register(spec("web", count=2, update=FAST), now=at(70))
    p = sim.round(at(70))
    assert actions(p).count("place") == 2


def test_a_failed_task_is_replaced_after_the_reschedule_delay() -> None:
    sim = deployed_service(count=2)
    victim = sim.running("web")[1]
    sim.exit(victim.id, at(30), code=1)
    p = sim.round(at(30))
    assert actions(p) == ["wait"]
    assert decided(p)[0].reason == (
        "slot 1 failed: replaced 5s after the failure (Reschedule.Delay)"
    )
    assert p.wake == {"web": at(35)}
    assert sim.round(at(33)).events == []  # said once
    p = sim.round(at(35))
    assert actions(p) == ["replace", "wait"]
    replace = decided(p, "replace")[0]
    assert replace.slot == 1 and f"task {victim.id} in slot 1 failed" in replace.reason
    assert decided(p, "wait")[0].reason == ""
    assert len(sim.running("web")) == 2


def test_a_service_task_that_exits_0_on_its_own_is_a_failure() -> None:
    sim = deployed_service(count=1)
    sim.exit(sim.running("web")[0].id, at(30), code=0)
    p = sim.round(at(30))
    assert actions(p) == ["wait"] and p.wake == {"web": at(35)}


def test_attempts_limit_replacements_per_interval() -> None:
    policy = RescheduleSpec(attempts=2, interval=3600, delay=0)
    sim = deployed_service(count=1, reschedule=policy)
    for i in range(2):
        sim.exit(sim.running("web")[0].id, at(100 + i), code=1)
        assert actions(sim.round(at(100 + i))) == ["replace"]
    sim.exit(sim.running("web")[0].id, at(110), code=1)
    p = sim.round(at(110))
    assert actions(p) == ["wait"]
    assert decided(p)[0].reason == (
        "slot 0 failed 3 times in 1h (Reschedule.Attempts 2): not replaced"
    )
    # once the first failure leaves the interval, a replacement is allowed again
    assert p.wake == {"web": at(100 + 3600)}
    assert sim.round(at(3000)).events == []
    assert actions(sim.round(at(100 + 3600))) == ["replace", "wait"]


def test_a_task_stopped_by_a_client_is_refilled_at_once() -> None:
    sim = deployed_service(count=2)
    victim = sim.running("web")[0]
    sim.apply([TaskStopRequested(at=at(30), task_id=victim.id)])
    sim.work(at(30))
    assert sim.state.tasks[victim.id].error == STOPPED_ON_REQUEST
    assert stopped_on_request(sim.state.tasks[victim.id])
    p = sim.round(at(30))
    assert actions(p) == ["place"] and decided(p)[0].slot == victim.slot


def test_two_tasks_filling_a_slot_keep_the_first_made() -> None:
    sim = deployed_service(count=1)
    first = sim.running("web")[0]
    intruder = msgspec.structs.replace(first, id="intruder", state=State.PENDING, node="")
    sim.check = False  # the invariant this very state breaks
    sim.apply([TaskSubmitted(at=at(30), task=intruder)])
    p = sim.round(at(30))
    assert stopped(p) == ["intruder"]
    assert decided(p, "stop")[0].reason == f"slot 0 has two tasks: task {first.id} keeps it"


def test_a_lost_node_returning_never_runs_two_tasks_for_a_slot() -> None:
    sim = deployed_service(count=3, nodes=2)
    lost = sim.running("web")[0].node
    on_lost = {t.id for t in sim.running("web") if t.node == lost}
    sim.node_down(lost, at(30))
    assert all(sim.state.tasks[i].state == State.FAILED for i in on_lost)
    t = sim.settle(30)
    assert len(sim.running("web")) == 3  # replaced on the node left (4 cores)
    sim.join(node(lost), now=at(t + 1))
    sim.settle(t + 1)
    assert len(sim.filling("web")) == 3
    assert all(sim.state.tasks[i].state == State.FAILED for i in on_lost)


def test_tasks_waiting_for_a_node_say_why_once() -> None:
    sim = Sim()
    sim.join(node("n0", cores=1))
    sim.register(spec("web", count=3, update=FAST))
    sim.round(T0)
    p = sim.round(at(1))
    waits = decided(p, "wait")
    assert [w.reason for w in waits] == [
        "slots 1 and 2 not placed: no node fits: not enough cores; deployment of"
        " version 0: waiting for new tasks to become healthy (MinHealthyTime 10s)"
    ]
    assert decided(sim.round(at(2)), "wait") == []  # not repeated
    sim.join(node("n1", cores=2), now=at(3))
    sim.round(at(3))
    p = sim.round(at(4))
    assert [w.reason for w in decided(p, "wait")] == [
        "deployment of version 0: waiting for new tasks to become healthy (MinHealthyTime 10s)"
    ]


# -- deployments -------------------------------------------------------------------------------


def test_a_rolling_update_replaces_max_parallel_tasks_at_a_time() -> None:
    update = UpdateSpec(max_parallel=2, min_healthy_time=10, healthy_deadline=60)
    sim = deployed_service(count=5, update=update)
    sim.register(spec("web", count=5, update=update, env=["V=2"]), now=at(30))
    seen_groups = []
    t = 30.0
    while sim.state.jobs["web"].deployment.state == RUNNING:  # type: ignore[union-attr]
        p = sim.round(at(t))
        replaced = decided(p, "replace")
        if replaced:
            seen_groups.append([e.slot for e in replaced])
            assert all(e.reason.startswith("rolling update to version 1") for e in replaced)
            assert len(stopped(p)) == len(replaced)
        in_flight = [
            x
            for x in sim.filling("web")
            if x.job_version == 1 and x.id not in sim.state.jobs["web"].deployment.healthy  # type: ignore[union-attr]
        ]
        assert len(in_flight) <= 2
        assert len(sim.filling("web")) == 5
        t += 5
        assert t < 300
    assert seen_groups == [[0, 1], [2, 3], [4]]
    job = sim.state.jobs["web"]
    assert job.stable == 1 and job.deployment is not None and job.deployment.state == DEPLOYED
    assert {x.job_version for x in sim.running("web")} == {1}


def test_a_new_task_replacing_an_old_one_is_decided_once_and_stops_the_old_first() -> None:
    sim = deployed_service(count=1)
    old = sim.running("web")[0]
    sim.register(spec("web", count=1, update=FAST, env=["V=2"]), now=at(30))
    p = reconcile(sim.state, at(30))
    kinds = [type(e).__name__ for e in p.events]
    assert kinds[:3] == ["JobDecided", "TaskStopRequested", "TaskSubmitted"]
    replace = decided(p, "replace")[0]
    assert replace.task_id == submitted(p)[0].task.id and replace.version == 1
    assert f"replaces task {old.id} (version 0)" in replace.reason
    assert stopped(p) == [old.id]


def test_a_rename_or_a_scale_replaces_nothing() -> None:
    sim = deployed_service(count=2)
    sim.register(spec("web", name="renamed", count=2, update=FAST), now=at(30))
    p = sim.round(at(30))
    assert decided(p, "replace") == [] and decided(p, "stop") == []


def test_healthy_deadline_fails_the_deployment_and_auto_revert_goes_back_to_stable() -> None:
    update = UpdateSpec(max_parallel=1, min_healthy_time=10, healthy_deadline=60, auto_revert=True)
    sim = deployed_service(count=2, update=update)
    # version 1 asks for more cores than any node has: it is never placed
    big = spec("web", count=2, update=update, env=["V=2"])
    big = msgspec.structs.replace(big, task=msgspec.structs.replace(big.task, cpu=64.0))
    sim.register(big, now=at(30))
    sim.round(at(30))
    assert len(sim.running("web")) == 1  # one old task replaced, its replacement waits
    p = sim.round(at(89))
    assert p.wake == {"web": at(90)}
    p = sim.round(at(90))
    assert actions(p) == ["unhealthy", "deployment-failed", "revert"]
    assert decided(p, "unhealthy")[0].reason == "not healthy within 1min (HealthyDeadline)"
    assert decided(p, "revert")[0].version == 0
    registered = [e for e in p.events if isinstance(e, JobRegistered)]
    assert registered[0].version == 2 and registered[0].job.task.cpu == 1.0
    assert registered[0].reason.startswith("auto-revert: deployment of version 1 failed")
    assert p.wake == {"web": at(90)}  # at once
    sim.settle(90)
    job = sim.state.jobs["web"]
    assert job.version == 2 and job.stable == 2
    assert job.deployment is not None and job.deployment.state == DEPLOYED
    assert sorted(x.slot for x in sim.running("web")) == [0, 1]
    assert all(job.current(x.job_version) for x in sim.running("web"))
    assert not any(x.job_version == 1 for x in sim.filling("web"))


def test_an_unhealthy_task_fails_the_deployment_and_without_revert_old_tasks_stay() -> None:
    update = UpdateSpec(max_parallel=1, min_healthy_time=10, healthy_deadline=300)
    sim = deployed_service(count=3, update=update)
    sim.register(spec("web", count=3, update=update, env=["V=2"]), now=at(30))
    sim.round(at(30))
    new = next(x for x in sim.running("web") if x.job_version == 1)
    sim.apply(
        [
            TaskUnhealthy(
                at=at(32),
                task_id=new.id,
                node=new.node,
                reason="unhealthy: GET /health: 500",
                failures=3,
                stop=False,
            )
        ]
    )
    p = sim.round(at(32))
    assert actions(p) == ["unhealthy", "deployment-failed", "wait"]
    assert decided(p, "unhealthy")[0].reason == "unhealthy: GET /health: 500"
    assert sim.state.jobs["web"].deployment.state == FAILED  # type: ignore[union-attr]
    sim.settle(33)
    versions = sorted(x.job_version for x in sim.running("web"))
    assert versions == [0, 0, 1]  # no more old tasks replaced
    # a failed slot is still refilled, with the current version
    old = next(x for x in sim.running("web") if x.job_version == 0)
    sim.exit(old.id, at(400), code=2)
    sim.settle(400)
    assert sorted(x.job_version for x in sim.running("web")) == [0, 1, 1]


def test_a_new_task_that_fails_before_it_is_healthy_fails_the_deployment() -> None:
    sim = deployed_service(count=2)
    sim.register(spec("web", count=2, update=FAST, env=["V=2"]), now=at(30))
    sim.round(at(30))
    new = next(x for x in sim.running("web") if x.job_version == 1)
    sim.exit(new.id, at(31), code=1)
    p = sim.round(at(31))
    assert actions(p)[:2] == ["unhealthy", "deployment-failed"]
    assert decided(p, "unhealthy")[0].reason.startswith("failed before it was healthy")


def test_deployed_waits_for_the_old_tasks_to_end() -> None:
    sim = deployed_service(count=1)
    sim.register(spec("web", count=1, update=FAST, env=["V=2"]), now=at(30))
    sim.reconcile(at(30))
    old = next(x for x in sim.tasks("web") if x.job_version == 0)
    assert old.id in sim.state.stop_requested
    sim.schedule(at(30))
    new = sim.filling("web")[0]
    sim.apply([TaskStarted(at=at(30), task_id=new.id, node=new.node)])  # the old one still runs
    p = sim.reconcile(at(45))
    assert actions(p) == ["healthy", "wait"]
    assert decided(p, "wait")[0].reason == "deployment of version 1: waiting for old tasks to stop"
    sim.work(at(46))
    assert actions(sim.reconcile(at(46))) == ["deployed", "wait"]


# -- batch -------------------------------------------------------------------------------------


def test_batch_runs_at_most_parallelism_and_completes_once_every_slot_succeeded() -> None:
    sim = Sim()
    sim.join(node("n0"))
    sim.register(spec("etl", type="batch", count=4, parallelism=2))
    p = sim.round(T0)
    assert [e.slot for e in decided(p, "place")] == [0, 1]
    assert decided(p, "wait")[0].reason == "runs at most 2 tasks at once (Parallelism)"
    done = 0
    t = 1.0
    while sim.state.jobs["etl"].status != COMPLETE:
        running = sim.running("etl")
        assert len(running) <= 2
        if running:
            sim.exit(running[0].id, at(t), code=0)
            done += 1
        sim.round(at(t))
        t += 1
        assert t < 50
    assert done == 4
    assert sim.passes[-1].events[-1].action == "complete"  # type: ignore[union-attr]
    assert sim.round(at(t)).events == []


def test_a_failed_batch_task_is_retried_once_a_day_by_default() -> None:
    sim = Sim()
    sim.join(node("n0"))
    sim.register(spec("etl", type="batch", count=1))
    sim.round(T0)
    sim.exit(sim.running("etl")[0].id, at(1), code=3)
    assert actions(sim.round(at(1))) == ["wait"]
    assert actions(sim.round(at(6))) == ["replace", "wait"]
    sim.exit(sim.running("etl")[0].id, at(7), code=3)
    p = sim.round(at(7))
    assert decided(p, "wait")[0].reason == (
        "slot 0 failed 2 times in 24h (Reschedule.Attempts 1): not replaced"
    )
    assert p.wake == {"etl": at(1 + 86400)}


def test_a_batch_task_stopped_with_exit_0_is_not_a_success() -> None:
    sim = Sim()
    sim.join(node("n0"))
    sim.register(spec("etl", type="batch", count=1))
    sim.round(T0)
    sim.apply([JobStopped(at=at(1), job_id="etl", reason="stop")])
    sim.round(at(1))  # the worker stops it: exit 0
    assert sim.ended("etl")[0].exit_code == 0
    sim.register(spec("etl", type="batch", count=1), now=at(2))
    p = sim.round(at(2))
    assert actions(p) == ["place"]
    assert sim.state.jobs["etl"].status == LIVE


def test_a_complete_batch_job_does_nothing() -> None:
    sim = Sim()
    sim.join(node("n0"))
    sim.register(spec("etl", type="batch", count=1))
    sim.round(T0)
    sim.exit(sim.running("etl")[0].id, at(1))
    assert actions(sim.round(at(1))) == ["complete"]
    assert sim.state.jobs["etl"].status == COMPLETE
    assert sim.round(at(2)).events == []


# -- system ------------------------------------------------------------------------------------


def test_a_system_job_runs_one_task_per_eligible_node_and_follows_the_nodes() -> None:
    sim = Sim()
    sim.join(
        node("a", attrs={"rack": "r1"}),
        node("b", attrs={"rack": "r2"}),
        node("c", attrs={"rack": "r1"}),
        msgspec.structs.replace(node("d", attrs={"rack": "r1"}), drivers=("docker",)),
    )
    job = spec("agent", type="system", constraints=[ConstraintSpec(attribute="rack", value="r1")])
    sim.register(job)
    p = sim.round(T0)
    placed = submitted(p)
    assert sorted(e.task.name for e in placed) == ["agent[a]", "agent[c]"]
    assert all(e.task.slot == -1 for e in placed)
    assert placed[0].task.constraints == (
        Constraint("rack", "r1", "="),
        Constraint("node", "a", "="),
    )
    assert sorted(x.node for x in sim.running("agent")) == ["a", "c"]
    # a node that joins gets one
    sim.join(node("e", attrs={"rack": "r1"}), now=at(1))
    sim.round(at(1))
    assert sorted(x.node for x in sim.running("agent")) == ["a", "c", "e"]
    # a node that goes down: its task is not replaced elsewhere
    sim.node_down("c", at(2))
    p = sim.round(at(2))
    assert submitted(p) == []
    assert sorted(x.node for x in sim.running("agent")) == ["a", "e"]
    # back: it runs there again (after the reschedule delay: its task failed with it)
    sim.join(node("c", attrs={"rack": "r1"}), now=at(3))
    assert submitted(sim.round(at(3))) == []
    sim.round(at(7))
    assert sorted(x.node for x in sim.running("agent")) == ["a", "c", "e"]
    # a node that no longer satisfies the constraints: its task is stopped
    sim.join(node("a", attrs={"rack": "r2"}), now=at(8))
    p = sim.round(at(8))
    assert decided(p, "stop")[0].reason == "node a does not satisfy rack = 'r1'"
    assert sorted(x.node for x in sim.running("agent")) == ["c", "e"]


def test_a_system_job_stopped_stops_every_task() -> None:
    sim = Sim()
    sim.join(node("a"), node("b"))
    sim.register(spec("agent", type="system"))
    sim.round(T0)
    sim.apply([JobStopped(at=at(1), job_id="agent", reason="stop")])
    assert actions(sim.round(at(1))) == ["stop", "stop"]
    assert sim.filling("agent") == []


def test_a_new_template_replaces_a_system_job_task_on_its_node() -> None:
    sim = Sim()
    sim.join(node("a"), node("b"))
    sim.register(spec("agent", type="system"))
    sim.round(T0)
    sim.register(spec("agent", type="system", env=["V=2"]), now=at(1))
    p = sim.round(at(1))
    assert actions(p) == ["replace", "replace"]
    assert sorted((x.node, x.job_version) for x in sim.running("agent")) == [("a", 1), ("b", 1)]


# -- periodic ----------------------------------------------------------------------------------


def test_a_periodic_job_launches_a_run_at_each_tick() -> None:
    sim = Sim()
    sim.join(node("n0"))
    cron = spec("nightly", type="batch", periodic=PeriodicSpec(cron="*/5 * * * *"))
    sim.register(cron, now=at(60))
    p = sim.round(at(120))
    assert p.events == [] and p.wake == {"nightly": at(300)}
    p = sim.round(at(300))
    assert actions(p) == ["launch"]
    assert decided(p)[0].reason == f"cron '*/5 * * * *' at {at(300)}"
    run = next(e for e in p.events if isinstance(e, JobRegistered))
    assert run.job.id == "nightly.periodic-1767225900" and run.parent == "nightly"
    assert run.job.periodic is None and run.version == 0
    assert p.wake == {"nightly": at(600)}
    assert sim.state.jobs["nightly"].launched_at == at(300)
    assert sim.tasks("nightly") == []  # the periodic job itself runs nothing
    sim.round(at(301))  # the run's own pass places its task
    assert len(sim.running("nightly.periodic-1767225900")) == 1


def test_prohibit_overlap_holds_a_launch_until_the_run_ends() -> None:
    sim = Sim()
    sim.join(node("n0"))
    cron = spec(
        "nightly",
        type="batch",
        periodic=PeriodicSpec(cron="*/5 * * * *", prohibit_overlap=True),
    )
    sim.register(cron)
    sim.round(at(300))
    run_id = "nightly.periodic-1767225900"
    sim.round(at(301))
    p = sim.round(at(600))
    assert actions(p) == ["wait"]
    assert decided(p)[0].reason == (
        f"the run {run_id} is still running (ProhibitOverlap): the launch due at {at(600)}"
        " waits for it to end"
    )
    assert p.wake == {"nightly": at(900)}
    sim.exit(sim.running(run_id)[0].id, at(700))
    sim.round(at(700), [run_id])
    assert sim.state.jobs[run_id].status == COMPLETE
    p = sim.round(at(701), ["nightly"])  # the manager reconciles the parent of a run
    assert actions(p) == ["launch", "wait"]
    assert decided(p, "launch")[0].reason == f"cron '*/5 * * * *' at {at(600)}"
    assert decided(p, "wait")[0].reason == ""
    assert p.wake == {"nightly": at(900)}


def test_a_periodic_job_that_missed_ticks_launches_once_for_the_latest() -> None:
    sim = Sim()
    cron = spec("nightly", type="batch", periodic=PeriodicSpec(cron="*/5 * * * *"))
    sim.register(cron)
    p = sim.reconcile(at(3 * 3600 + 7))
    launched = [e for e in p.events if isinstance(e, JobRegistered)]
    assert len(launched) == 1
    assert launched[0].job.id == "nightly.periodic-1767236400"  # 03:00
    assert p.wake == {"nightly": at(3 * 3600 + 300)}


# -- plan, totality, size -----------------------------------------------------------------------


def test_plan_shows_the_pass_on_a_copy_and_leaves_the_state_alone() -> None:
    sim = deployed_service(count=2)
    before = state_digest(sim.state)
    tasks_before = dict(sim.state.job_tasks["web"])
    copy, p = plan(sim.state, spec("web", count=2, update=FAST, env=["V=2"]), at(30))
    assert state_digest(sim.state) == before
    assert sim.state.job_tasks["web"] == tasks_before
    assert sim.state.jobs["web"].version == 0 and sim.state.stop_requested == set()
    assert actions(p)[0] == "replace"
    assert copy.jobs["web"].version == 1 and len(copy.job_tasks["web"]) == 3
    assert len(copy.stop_requested) == 1
    # an unchanged spec registers nothing: the pass of the job as it is
    copy, p = plan(sim.state, sim.state.jobs["web"].spec, at(30))
    assert p.events == [] and copy.jobs["web"].version == 0
    # a new job
    copy, p = plan(sim.state, spec("api", count=2), at(30))
    assert actions(p).count("place") == 2 and "api" not in sim.state.jobs
    assert state_digest(sim.state) == before


def test_plan_judges_health_on_its_copy_and_never_on_the_live_deployment() -> None:
    """A plan made after MinHealthyTime judges the running tasks healthy in its copy; the
    live deployment must not learn it (no log record says so)."""
    sim = Sim()
    sim.join(node("n0"))
    sim.register(spec("web", count=2, update=FAST))
    sim.round(T0)  # placed and started, not judged yet (MinHealthyTime 10 s)
    live = sim.state.jobs["web"].deployment
    assert live is not None and not live.healthy
    copy, p = plan(sim.state, spec("web", count=3, update=FAST), at(60))
    assert "healthy" in actions(p)
    judged = copy.jobs["web"].deployment
    assert judged is not None and len(judged.healthy) == 2
    assert not sim.state.jobs["web"].deployment.healthy  # type: ignore[union-attr]


def test_reconcile_never_raises_and_never_changes_the_state() -> None:
    sim = deployed_service(count=2)
    assert reconcile(sim.state, "not a time") == Pass([], {})
    # a task whose times are not times (an older log's), and a job that names no job
    t = sim.running("web")[0]
    sim.state.tasks[t.id] = msgspec.structs.replace(t, starts_at="garbage", finished_at="x")
    sim.register(spec("web", count=2, update=FAST, env=["V=3"]), now=at(30))
    before = state_digest(sim.state)
    p = reconcile(sim.state, at(31), ["web", "nope", "web"])
    assert state_digest(sim.state) == before
    assert p == reconcile(sim.state, at(31), ["web"])


def test_a_job_the_reconciler_cannot_handle_waits_with_the_error() -> None:
    state = ClusterState()
    apply(state, NodeJoined(at=T0, node=node("n0")))
    bad = spec("cron", type="batch", periodic=PeriodicSpec(cron="not a cron at all"))
    apply(state, JobRegistered(at=T0, job=bad, version=0, reason="an old log"))
    p = reconcile(state, at(1))
    assert actions(p) == ["wait"]
    assert decided(p)[0].reason.startswith("orc could not reconcile the job: ")


def test_replaying_the_log_gives_the_same_state_and_the_same_pass() -> None:
    sim = deployed_service(count=3)
    sim.register(spec("web", count=3, update=FAST, env=["V=2"]), now=at(30))
    sim.round(at(30))
    sim.exit(sim.running("web")[0].id, at(31), code=1)
    sim.round(at(31))
    replayed = ClusterState()
    for e in sim.log:
        apply(replayed, e)
    assert state_digest(replayed) == state_digest(sim.state)
    assert reconcile(replayed, at(40)) == reconcile(sim.state, at(40))


@pytest.fixture(scope="module")
def big() -> tuple[ClusterState, str]:
    return big_state(tasks=10_000, nodes=100)


def test_a_big_service_with_nothing_to_do_decides_nothing(big: tuple[ClusterState, str]) -> None:
    state, now = big
    job = state.jobs["big"]
    assert len(state.job_tasks["big"]) == 10_000 and job.stable == 0
    assert sum(t.state in ACTIVE for t in state.tasks.values()) == 10_000
    assert reconcile(state, now) == Pass([], {})


def test_a_pass_is_due_again_at_once_only_for_the_jobs_that_ask() -> None:
    p = Pass([], {"now": at(10), "later": at(11), "garbled": "not a time"})
    assert p.due(at(10)) == {"now"}
    assert p.due(at(11)) == {"now", "later"}
    assert p.due("not a time") == set()


def _checked_service(count: int) -> Sim:
    """A service of `count` tasks with a `HealthCheck`, registered on one node."""
    sim = Sim()
    sim.join(node("n0"))
    job = spec("web", count=count, update=FAST)
    sim.register(
        msgspec.structs.replace(job, task=msgspec.structs.replace(job.task, health_check="/h"))
    )
    return sim


def test_a_task_with_a_health_check_counts_healthy_only_from_its_first_pass() -> None:
    """Running for MinHealthyTime is not enough for a task with a `HealthCheck`: its time
    counts from the first check that passed on this run (`TaskHealthy`). A pass recorded for
    an earlier run does not count, and a task whose check never passes fails the deployment
    at its HealthyDeadline, running or not."""
    sim = _checked_service(count=2)
    sim.reconcile(T0)
    sim.schedule(T0)
    for i, t in enumerate(sim.tasks("web")):  # containers with a host port: checked
        ports = {"80/tcp": [HostPort(HostIp="127.0.0.1", HostPort=str(8000 + i))]}
        sim.apply([TaskStarted(at=T0, task_id=t.id, node=t.node, host_ports=ports)])
    first, second = sim.running("web")
    p = sim.round(at(15))  # both Running for 15 s > MinHealthyTime 10 s: not yet healthy
    assert actions(p) == [] and p.wake == {"web": at(60)}  # the HealthyDeadline
    passed = TaskHealthy(at=at(20), task_id=first.id, node=first.node, starts_at=T0)
    stale = TaskHealthy(at=at(20), task_id=second.id, node=second.node, starts_at=at(-5))
    sim.apply([passed, stale])
    assert second.id not in sim.state.checked  # a pass on another run: not recorded
    p = sim.round(at(25))
    assert actions(p) == [] and p.wake == {"web": at(30)}  # 10 s after its pass
    p = sim.round(at(30))
    assert [(e.action, e.task_id) for e in decided(p)] == [("healthy", first.id)]
    p = sim.round(at(60))
    assert [(e.action, e.task_id) for e in decided(p)][:2] == [
        ("unhealthy", second.id),
        ("deployment-failed", ""),
    ]
    assert decided(p, "unhealthy")[0].reason == "not healthy within 1min (HealthyDeadline)"


def test_a_task_with_a_health_check_but_no_port_to_check_counts_healthy_from_its_start() -> None:
    """A process task (no host port) with a `HealthCheck` is never probed: waiting for a pass
    would fail every deployment at its HealthyDeadline. It is judged by running, as before."""
    sim = _checked_service(count=1)
    sim.round(T0)
    p = sim.round(at(10))
    assert actions(p)[:2] == ["healthy", "deployed"]
    assert decided(p, "healthy")[0].reason == "10s since it started (MinHealthyTime)"


def _rollout(sim: Sim, job_id: str = "web") -> tuple[str, str]:
    job = sim.state.jobs[job_id]
    tasks = [sim.state.tasks[i] for i in sim.state.job_tasks.get(job_id, {})]
    view = job_view(job, tasks, sim.state.stop_requested).rollout
    assert view.version == job.version
    return view.state, view.reason


def test_the_rollout_of_the_current_version_as_the_job_view_tells_it() -> None:
    """`Rollout` in `GET /jobs/{id}`: what `orc job run` watches, judged in the core."""
    sim = Sim()
    sim.join(node("n0"), node("n1"))
    sim.register(spec("web", count=2, update=FAST))
    assert _rollout(sim) == ("running", "")
    sim.round(T0)
    state, reason = _rollout(sim)
    assert state == "running" and "waiting for new tasks to become healthy" in reason
    sim.round(at(10))
    assert _rollout(sim) == ("successful", "deployment successful")

    update = UpdateSpec(max_parallel=1, min_healthy_time=10, healthy_deadline=20)
    sim.register(spec("web", count=2, update=update, env=["V=2"]), now=at(30))
    sim.round(at(30))
    assert _rollout(sim)[0] == "running"
    new = next(x for x in sim.running("web") if x.job_version == sim.state.jobs["web"].version)
    sim.exit(new.id, at(31), code=1)
    sim.round(at(31))
    state, reason = _rollout(sim)
    assert state == "failed" and reason.startswith("deployment failed: ")

    sim.register(spec("batch", type="batch", count=1))
    assert _rollout(sim, "batch")[0] == "running"
    sim.round(at(40))
    done = sim.running("batch")[0]
    sim.exit(done.id, at(41))
    sim.round(at(41))
    assert _rollout(sim, "batch") == ("successful", "complete")

    sim.register(spec("everywhere", type="system"))
    sim.round(at(50))
    assert _rollout(sim, "everywhere") == ("successful", "running on 2 node(s)")
    sim.apply([JobStopped(at=at(60), job_id="web", reason="stopped by a user")])
    assert _rollout(sim) == ("stopped", "the job was stopped")
