"""DynamoDB Streams: stream control on tables, the change subscriber that writes stream records, and the
Streams API (``DynamoDBStreams_20120810``).

- ``store.py``: where streams, shards and records live in the table store, and how a record is sealed
  under the table's stream key, bound to its position.
- ``control.py``: StreamSpecification on CreateTable / UpdateTable, stream status, shard rollover and
  retention (the background job).
- ``writer.py``: the ``StreamWriter`` change subscriber (one record per item change, in the change's
  transaction).
- ``api.py``: ListStreams, DescribeStream, GetShardIterator, GetRecords.
"""
