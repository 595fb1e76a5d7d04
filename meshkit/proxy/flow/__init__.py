"""The request flow (I/O): a downstream request through the policy to an upstream attempt and back."""
