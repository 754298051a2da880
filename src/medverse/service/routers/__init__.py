"""One API router per resource: studies, jobs, results, models, users, audit, health."""
