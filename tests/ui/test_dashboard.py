"""The dashboard in a real headless browser: Debian's Chromium driven by Playwright.

Each test starts a real `orc` (manager and worker in one process, as `make run` does), opens
`/ui` and works the page as a person would: submit a task through the form, watch it reach
Running without reloading, stop it with the stop button, see Completed. The browser is Debian's
`chromium` (`playwright install` would download one, and this machine has no internet).

Playwright rather than Selenium: its `expect` waits for what the page should come to show
(a row turning Running) instead of sleeping and polling by hand, it sees every request the page
makes (how the tests check there is no polling storm), and its pip package carries its own
driver, so nothing must match Chromium's version as chromedriver must.

Without Chromium the tests skip, saying so, unless ORC_REQUIRE_BROWSER is set (as `.ci/run`
sets it), when a missing browser fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from tests.conftest import ROOT, orc_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As this machine's notes say: no sandbox as root, and none of Chromium's own calls home
# (the network is closed, and each refused connection costs time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 20_000  # how long a state may take to show: a task starts in milliseconds here


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = (
            f"no Chromium at {CHROMIUM}: install Debian's chromium and chromium-driver"
            " (apt-get install chromium chromium-driver; .ci/run does)"
        )
        if os.environ.get("ORC_REQUIRE_BROWSER"):
            pytest.fail(f"ORC_REQUIRE_BROWSER is set and {message}")
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Orc:
    """`python -m orc` on free ports, its output in a file (a pipe nobody reads would fill and
    stall it), ready once `GET /stats` answers. `start` again after `kill`: the same ports and
    data directory, as a restarted manager."""

    env: dict[str, str]
    out: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['ORC_MANAGER_PORT']}"

    @property
    def token(self) -> str:
        return self.env.get("ORC_TOKEN", "")

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def start(self) -> Orc:
        with self.out.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orc"], env=self.env, cwd=ROOT, stdout=sink, stderr=sink
            )
        deadline = time.monotonic() + 30
        with self.api() as api:
            while time.monotonic() < deadline:
                try:
                    if api.get("/stats").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.kill()
        raise AssertionError(f"orc did not start:\n{self.out.read_text()}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def start_orc(tmp: Path, **settings: str) -> Orc:
    env = {**os.environ, **orc_env(tmp / "data", **settings), "PYTHONPATH": str(ROOT)}
    return Orc(env, tmp / "orc.out").start()


@pytest.fixture
def orc(tmp_path: Path) -> Iterator[Orc]:
    running = start_orc(tmp_path)
    yield running
    running.kill()


@pytest.fixture
def orc_with_token(tmp_path: Path) -> Iterator[Orc]:
    running = start_orc(tmp_path, ORC_TOKEN="s3cret-dashboard-token")
    yield running
    running.kill()


@dataclass
class Seen:
    """Every request the page made, as `METHOD path?query`, and every script error."""

    requests: list[str] = field(default_factory=list)
    headers: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, pattern: str) -> int:
        return sum(1 for r in self.requests if re.fullmatch(pattern, r))


def watch(page: Page, base: str) -> Seen:
    seen = Seen()

    def on_request(request: Request) -> None:
        line = f"{request.method} {request.url.removeprefix(base)}"
        seen.requests.append(line)
        seen.headers.append((line, request.headers))

    page.on("request", on_request)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    return seen


def open_dashboard(browser: Browser, orc: Orc) -> tuple[Page, Seen]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    seen = watch(page, orc.url)
    page.goto(f"{orc.url}/ui")
    return page, seen


def task_row(page: Page, name: str):  # -> Locator
    return page.locator("#task-rows tr.task", has_text=name)


def submit(page: Page, name: str, cmd: str, **fields: str) -> None:
    form = page.locator("#submit-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Command").fill(cmd)
    for label, value in fields.items():
        form.get_by_label(label).fill(value)
    form.get_by_role("button", name="Submit").click()


def test_submit_a_task_see_it_run_stop_it_see_it_complete(
    browser: Browser, orc: Orc, tmp_path: Path
) -> None:
    page, seen = open_dashboard(browser, orc)
    assert page.url == f"{orc.url}/ui/", "GET /ui redirects to /ui/"
    expect(page.locator("#stream-status")).to_have_text(re.compile("^live"), timeout=WAIT_MS)
    # A mark on the window: a reload would wipe it.
    page.evaluate("window.orcTestMark = 'still the same page'")

    # Refused input: the form shows the manager's own 400 message, and nothing is added.
    submit(page, "too-big", "sleep 1", **{"CPU (cores)": "5000"})
    message = page.locator("#submit-message")
    expect(message).to_contain_text("orc refused the task (400)", timeout=WAIT_MS)
    expect(message).to_contain_text("Task.CPU: must be a finite number between 0 and 1024")
    page.locator("#submit-form").get_by_label("CPU (cores)").fill("")

    name = f"dash-{uuid.uuid4().hex[:6]}"
    submit(page, name, 'sh -c "echo hello from the dashboard; sleep 60"')
    expect(message).to_contain_text(f"Submitted {name}", timeout=WAIT_MS)

    row = task_row(page, name)
    expect(row.locator(".state")).to_have_text("Running", timeout=WAIT_MS)
    detail = page.locator("#detail")
    expect(detail.locator("#detail-fields .state")).to_have_text("Running", timeout=WAIT_MS)
    expect(detail.locator("#history")).to_contain_text("started", timeout=WAIT_MS)
    expect(detail.locator("#history")).to_contain_text("Scheduled → Running")
    expect(detail.locator("#logs-stdout")).to_contain_text(
        "hello from the dashboard", timeout=WAIT_MS
    )
    expect(detail.locator("#detail-fields")).to_contain_text("worker-1")

    page.get_by_role("button", name="Stop task").click()
    expect(row.locator(".state")).to_have_text("Completed", timeout=WAIT_MS)
    expect(detail.locator("#detail-fields .state")).to_have_text("Completed", timeout=WAIT_MS)
    expect(detail.locator("#history")).to_contain_text("Running → Completed", timeout=WAIT_MS)
    expect(page.get_by_role("button", name="Stop task")).to_be_disabled()

    # Nodes and health show the cluster.
    expect(page.locator("#node-rows")).to_contain_text("worker-1")
    expect(page.locator("#health-fields")).to_contain_text("Completed 1")
    expect(page.locator("#health-fields")).to_contain_text("Log sequence")
    expect(page.locator("#health-fields")).to_contain_text("Snapshot")

    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000

    # orc agrees with the page.
    with orc.api() as api:
        [task] = [t for t in api.get("/tasks").json() if t["Name"] == name]
    assert task["StateName"] == "Completed"
    assert row.get_attribute("data-id") == task["ID"]

    # No reload, and no polling storm: one task list and one event stream for the whole
    # visit; everything else came from the stream or was asked for once per change.
    assert page.evaluate("window.orcTestMark") == "still the same page"
    assert seen.count(r"GET /tasks") == 1, seen.requests
    assert seen.count(r"GET /events\?after=\d+") == 1, seen.requests
    assert seen.count(r"GET /stats") == 1, seen.requests
    assert seen.count(r"GET /metrics") <= 3, seen.requests
    assert seen.count(r"GET /nodes") <= 6, seen.requests
    assert not seen.errors, seen.errors


def test_the_command_field_splits_as_a_shell_would_without_running_one(
    browser: Browser, orc: Orc
) -> None:
    page, _ = open_dashboard(browser, orc)
    cases = {
        """sh -c "echo 'a b'; sleep 1\"""": ["sh", "-c", "echo 'a b'; sleep 1"],
        r"""echo a\ b '' "x\"y" $HOME""": ["echo", "a b", "", 'x"y', "$HOME"],
        "  echo   x  ": ["echo", "x"],
    }
    split = page.evaluate(
        """async (lines) => {
            const { splitArgs } = await import("./app.js");
            return lines.map(splitArgs);
        }""",
        list(cases),
    )
    assert split == list(cases.values())
    submit(page, "unclosed", 'sh -c "echo')
    expect(page.locator("#submit-message")).to_have_text('the command has an unclosed " quote')


