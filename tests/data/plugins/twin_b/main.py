from services_ai_plugins import hookimpl

from .utils import WHO


@hookimpl
def lead_created(lead, context):
    return {"status": "success", "who": WHO, "lead": lead["id"]}
