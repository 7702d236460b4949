"""DynamoDB API semantics: validation, expressions, operations, catalog."""