def test_with_a_token_the_page_asks_once_then_works(
    browser: Browser, orc_with_token: Orc, tmp_path: Path
) -> None:
    orc = orc_with_token
    page, seen = open_dashboard(browser, orc)
    dialog = page.get_by_role("dialog", name="This orc needs its token")
    expect(dialog).to_be_visible(timeout=WAIT_MS)
    expect(dialog).to_contain_text("no token")
    page.screenshot(path=tmp_path / "token-prompt.png")

    # A wrong token: asked again, with the manager's reason.
    dialog.get_by_label("Token (ORC_TOKEN)").fill("wrong")
    dialog.get_by_role("button", name="Use token").click()
    expect(dialog).to_contain_text("a wrong token", timeout=WAIT_MS)

    dialog.get_by_label("Token (ORC_TOKEN)").fill(orc.token)
    dialog.get_by_role("button", name="Use token").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#stream-status")).to_have_text(re.compile("^live"), timeout=WAIT_MS)

    name = f"tok-{uuid.uuid4().hex[:6]}"
    submit(page, name, "sleep 60")
    expect(task_row(page, name).locator(".state")).to_have_text("Running", timeout=WAIT_MS)
    page.screenshot(path=tmp_path / "dashboard-token.png", full_page=True)

    # Kept for the tab: a reload does not ask again, and every API call carries the token.
    seen.headers.clear()
    page.reload()
    expect(page.locator("#stream-status")).to_have_text(re.compile("^live"), timeout=WAIT_MS)
    expect(task_row(page, name).locator(".state")).to_have_text("Running", timeout=WAIT_MS)
    expect(dialog).to_be_hidden()
    api_calls = [(line, h) for line, h in seen.headers if not line.split(" ")[1].startswith("/ui")]
    assert api_calls, seen.requests
    for line, headers in api_calls:
        assert headers.get("authorization") == f"Bearer {orc.token}", line
    assert not seen.errors, seen.errors


