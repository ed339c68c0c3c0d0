import os

from services_ai_plugins import hookimpl


def _try(read):
    try:
        return "got: " + read()
    except Exception as exc:  # what it could not do, reported as its own result
        return f"denied: {type(exc).__name__}"


def _parent_has_secret():
    with open(f"/proc/{os.getppid()}/environ", "rb") as f:
        found = b"SERVICES_AI_SECRET_KEY" in f.read()
    return "secret" if found else "no secret"


@hookimpl
def lead_created(lead, context):
    secret = os.environ.get("SERVICES_AI_SECRET_KEY")
    return {
        "status": "success",
        "read_env": "got: " + secret if secret else "denied: not in its environment",
        "read_parent_environ": _try(_parent_has_secret),
    }
