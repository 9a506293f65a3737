"""What the SQLite and Redis stores share: one per-thread, fork-aware SQLite
connection keeper (:mod:`.sqlite`) and one table that turns a driver's errors
into ours (:mod:`.errors`), so the entropy pool, the API keys and the usage
counters open, share and fail the same way.
"""
