"""Notifications: who hears about an incident, what they get, and delivery that loses nothing.

Owns the channel payloads (`_channels`: Slack Block Kit, PagerDuty Events API v2, a generic
webhook), the routing from an incident event to outbox messages (`_routing`) and the durable
outbox (`_outbox`: written with the change that causes it, claimed, sent, retried).

May import: the store, config and errors. It imports no other watch room (signals, alerts,
incidents, routines, remediation, watch, exports) and never the command line.
"""
