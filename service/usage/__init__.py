"""Runaway spend: usage alerts that pause issuance, and Twilio's REST API for operators."""
