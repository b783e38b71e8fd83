"""The scheduler (scheduler.py) and its jobs, one module each. A job is set-based: it asks the database
what is due as of a time, and changes tickets only through the desk."""