def test_the_page_follows_every_kind_of_end_as_orc_applies_it(
    browser: Browser, tmp_path: Path
) -> None:
    """The page keeps its task list by folding the event stream in (orc/ui/static/model.js, a
    mirror of orc/core/state.py's `apply`): after exits, failures, restarts, a failed launch,
    a stop and a task no node can run, every row says what `GET /tasks` says."""
    orc = start_orc(tmp_path, ORC_RESTART_BACKOFF="0.2", ORC_RESTART_MAX="2")
    try:
        page, seen = open_dashboard(browser, orc)
        expect(page.locator("#stream-status")).to_have_text(re.compile("^live"), timeout=WAIT_MS)
        specs = {
            "ok": {"Cmd": ["true"]},
            "fails": {"Cmd": ["sh", "-c", "exit 1"]},
            "flaky": {"Cmd": ["sh", "-c", "exit 3"], "RestartPolicy": "on-failure"},
            "missing": {"Cmd": ["/nonexistent/program"]},
            "stopped": {"Cmd": ["sleep", "60"]},
            "running": {"Cmd": ["sleep", "60"]},
            "unplaceable": {"Image": "busybox:latest"},  # no Docker engine here
        }
        with orc.api() as api:
            ids = {}
            for name, spec in specs.items():
                r = api.post("/tasks", json={"State": 2, "Task": {"Name": name, **spec}})
                assert r.status_code == 201, r.text
                ids[name] = r.json()["ID"]
            expect(task_row(page, "stopped").locator(".state")).to_have_text(
                "Running", timeout=WAIT_MS
            )
            assert api.delete(f"/tasks/{ids['stopped']}").status_code == 204
            wanted = {
                "ok": "Completed",
                "fails": "Failed",
                "flaky": "Failed",
                "missing": "Failed",
                "stopped": "Completed",
                "running": "Running",
                "unplaceable": "Pending",
            }
            deadline = time.monotonic() + WAIT_MS / 1000
            while time.monotonic() < deadline:
                tasks = {t["Name"]: t for t in api.get("/tasks").json()}
                if all(tasks[n]["StateName"] == s for n, s in wanted.items()):
                    break
                time.sleep(0.1)
            assert {n: t["StateName"] for n, t in tasks.items()} == wanted
            assert tasks["flaky"]["RestartCount"] == 2
        for task in tasks.values():
            row = page.locator(f'#task-rows tr.task[data-id="{task["ID"]}"]')
            expect(row.locator(".state")).to_have_text(task["StateName"], timeout=WAIT_MS)
            expect(row.locator("td").nth(3)).to_have_text(task["Node"])
            expect(row.locator("td").nth(4)).to_have_text(str(task["RestartCount"]))
            if task["Error"]:  # the Updated cell's tooltip ends with it
                pattern = re.compile(re.escape(task["Error"]) + "$")
                expect(row.locator("td").nth(6)).to_have_attribute("title", pattern)
        errors = page.locator("#errors")
        expect(errors).to_contain_text("fails (", timeout=WAIT_MS)
        expect(errors).to_contain_text("flaky (")
        expect(errors).to_contain_text("restarting")
        # Everything came through the one stream: the task list was read once, at the start.
        assert seen.count(r"GET /tasks") == 1, seen.requests
        assert not seen.errors, seen.errors
    finally:
        orc.kill()


