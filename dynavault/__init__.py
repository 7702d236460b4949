"""dynavault: a DynamoDB-compatible server whose data is encrypted at rest under a KMS key hierarchy."""

__version__ = "0.1.0"
