"""The lead's ``source`` says which trick to play."""

import os
import signal
import threading
import time

from services_ai_plugins import hookimpl


def _stop_the_clock():
    # Every way a plugin could turn an alarm-based time limit off.
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


@hookimpl
def lead_created(lead, context):
    trick = lead["source"]
    if trick == "timer":
        _stop_the_clock()
        time.sleep(float(lead["notes"]))
        return {"status": "success", "slept": lead["notes"]}
    if trick == "memory":
        try:
            block = bytearray(int(lead["notes"]))
        except MemoryError:
            return {"status": "success", "memory": "denied: MemoryError"}
        return {"status": "success", "memory": f"got: {len(block)} bytes"}
    if trick == "linger":
        marker = lead["notes"]

        def later():
            time.sleep(1.0)
            with open(marker, "a") as fh:
                fh.write("still running after the hook returned\n")

        try:
            threading.Thread(target=later, daemon=True).start()
            thread = "got: started"
        except RuntimeError as exc:
            thread = f"denied: {exc}"
        try:
            if os.fork() == 0:  # a detached child that outlives the call
                os.setsid()
                later()
                os._exit(0)
            child = "got: forked"
        except OSError as exc:
            child = f"denied: {exc}"
        return {"status": "success", "thread": thread, "child": child}
    return {"status": "success"}
