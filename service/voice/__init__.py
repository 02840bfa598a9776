"""The calls feature: the TwiML app's webhooks, the dial policy, TwiML and signatures."""
