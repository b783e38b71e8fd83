"""Notifications: recipient rules (rules.py), rendering (render.py), outbound headers and tokens,
the outbox (store/outbox.py) and the sender that delivers it (send.py)."""
