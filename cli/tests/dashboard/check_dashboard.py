"""The dashboard in a real browser (headless Chromium driven by Playwright).

Run by cli/tests/dashboard.rs against a `kiln serve` it started:

    check_dashboard.py URL DATA_DIR CHROMIUM JOBS_DIR [SCREENSHOT_DIR]

It talks to that harness over its stdin and stdout: it prints `RESTART`
when it wants the server killed and started again on the same address,
and waits for a line back. Every check that fails raises; the harness
fails on a non-zero exit.
"""

import json
import os
import re
import sys
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

URL, DATA, CHROMIUM, JOBS = sys.argv[1:5]
SHOTS = sys.argv[5] if len(sys.argv) > 5 else None
MTZ = os.path.join(DATA, "5e5z.mtz")
PDB = os.path.join(DATA, "rnase_frag.pdb")


def say(*words):
    print("check_dashboard:", *words, file=sys.stderr, flush=True)


def api(path):
    with urllib.request.urlopen(URL + path, timeout=30) as r:
        body = r.read().decode()
        return json.loads(body) if "json" in r.headers.get("content-type", "") else body


def node(page, job_id):
    return page.locator(f'li[data-job-id="{job_id}"] > .node')


def state_of(page, job_id):
    return node(page, job_id).locator("[data-state]")


