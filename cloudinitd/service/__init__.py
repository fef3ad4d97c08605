"""`cloudinitd serve`: the AWS Auto Scaling Query API as Nimbus Phantom served it.

The layer is thin: `app` takes HTTP requests, `sigv4` authenticates them,
`query` parses the form and writes the XML, `actions` turns each action into
rows of the service's own state (`state`) and runs of the engine
(`groups`), and `reconcile` is the loop that keeps every group at its
desired capacity through the engine. Access keys live in `users`.
"""
