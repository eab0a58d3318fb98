"""Zero-trust access: who may touch unreleased model parameters, and how they prove who they are.

- :mod:`gpaisec.access.passwords`: the password policy (NIST SP 800-63B-4), the blocklist of common
  and breached passwords, and argon2id hashing with timing-safe verification.
- :mod:`gpaisec.access.ratelimit`: throttling of failed sign-ins per account and per source, with
  exponential back-off and a lockout window, checked before a password is verified.

Importing this package loads nothing else; the blocklist is read on first use.
"""
