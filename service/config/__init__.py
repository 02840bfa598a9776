"""The configuration: the declared settings, how each variable is parsed, and where the
environment comes from (process, ``.env``, first-run defaults). The policy file is read
by ``service.serving.policy_file``, which hands each table to the feature that owns it."""
