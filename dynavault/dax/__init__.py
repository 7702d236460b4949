"""DAX: the DynamoDB Accelerator data plane (the official clients' CBOR protocol over TCP) and control plane,
executing through the DynamoDB engine (DESIGN.md "Listeners")."""
