"""Run N programs through CCP4i2's AsyncProcessManager the way
CPluginScript._startProcessAsync does: startProcess with a log file (stdout
to it, stderr to <log>_err.txt), a working directory, an environment and a
synchronous completion handler, no timeout. All N are started at once and
the manager's semaphore keeps at most C running.

Usage: driver.py PROGRAM N C WORKDIR [ARG...]
C is a number, or "default" for the manager's own _max_concurrent.
Prints one JSON line: the time from the first startProcess to the last
handler, and how many programs failed.
"""

import asyncio
import json
import os
import sys
import threading
import time

from ccp4i2.core.async_process_manager import ASYNC_PROCESSMANAGER


def main():
    program, n, concurrency, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    args = sys.argv[5:]
    os.makedirs(workdir, exist_ok=True)
    pm = ASYNC_PROCESSMANAGER()
    default = pm._max_concurrent
    # The manager creates its semaphore in its own event-loop thread.
    deadline = time.monotonic() + 10
    while pm._semaphore is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if pm._semaphore is None:
        print(json.dumps({"error": "the manager's semaphore never appeared"}))
        return 1
    c = default if concurrency == "default" else int(concurrency)
    if c != default:
        # The semaphore belongs to the manager's loop: replace it there.
        async def resize():
            pm._max_concurrent = c
            pm._semaphore = asyncio.Semaphore(c)

        asyncio.run_coroutine_threadsafe(resize(), pm._get_loop()).result(timeout=10)

    lock = threading.Lock()
    done = threading.Event()
    counts = {"finished": 0, "failed": 0}

    # Synchronous, like CPluginScript._onProcessFinished: the manager runs it
    # in its thread pool and holds the slot until it returns.
    def on_finished(pid):
        code = pm.getJobData(pid, "exitCode")
        with lock:
            counts["finished"] += 1
            if code != 0:
                counts["failed"] += 1
            if counts["finished"] == n:
                done.set()

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    start = time.perf_counter()
    for i in range(n):
        pm.startProcess(
            command=program,
            args=args,
            inputFile=None,
            logFile=os.path.join(workdir, f"log_{i}.txt"),
            cwd=workdir,
            env=env,
            handler=[on_finished, {}],
            timeout=-1,
            ifAsync=True,
        )
    finished = done.wait(timeout=60 + n * 0.05)
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "elapsed": elapsed,
                "n": n,
                "finished": counts["finished"],
                "failed": counts["failed"],
                "concurrency": c,
                "default_concurrency": default,
                "complete": finished,
            }
        ),
        flush=True,
    )
    return 0 if finished and counts["failed"] == 0 else 1


if __name__ == "__main__":
    # The manager's loop thread is a daemon; leave without waiting for it.
    code = main()
    sys.stdout.flush()
    os._exit(code)