def programs_in(directory):
    """Processes whose working directory lies in `directory`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == directory or cwd.startswith(directory + "/"):
            found.append((int(pid), cwd))
    return found


def shot(page, name):
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, name), full_page=False)


def job_id_of(page):
    page.wait_for_url(re.compile(r".*#/jobs/\d+$"), timeout=30_000)
    return page.url.rsplit("/", 1)[1]


def fill_inputs(page):
    page.set_input_files("#f-inputData_HKLIN", MTZ)
    page.set_input_files("#f-inputData_XYZIN", PDB)


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        page = context.new_page()
        elsewhere = []
        page.on("request", lambda r: None if r.url.startswith((URL, "blob:", "data:")) else elsewhere.append(r.url))
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        # demo_copycell through the generated form, with two uploads.
        page.goto(URL + "/#/submit/demo_copycell")
        expect(page.locator("label[for=f-inputData_HKLIN]")).to_contain_text("Reflections to take the cell from")
        fill_inputs(page)
        page.click("#submit")
        demo = job_id_of(page)
        say("demo_copycell is job", demo)
        expect(state_of(page, demo)).to_have_attribute("data-state", "finished", timeout=120_000)
        for sub in (f"{demo}.1", f"{demo}.2"):
            expect(state_of(page, sub)).to_have_attribute("data-state", "finished")
        expect(node(page, f"{demo}.1")).to_contain_text("mtzdump")
        expect(node(page, f"{demo}.2")).to_contain_text("pdbset")
        # mtzdump's stdout, in the page's log view.
        page.select_option("#log-job", f"{demo}.1")
        page.click("#log-follow")
        expect(page.locator("#log")).to_contain_text("Number of Reflections", timeout=30_000)
        expect(page.locator("#log-note")).to_have_text("ended")
        button = page.locator(f'button[data-output="{demo}:outputData.XYZOUT"]')
        expect(button).to_be_visible(timeout=30_000)
        with page.expect_download() as download:
            button.click()
        pdb = open(download.value.path()).read()
        cryst1 = next(line for line in pdb.splitlines() if line.startswith("CRYST1"))
        assert "9.643" in cryst1 and "101.22" in cryst1, cryst1
        say("downloaded XYZOUT:", cryst1)

        # A number out of range: the server's error at its field.
        page.goto(URL + "/#/submit/refine_scan")
        fill_inputs(page)
        ncycles = page.locator("#f-controlParameters_NCYCLES")
        expect(ncycles).to_have_value("10")
        expect(ncycles).to_have_attribute("max", "1000")
        ncycles.fill("5000")
        page.click("#submit")
        error = page.locator("#f-controlParameters_NCYCLES-error")
        expect(error).to_be_visible(timeout=30_000)
        expect(error).to_contain_text("max")
        expect(ncycles).to_have_attribute("aria-invalid", "true")
        assert re.search(r"#/submit/refine_scan$", page.url), page.url
        shot(page, "dashboard-submit.png")

        # refine_scan, watched with its plot, then stopped from the page.
        # 100 cycles of Kiln's refmac5 stand-in: about 5 s a refinement.
        ncycles.fill("100")
        page.fill("#f-controlParameters_MAXNJOBS", "2")
        page.click("#submit")
        scan = job_id_of(page)
        say("refine_scan is job", scan)
        expect(page.locator('svg[aria-label^="Signal “refinement”: r_free against weight"]')).to_be_visible(timeout=120_000)
        expect(state_of(page, scan)).to_have_attribute("data-state", "running")
        shot(page, "dashboard-refine-scan.png")
        page.click("#stop")
        expect(page.locator("#confirm")).to_be_visible()
        page.click("#confirm-ok")
        expect(state_of(page, scan)).to_have_attribute("data-state", "interrupted", timeout=60_000)
        # Its diagnostic.xml, as words.
        expect(page.locator("#diagnostics ul.diagnostic li").first).to_contain_text(
            f"in refine_scan (job {scan}), code", timeout=30_000)
        view = api(f"/jobs/{scan}")
        assert view["state"] == "interrupted", view

        def every(v):
            yield v
            for s in v["sub_jobs"]:
                yield from every(s)

        open_ = [v["id"] for v in every(view) if not v["status"]]
        assert not open_, f"sub-jobs without an end: {open_}"
        started = [v["id"] for v in every(view) if v["task"] == "refmac" and v["started_at"]]
        assert started, view
        left = programs_in(os.path.realpath(os.path.join(JOBS, f"job_{scan}")))
        assert not left, f"programs still running after the stop: {left}"
        metrics = api("/metrics")
        running = re.search(r"^kiln_programs_running (\d+)", metrics, re.M)
        assert running and running.group(1) == "0", metrics
        say(f"refine_scan stopped: {len(started)} refinements started, no program left")

        # The job list, by keyboard to a job.
        page.goto(URL + "/#/jobs")
        expect(page.locator(f'tr[data-job-id="{scan}"] [data-state]')).to_have_attribute("data-state", "interrupted")
        expect(page.locator(f'tr[data-job-id="{demo}"] [data-state]')).to_have_attribute("data-state", "finished")
        shot(page, "dashboard-jobs.png")
        page.locator(f'a[href="#/jobs/{demo}"]').focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(rf".*#/jobs/{demo}$"))
        expect(page.locator("h1")).to_contain_text(f"Job {demo}: demo_copycell")

        # A narrow window: nothing wider than it.
        page.set_viewport_size({"width": 390, "height": 800})
        page.goto(URL + "/#/jobs")
        expect(page.locator(f'tr[data-job-id="{demo}"]')).to_be_visible()
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"the jobs page is {wide} px wider than a 390 px window"
        page.set_viewport_size({"width": 1280, "height": 800})

        # A server restart under an open page: it reconnects and catches up.
        page.goto(URL + "/#/jobs")
        expect(page.locator("#connection")).to_have_text("live", timeout=30_000)
        print("RESTART", flush=True)
        assert sys.stdin.readline().strip() == "OK"
        say("the server was restarted")
        with open(MTZ, "rb") as f:
            mtz = f.read()
        with open(PDB, "rb") as f:
            pdb_in = f.read()
        r = page.request.post(URL + "/jobs", multipart={
            "request": json.dumps({"task": "demo_copycell"}),
            "inputData.HKLIN": {"name": "5e5z.mtz", "mimeType": "application/octet-stream", "buffer": mtz},
            "inputData.XYZIN": {"name": "rnase_frag.pdb", "mimeType": "chemical/x-pdb", "buffer": pdb_in},
        })
        assert r.status == 202, r.text()
        after = r.json()["job_id"]
        expect(page.locator(f'tr[data-job-id="{after}"] [data-state]')).to_have_attribute(
            "data-state", "finished", timeout=120_000)
        expect(page.locator("#connection")).to_have_text("live")
        say("after the restart, job", after, "appeared and finished on the open page")

        assert not elsewhere, f"requests outside the service: {elsewhere}"
        assert not errors, f"errors in the page: {errors}"
        browser.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the harness shows what failed
        say("FAILED:", repr(e))
        raise
