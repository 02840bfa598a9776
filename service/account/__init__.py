"""The Twilio account the broker guards: runaway spend (usage alerts that pause issuance,
the ``[usage]`` thresholds), its posture (``account check``: keys, dialing, triggers,
security events, as pure checks over what the REST API returned), and the one client of
Twilio's REST API for operators."""
