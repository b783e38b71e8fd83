"""The scheduler (scheduler.py) and its jobs, one module each. A job is set-based: it asks the database
what is due as of a time, and changes tickets only through the desk."""

# The jobs' names, here so that the command line knows them without importing the scheduler (``ticketd
# pipe`` builds the same parser and must stay light); maild/jobs/scheduler.py has one job for each.
NAMES = ("auto_close", "escalate", "feedback", "housekeeping")
