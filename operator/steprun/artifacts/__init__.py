"""Artifacts and archived logs in an S3-compatible store.

``names``: the contract shared by the operator, the helper and the client (object keys,
container names, paths). ``store``: the only code that talks to the store.
"""
