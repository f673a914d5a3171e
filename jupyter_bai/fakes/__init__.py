"""Stand-ins for services outside this machine (Slack), for the demo notebooks and tests.
Nothing in the engine uses them."""
