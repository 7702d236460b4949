"""HTTP front end: wire protocol, SigV4, target dispatch, error bodies, connection identity."""
