"""Automatic remediation: what the watch leader does about a firing alert.

Owns the policy and its actions (`_remediator`: rollback on error, latency or a quality
drop, failover of a failing provider, the guards against flapping; never on info severity),
the staged return of a provider taken out of the route (`_failback`), and the record of what
was done, weighed or skipped (`_remedy_store`, read by `status`, reports and drills).

May import: incidents (an action goes on the incident's timeline), alerts (alert states),
signals (golden probes), the gateway's routing and failover, the registry, the store,
config and errors. Never routines, watch, exports or the command line.
"""
