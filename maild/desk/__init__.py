"""The desk: every staff action on a ticket, and the only way tickets change outside the mail
pipeline's apply step. The CLI, staff mail, the web view and the scheduler are its front ends."""
