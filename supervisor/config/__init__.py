"""The config room: loading ``config.yaml`` (+ manifests, + interpolation) into a validated model.

Also the registry of built-in workers (one row each: name, manifest, block schema, defaults).
It imports nothing else of ``supervisor``: the engine and supervision rooms read its model.
"""
