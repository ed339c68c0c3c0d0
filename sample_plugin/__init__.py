"""Lead Insights: the Services AI sample plugin (every hook, every setting type)."""
