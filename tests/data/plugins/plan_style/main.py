from services_ai.plugins import hookimpl


@hookimpl
def lead_created(lead):
    """Hook called when a new lead is created"""
    # Process the lead
    return {"status": "processed"}


@hookimpl
def booking_created(booking):
    """Hook called when a new booking is created"""
    # Process the booking
    return {"status": "processed"}


@hookimpl
def dashboard_widget(context):
    """Hook called when dashboard widgets are rendered"""
    # Return HTML content for the widget
    return {
        "html": "<div class='widget'>Widget Content</div>",
        "title": "Example Widget",
        "refresh_interval": 60,  # seconds
    }
