"""Global tables, version 2019.11.21, within one server.

A global table is a set of same-named tables, one per region of one account ("members"), each a real
table with its own table key from its own region's KMS key. The group (members and their replica status) is
kept in every member's catalog record (``extra["replication"]``), so DescribeTable in any region shows it.

- ``group.py``: the group record and how DescribeTable shows it (``Replicas``, ``GlobalTableVersion``).
- ``store.py``: what replication keeps beside the items, all under ``REPLICATION_PREFIX``: each member's
  replication queue (its local changes, sealed under its own stream key, chained like the PITR history), the
  per-item last-writer clocks (sealed, keyed by an HMAC of the item key) and each consumer's checkpoint in
  another member's queue. A consumer in another server reads the same queue through ``Pull``; what
  it acknowledged is its checkpoint here, and this server's checkpoint in the peer's queue is ``"@" + region``.
- ``subscriber.py``: the change subscriber: a local change of a member gets its clock, is written into the other
  members served here (``fold.py``) and gets a queue row for the members it could not be written into (in
  other servers, being created, key not at hand), all in the change's own store transaction; a replicated
  change (cause ``replication``) is never queued again, so writes never ping-pong.
- ``fold.py``: same-server replicas written in their origin's transaction (last writer wins, as the job
  applies a row), in a server of one process.
- ``recovery.py``: at start, replica Creates a stopped server left half done.
- ``applier.py``: the background job (under the store's background lease): fills a new replica from its
  source (backfill), applies every member's queue to every other member through the one item-change path,
  last writer wins by (change time, region name), and drops a replica whose key stayed unusable too long.
- ``operations.py``: UpdateTable ``ReplicaUpdates`` and the 2017.11.29 operations.
- ``peers.py``: the servers of regions served elsewhere (``--replica-peer``), their credentials, a signed client.
- ``remote.py``: members in those servers: the replica Create sent to a peer, the internal operations a peer
  calls (``DynavaultReplication.CreateReplica / Backfill / Pull``) and the puller that applies their queues here.
"""
