"""``dynavault bench``: a raw-protocol DynamoDB load generator and a storage-path micro-benchmark."""
