"""The read side: searching a store and an instance's lifecycle, for `shipper search` and `shipper lifecycle`.

Modules: stores (the local SQLite store and SLS behind one `search()` / `instance_events()` interface, and
open_store(): which configured store to read), lifecycle (one instance's timeline and its summary). Time
windows are parsed by shipper.times, the query language lives in shipper.query, the table a person reads is
drawn by the CLI (shipper/cli/format.py).
"""
