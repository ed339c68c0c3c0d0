from plugins.hooks import hookimpl


class ReadmeStylePlugin:
    @hookimpl
    def lead_created(self, lead, context):
        """Called when a new lead is created"""
        # Process the lead
        return {"status": "success", "message": "Lead processed"}

    @hookimpl
    def dashboard_widget(self, plugin_id, context):
        """Provides HTML content for dashboard widget"""
        # Return HTML for dashboard widget
        return "<div class='card'>Your widget content</div>"