def test_the_page_rides_out_a_manager_restart(browser: Browser, orc: Orc) -> None:
    """The stream drops when the manager dies; the page says so, comes back when it returns,
    and resumes after the last event it saw: what happened meanwhile arrives, with no reload."""
    page, seen = open_dashboard(browser, orc)
    status = page.locator("#stream-status")
    expect(status).to_have_text(re.compile("^live"), timeout=WAIT_MS)
    with orc.api() as api:
        r = api.post("/tasks", json={"State": 2, "Task": {"Name": "before", "Cmd": ["true"]}})
        assert r.status_code == 201
    expect(task_row(page, "before").locator(".state")).to_have_text("Completed", timeout=WAIT_MS)
    last = int(page.locator("#health-fields dd").nth(1).inner_text())
    page.evaluate("window.orcTestMark = 'still the same page'")

    orc.kill()
    expect(status).to_have_text(re.compile("^reconnecting"), timeout=WAIT_MS)
    orc.start()
    with orc.api() as api:
        r = api.post("/tasks", json={"State": 2, "Task": {"Name": "after", "Cmd": ["true"]}})
        assert r.status_code == 201
    expect(task_row(page, "after").locator(".state")).to_have_text("Completed", timeout=WAIT_MS)
    expect(status).to_have_text(re.compile("^live"))
    assert page.evaluate("window.orcTestMark") == "still the same page"
    assert seen.count(r"GET /tasks") == 1, seen.requests
    # One stream at the start, then at least one more, resumed after what the page had seen.
    afters = [int(r.split("after=")[1]) for r in seen.requests if r.startswith("GET /events")]
    assert len(afters) >= 2, seen.requests
    assert afters[-1] >= last, afters
    expect(task_row(page, "before").locator(".state")).to_have_text("Completed")


def test_a_long_list_draws_only_the_rows_in_view(browser: Browser, orc: Orc) -> None:
    """The table keeps a few dozen rows whatever the list's length; scrolling, sorting and
    filtering show the right ones."""
    count = 300
    with orc.api() as api:
        for i in range(count):
            # docker tasks with no engine: they stay Pending, and cost nothing
            task = {"Name": f"bulk-{i:03}", "Image": "busybox:latest"}
            assert api.post("/tasks", json={"State": 2, "Task": task}).status_code == 201
    page, _ = open_dashboard(browser, orc)
    expect(page.locator("#task-count")).to_have_text(f"{count} tasks", timeout=WAIT_MS)
    drawn = page.locator("#task-rows tr.task:visible")
    assert 10 < drawn.count() < 80, drawn.count()
    assert page.locator("#task-table").get_attribute("aria-rowcount") == str(count + 1)

    page.get_by_role("button", name="Name", exact=True).click()  # A to Z
    expect(page.locator("th[aria-sort=ascending]")).to_have_text("Name")
    expect(drawn.first).to_contain_text("bulk-000")
    scroller = page.locator("#task-scroll")
    scroller.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(task_row(page, "bulk-299")).to_be_visible()
    expect(task_row(page, "bulk-000")).to_have_count(0)  # scrolled away, so not drawn
    page.get_by_role("button", name="Name", exact=True).click()  # Z to A
    scroller.evaluate("el => { el.scrollTop = 0; }")
    expect(drawn.first).to_contain_text("bulk-299")

    page.get_by_label("Filter").fill("bulk-01")
    expect(page.locator("#task-count")).to_have_text(f"10 of {count} tasks")
    expect(drawn).to_have_count(10)
    page.get_by_label("Filter").fill("")
    page.get_by_label("State").select_option("Running")
    expect(page.locator("#task-count")).to_have_text(f"0 of {count} tasks")
    page.get_by_label("State").select_option("Pending")
    expect(page.locator("#task-count")).to_have_text(f"{count} tasks")  # all of them


