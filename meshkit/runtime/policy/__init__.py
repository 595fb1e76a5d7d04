"""The platform's decisions (restart policy, health state machine, start order, reload rollout plan):
pure, clock passed in, no event loop."""
