"""`dry_run` (`POST /jobs/{id}/plan`): the diff, the steps, and placements made by the
scheduler's own index over a copy of the state, which stays as it was."""

from __future__ import annotations

from collections import Counter

from orc.core.dryrun import dry_run
from orc.core.jobspec import ConstraintSpec, SpreadSpec
from orc.core.snapshot import state_digest
from tests.core.jobstates import T0, Sim, node, spec


def _cluster() -> Sim:
    sim = Sim()
    sim.join(node("a", cores=8, attrs={"rack": "r1"}), node("b", cores=8, attrs={"rack": "r2"}))
    return sim


def test_a_new_job_is_planned_with_spread_and_the_state_stays_as_it_was() -> None:
    sim = _cluster()
    before = state_digest(sim.state)
    plan = dry_run(sim.state, spec("web", count=4, spread=SpreadSpec()), T0, "fit")
    assert (plan.created, plan.changed, plan.version, plan.rolling_update) == (True, True, 0, False)
    assert [s.action for s in plan.steps].count("place") == 4
    # fit alone would pack all four on one node; the job's Spread puts two on each
    assert Counter(p.node for p in plan.placements) == {"a": 2, "b": 2}
    assert state_digest(sim.state) == before and "web" not in sim.state.jobs


def test_what_fits_nowhere_is_said_with_the_reason() -> None:
    sim = _cluster()
    rack = [ConstraintSpec(attribute="rack", value="r3")]
    plan = dry_run(sim.state, spec("web", count=1, constraints=rack), T0, "epvm")
    [placement] = plan.placements
    assert placement.node == "" and "fail constraint rack = r3" in placement.reason


def test_an_unchanged_spec_plans_no_version_and_a_new_template_a_rolling_update() -> None:
    sim = _cluster()
    sim.register(spec("web", count=2))
    sim.round(T0)
    same = dry_run(sim.state, sim.state.jobs["web"].spec, T0, "epvm")
    assert (same.changed, same.version, same.changes, same.placements) == (False, 0, [], [])
    new = dry_run(sim.state, spec("web", count=2, env=["V=2"]), T0, "epvm")
    assert (new.changed, new.version, new.rolling_update) == (True, 1, True)
    assert any(line.startswith("Task.Env") for line in new.changes)


# -- a client's job requests refused (`orc.core.decide`) -----------------------------------------


def test_a_count_over_max_tasks_and_scaling_a_system_or_periodic_job_are_refused() -> None:
    from orc.core import decide
    from orc.core.jobspec import PeriodicSpec
    from orc.core.messages import ScaleJob, SubmitJob

    sim = _cluster()
    too_many = decide.register(sim.state, SubmitJob(spec("big", count=3), T0), decide.Limits(2, 9))
    reply = too_many.reply
    assert too_many.events == [] and reply is not None and reply.status == 400
    assert "Job.Count: 3 is more tasks than orc holds at once (2, ORC_MAX_TASKS)" in reply.message
    sim.register(spec("everywhere", type="system"))
    sim.register(spec("nightly", type="batch", periodic=PeriodicSpec(cron="0 3 * * *")))
    for job_id, words in (("everywhere", "is a system job"), ("nightly", "is periodic")):
        refused = decide.scale(sim.state, ScaleJob(job_id, 5, T0))
        assert refused.events == [] and refused.reply is not None
        assert refused.reply.status == 400 and words in refused.reply.message
    missing = decide.scale(sim.state, ScaleJob("nope", 5, T0)).reply
    assert missing is not None and (missing.status, missing.message) == (404, "no job with ID nope")
