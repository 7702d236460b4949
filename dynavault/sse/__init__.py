"""Table keys: wrap/unwrap via KMS, the per-connection cache, derivations and the AEAD node codec."""
