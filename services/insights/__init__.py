"""insights: read models of everything, and the coordinators' API."""