def test_the_jobs_view_follows_a_service_job_and_filters_its_tasks(
    browser: Browser, orc: Orc, tmp_path: Path
) -> None:
    """A job submitted through the API shows in the Jobs view with its tasks running, follows
    the events (a scale), tells its story (each decision with its reason) when opened, and
    the task table filters by job."""
    page, seen = open_dashboard(browser, orc)
    expect(page.locator("#stream-status")).to_have_text(re.compile("^live"), timeout=WAIT_MS)
    expect(page.locator("#jobs-empty")).to_be_visible(timeout=WAIT_MS)
    with orc.api() as api:
        r = api.post("/jobs", json={"ID": "web", "Count": 2, "Task": {"Cmd": ["sleep", "30"]}})
        assert r.status_code == 201, r.text
        r = api.post("/tasks", json={"State": 2, "Task": {"Name": "loner", "Cmd": ["sleep", "30"]}})
        assert r.status_code == 201, r.text

    row = page.locator('#job-rows tr[data-id="web"]')
    expect(row.locator("td.running")).to_have_text("2/2", timeout=WAIT_MS)
    expect(row).to_contain_text("service")
    expect(row.locator(".job-status")).to_have_text("running")
    expect(row.locator("td.deployment")).to_contain_text("v0", timeout=WAIT_MS)
    expect(row.locator("td.deployment")).to_contain_text("2/2 placed")
    expect(page.locator("#job-count")).to_have_text("1 job")
    expect(page.locator("#task-count")).to_have_text("3 tasks", timeout=WAIT_MS)

    # Opened: its fields and its story, newest first, each decision with its reason.
    row.locator("button.name").click()
    detail = page.locator("#job-detail")
    expect(detail).to_be_visible()
    expect(detail.locator("#job-fields")).to_contain_text("service")
    story = detail.locator("#job-history")
    expect(story.locator("li.decision", has_text="place")).to_have_count(2, timeout=WAIT_MS)
    expect(story).to_contain_text("job-registered")
    expect(story).to_contain_text("submitted")
    assert "job=web" in page.url

    # The task table filters by job: its two tasks, or the one task of no job.
    page.locator("#job-filter").select_option("-")
    expect(page.locator("#task-count")).to_have_text("1 of 3 tasks")
    expect(task_row(page, "loner")).to_be_visible()
    page.get_by_role("button", name="Show only its tasks").click()
    expect(page.locator("#task-count")).to_have_text("2 of 3 tasks")
    expect(task_row(page, "loner")).to_have_count(0)
    with orc.api() as api:
        tasks = api.get("/tasks", params={"job": "web"}).json()
    assert sorted(t["Slot"] for t in tasks) == [0, 1]
    first = page.locator(f'#task-rows tr.task[data-id="{tasks[0]["ID"]}"]')
    first.locator("button.name").click()
    expect(page.locator("#detail-fields")).to_contain_text(
        f"web, slot {tasks[0]['Slot']}, version 0", timeout=WAIT_MS
    )

    # Scaled through the API: the view follows the events, with no reload.
    with orc.api() as api:
        assert api.put("/jobs/web/scale", json={"Count": 3}).status_code == 200
    expect(row.locator("td.running")).to_have_text("3/3", timeout=WAIT_MS)
    expect(page.locator("#task-count")).to_have_text("3 of 4 tasks", timeout=WAIT_MS)
    expect(story).to_contain_text("job-scaled", timeout=WAIT_MS)
    expect(story).to_contain_text("scaled from 2 to 3")
    page.screenshot(path=tmp_path / "dashboard-jobs.png", full_page=True)

    with orc.api() as api:
        assert api.delete("/jobs/web").status_code == 200
    expect(row.locator(".job-status")).to_have_text("stopped", timeout=WAIT_MS)
    expect(row.locator("td.running")).to_have_text("0/3", timeout=WAIT_MS)

    assert seen.count(r"GET /tasks") == 1, seen.requests
    assert seen.count(r"GET /events\?after=\d+") == 1, seen.requests
    assert seen.count(r"GET /jobs") <= 20, seen.requests
    assert not seen.errors, seen.errors
