"""The web view (issue 12): a Starlette application served by uvicorn inside ``ticketd serve``'s event loop
(server.py). Built step by step: the health check first; the staff desk, the import log and the outbox next."""
